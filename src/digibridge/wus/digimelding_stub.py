"""A DigiMelding stub: a real SOAP server for tests and demos (`digibridge digimelding-stub`).

It implements the four operations of our WSDL (`wsdl/digimelding.wsdl`) over SOAP 1.1 with
WS-Addressing answers, keeps reports in memory, and refuses what a registry would: a request
that does not conform to our XSD (Fault DK0004), a change by another organisation than the
reporter (DK0002), a status change the DMKS lifecycle does not allow or about an unknown report
(DK0050); with `signature_trust`, an unsigned request (DK0002, 2W-be-S). A JSON control API
plays the registry's side and scripts trouble (bodies and scripts: `_stub_control.py`):

    POST /control/terugmeldingen/{uuid}/status  {"status": "In behandeling", "toelichting": "…"}
    GET  /control/terugmeldingen[/{uuid}]       the reports, with their status history
    GET  /control/requests                      every SOAP request received, as raw XML
    POST /control/faults    {"code": "DK0051", "count": 2, "operation": null, "server": null}
    POST /control/delays    {"seconds": 1.5, "count": 1, "operation": null}
    POST /control/outages   {"status": 503, "count": 1}     an HTTP error without a Fault
    POST /control/reset                                     forget everything

Errors of the control API are RFC 9457 problem+json.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digibridge.mapping.dmks import (
    DMKS_NS,
    GEMELD,
    STATUSES,
    TRANSITIONS,
    schema_errors,
    transition_allowed,
)
from digibridge.wus._stub_control import (
    DelayRequest,
    DelayScript,
    FaultRequest,
    FaultScript,
    OutageRequest,
    OutageScript,
    StatusChange,
    parse_body,
    problem,
    unknown_operation,
)
from digibridge.wus._xml import XmlRefused, parse_untrusted
from digibridge.wus.certificates import TrustStore
from digibridge.wus.digimelding import OPERATIONS, WSA_NS, Operation, wsdl_path
from digibridge.wus.dmks_faults import (
    NOT_AUTHORISED,
    NOT_XSD_CONFORMANT,
    PROCESSING_ERROR,
    TIME_OUT,
    render_fault,
)
from digibridge.wus.faults import SOAP11_NS
from digibridge.wus.wsse import SignatureRefused, verify_envelope

#: Requests larger than this are refused with 413 (attachments travel inline).
MAX_REQUEST_BYTES = 48 * 1024 * 1024
#: OIN the stub annotates with when it plays the registry (a test OIN).
STUB_OIN = "00000099000000000099"
SOAP_PATH = "/dmks"

_D = f"{{{DMKS_NS}}}"
_LEAVES = ("Annotatiestatus", "Referentiekenmerk", "Contactinformatie", "Bijlageverwijzing")
_XSD_NS = "http://www.w3.org/2001/XMLSchema"
_WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"


class Refusal(Exception):
    """A request the stub answers with a DMKS SOAP Fault."""

    def __init__(self, code: str, reason: str, *, client: bool = True, subcode: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.client = client
        self.subcode = subcode


@dataclass
class Report:
    """One terugmelding as the registry holds it."""

    uuid: str
    oin_basisregistratie: str
    registratie: str | None
    oin_melder: str
    referentiekenmerk: str | None
    object_uri: str | None
    tree: etree._Element
    #: (status, when, toelichting), oldest first.
    history: list[tuple[str, datetime, str | None]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.history[-1][0]

    def as_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "oinBasisregistratie": self.oin_basisregistratie,
            "registratie": self.registratie,
            "oinMelder": self.oin_melder,
            "referentiekenmerk": self.referentiekenmerk,
            "status": self.status,
            "history": [
                {"status": s, "at": at.isoformat(), "toelichting": note}
                for s, at, note in self.history
            ],
        }


class DigimeldingStub:
    """The stub's state and its ASGI app (`.app`). Thread-safe: tests read it from outside."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        signature_trust: TrustStore | None = None,
    ) -> None:
        """With `signature_trust` every SOAP request must carry a WS-Security signature by a
        certificate chaining to it (2W-be-S), else it is answered with DK0002."""
        self._now = clock or (lambda: datetime.now(UTC))
        self._signature_trust = signature_trust
        self._lock = threading.Lock()
        self.reports: dict[str, Report] = {}
        self.requests: list[dict[str, Any]] = []
        self._faults: list[FaultScript] = []
        self._delays: list[DelayScript] = []
        self._outages: list[OutageScript] = []
        self.app = Starlette(
            routes=[
                Route(SOAP_PATH, self._soap, methods=["POST"]),
                Route(SOAP_PATH, self._wsdl, methods=["GET"]),
                Route("/control/terugmeldingen", self._list, methods=["GET"]),
                Route("/control/terugmeldingen/{uuid}", self._one, methods=["GET"]),
                Route("/control/terugmeldingen/{uuid}/status", self._status, methods=["POST"]),
                Route("/control/requests", self._requests, methods=["GET"]),
                Route("/control/faults", self._fault, methods=["POST"]),
                Route("/control/delays", self._delay, methods=["POST"]),
                Route("/control/outages", self._outage, methods=["POST"]),
                Route("/control/reset", self._reset, methods=["POST"]),
            ]
        )

    # --- for tests in the same process -------------------------------------------------------

    def set_status(self, report_uuid: str, status: str, toelichting: str | None = None) -> Report:
        """The registry moves a report on; KeyError if unknown, ValueError if not allowed."""
        with self._lock:
            report = self.reports[report_uuid]
            if not transition_allowed(report.status, status):
                allowed = ", ".join(sorted(TRANSITIONS.get(report.status, ()))) or "none"
                raise ValueError(
                    f"{report.status} → {status} is not a DMKS transition (allowed: {allowed})"
                )
            now = self._now()
            report.history.append((status, now, toelichting))
            report.tree.append(_registry_status(status, report.uuid, now, toelichting))
            return report

    # --- SOAP --------------------------------------------------------------------------------

    async def _soap(self, request: Request) -> Response:
        body = await _read_capped(request)
        if body is None:
            return Response(status_code=413)
        try:
            envelope = parse_untrusted(body, max_depth=64)
        except XmlRefused as exc:
            return _fault(Refusal(NOT_XSD_CONFORMANT, exc.reason, subcode="GeenXml"))
        body_child = _body_child(envelope)
        operation = OPERATIONS.get(str(body_child.tag)) if body_child is not None else None
        message_id = _header_text(envelope, "MessageID")
        with self._lock:
            self.requests.append(
                {
                    "operation": operation.name if operation else None,
                    "action": _header_text(envelope, "Action"),
                    "messageId": message_id,
                    "receivedAt": self._now().isoformat(),
                    "xml": body.decode("utf-8", errors="replace"),
                }
            )
            name = operation.name if operation else ""
            outage = next((o for o in self._outages if o.take(name)), None)
            delay = next((d for d in self._delays if d.take(name)), None)
            scripted = next((f for f in self._faults if f.take(name)), None)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        if outage is not None:
            return Response(f"scripted outage {outage.status}", status_code=outage.status)
        if scripted is not None:
            return _fault(
                Refusal(
                    scripted.code,
                    f"{scripted.code}: scripted by the control API",
                    client=scripted.client,
                    subcode="Gescript",
                )
            )
        try:
            if envelope.tag != f"{{{SOAP11_NS}}}Envelope" or body_child is None:
                raise Refusal(NOT_XSD_CONFORMANT, "not a SOAP 1.1 envelope", subcode="Envelope")
            if operation is None:
                raise Refusal(
                    NOT_XSD_CONFORMANT,
                    f"unknown Body element {body_child.tag}",
                    subcode="OnbekendeOperatie",
                )
            self._check_signature(envelope)
            problems = schema_errors(body_child)
            if problems:
                raise Refusal(
                    NOT_XSD_CONFORMANT,
                    f"{operation.name}Request does not conform to the schema: {problems[0]}",
                    subcode="SchemaValidatie",
                )
            answer = self._answer(operation, body_child)
        except Refusal as refusal:
            return _fault(refusal)
        return _envelope(operation, answer, message_id)

    def _check_signature(self, envelope: etree._Element) -> None:
        if self._signature_trust is None:
            return
        try:
            verify_envelope(
                envelope,
                trust=self._signature_trust,
                now=self._now(),
                max_skew=timedelta(minutes=5),
            )
        except SignatureRefused as exc:
            raise Refusal(
                NOT_AUTHORISED, f"signature refused: {exc.reason}", subcode="Ondertekening"
            ) from None

    def _answer(self, operation: Operation, request: etree._Element) -> etree._Element:
        handlers = {
            "AnnotatieToevoegen": self._annotatie_toevoegen,
            "Statusoverzicht": self._statusoverzicht,
            "DetailsTerugmelding": self._details,
            "Echo": _echo,
        }
        with self._lock:
            return handlers[operation.name](request)

    def _annotatie_toevoegen(self, request: etree._Element) -> etree._Element:
        boom = _find(request, "AnnotatieBoom")
        root = boom.find(f"{_D}Terugmelding")
        now = self._now()
        if root is not None:
            added = self._new_report(request, boom, root, now)
        else:
            added = self._annotate(boom, now)
        answer = etree.Element(f"{_D}AnnotatieToevoegenResponse", nsmap={"dmk": DMKS_NS})
        _sub(answer, "Tijdstempel", now.isoformat())
        _sub(answer, "AnnotatieVerwijzing", added)
        return answer

    def _new_report(
        self, request: etree._Element, boom: etree._Element, root: etree._Element, now: datetime
    ) -> str:
        root_uuid = root.get("uuid", "")
        if root_uuid in self.reports:
            raise Refusal(
                PROCESSING_ERROR, f"terugmelding {root_uuid} exists already", subcode="Bestaat"
            )
        melder = _text(root, "GeannoteerdDoor/dmk:Oin")
        status = GEMELD
        for leaf in _leaves(boom):
            if _text(leaf, "Annotatieverwijzing") != root_uuid:
                raise Refusal(
                    PROCESSING_ERROR,
                    f"{etree.QName(leaf).localname} {leaf.get('uuid')} does not refer to the"
                    f" root {root_uuid}",
                    subcode="Annotatieverwijzing",
                )
            if _text(leaf, "GeannoteerdDoor/dmk:Oin") != melder:
                raise Refusal(
                    NOT_AUTHORISED, "every annotation must come from the melder", subcode="Oin"
                )
            if etree.QName(leaf).localname == "Annotatiestatus":
                status = _text(leaf, "Status") or GEMELD
        if status != GEMELD:
            raise Refusal(
                PROCESSING_ERROR,
                f"a new terugmelding starts as {GEMELD}, not {status}",
                subcode="Status",
            )
        kenmerk = boom.find(f"{_D}Referentiekenmerk/{_D}Kenmerk")
        report = Report(
            uuid=root_uuid,
            oin_basisregistratie=_text(request, "OinBasisregistratie") or "",
            registratie=_text(request, "Registratie"),
            oin_melder=melder or "",
            referentiekenmerk=kenmerk.text if kenmerk is not None else None,
            object_uri=_text(root, "Bronverwijzingen/dmk:Bronverwijzing/dmk:Uri"),
            tree=copy.deepcopy(boom),
            history=[(GEMELD, now, None)],
        )
        self.reports[root_uuid] = report
        return root_uuid

    def _annotate(self, boom: etree._Element, now: datetime) -> str:
        leaves = list(_leaves(boom))
        if not leaves:
            raise Refusal(NOT_XSD_CONFORMANT, "an empty AnnotatieBoom", subcode="LeegBoom")
        for leaf in leaves:
            target = _text(leaf, "Annotatieverwijzing")
            report = self.reports.get(target or "")
            if report is None:
                raise Refusal(
                    PROCESSING_ERROR, f"no terugmelding {target} to annotate", subcode="Onbekend"
                )
            if _text(leaf, "GeannoteerdDoor/dmk:Oin") != report.oin_melder:
                raise Refusal(
                    NOT_AUTHORISED, "only the melder may annotate its terugmelding", subcode="Oin"
                )
            if etree.QName(leaf).localname == "Annotatiestatus":
                status = _text(leaf, "Status") or ""
                if not transition_allowed(report.status, status):
                    raise Refusal(
                        PROCESSING_ERROR,
                        f"terugmelding {report.uuid} is {report.status}; it cannot become {status}",
                        subcode="Statusovergang",
                    )
                report.history.append((status, now, _text(leaf, "Toelichting")))
            report.tree.append(copy.deepcopy(leaf))
        return leaves[0].get("uuid", "")

    def _statusoverzicht(self, request: etree._Element) -> etree._Element:
        oin = _text(request, "OinBasisregistratie")
        melder = _text(request, "OinMelder")
        since = _moment(_text(request, "VanafTijdstempel"))
        until = _moment(_text(request, "TotTijdstempel"))
        statuses = set(_texts(request, "Status"))
        kenmerken = set(_texts(request, "Referentiekenmerk"))
        uuids = set(_texts(request, "Uuid"))
        object_uri = _text(request, "ObjectUri")
        registratie = _text(request, "Registratie")
        answer = etree.Element(f"{_D}StatusoverzichtResponse", nsmap={"dmk": DMKS_NS})
        for report in self.reports.values():
            status, at, note = report.history[-1]
            if (
                report.oin_basisregistratie != oin
                or report.oin_melder != melder
                or (registratie is not None and report.registratie != registratie)
                or (since is not None and at < since)
                or (until is not None and at > until)
                or (statuses and status not in statuses)
                or (kenmerken and report.referentiekenmerk not in kenmerken)
                or (uuids and report.uuid not in uuids)
                or (object_uri is not None and report.object_uri != object_uri)
            ):
                continue
            row = _sub(answer, "TerugmeldingStatus", None)
            _sub(row, "Uuid", report.uuid)
            _sub(row, "Status", status)
            _sub(row, "Tijdstempel", at.isoformat())
            if report.referentiekenmerk is not None:
                _sub(row, "Referentiekenmerk", report.referentiekenmerk)
            if note is not None:
                _sub(row, "Toelichting", note)
        return answer

    def _details(self, request: etree._Element) -> etree._Element:
        wanted = _text(request, "Uuid") or ""
        report = self.reports.get(wanted)
        if report is None:
            raise Refusal(PROCESSING_ERROR, f"no terugmelding {wanted}", subcode="Onbekend")
        answer = etree.Element(f"{_D}DetailsTerugmeldingResponse", nsmap={"dmk": DMKS_NS})
        answer.append(copy.deepcopy(report.tree))
        return answer

    # --- WSDL ----------------------------------------------------------------------------------

    async def _wsdl(self, request: Request) -> Response:
        service_url = str(request.url.replace(query=""))
        if "xsd" in request.query_params:
            if request.query_params["xsd"] != "digimelding.xsd":
                return problem(404, "no such schema document")
            data = (wsdl_path().parent / "digimelding.xsd").read_bytes()
            return Response(data, media_type="text/xml")
        if "wsdl" not in request.query_params:
            return problem(404, f"POST SOAP requests here; the WSDL is at {service_url}?wsdl")
        tree = etree.parse(str(wsdl_path()))
        for address in tree.iter(f"{{{_WSDL_SOAP_NS}}}address"):
            address.set("location", service_url)
        for ref in tree.iter(f"{{{_XSD_NS}}}import"):
            ref.set("schemaLocation", f"{service_url}?xsd=digimelding.xsd")
        data = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        return Response(data, media_type="text/xml")

    # --- control API -------------------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse([r.as_json() for r in self.reports.values()])

    async def _one(self, request: Request) -> Response:
        with self._lock:
            report = self.reports.get(request.path_params["uuid"])
            if report is None:
                return problem(404, f"no terugmelding {request.path_params['uuid']}")
            return JSONResponse(report.as_json())

    async def _status(self, request: Request) -> Response:
        change = await parse_body(request, StatusChange)
        if isinstance(change, Response):
            return change
        if change.status not in STATUSES:
            return problem(
                400, f"{change.status!r} is not a DMKS status", field="/status", allowed=STATUSES
            )
        try:
            report = self.set_status(request.path_params["uuid"], change.status, change.toelichting)
        except KeyError:
            return problem(404, f"no terugmelding {request.path_params['uuid']}")
        except ValueError as exc:
            return problem(409, str(exc), field="/status")
        with self._lock:
            return JSONResponse(report.as_json())

    async def _requests(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(list(self.requests))

    async def _fault(self, request: Request) -> Response:
        parsed = await parse_body(request, FaultRequest)
        if isinstance(parsed, Response):
            return parsed
        if problem := unknown_operation(parsed.operation):
            return problem
        server = parsed.server
        if server is None:
            server = parsed.code in (PROCESSING_ERROR, TIME_OUT)
        with self._lock:
            self._faults.append(
                FaultScript(parsed.count, parsed.operation, code=parsed.code, client=not server)
            )
        return JSONResponse(parsed.model_dump(), status_code=201)

    async def _delay(self, request: Request) -> Response:
        parsed = await parse_body(request, DelayRequest)
        if isinstance(parsed, Response):
            return parsed
        if problem := unknown_operation(parsed.operation):
            return problem
        with self._lock:
            self._delays.append(DelayScript(parsed.count, parsed.operation, seconds=parsed.seconds))
        return JSONResponse(parsed.model_dump(), status_code=201)

    async def _outage(self, request: Request) -> Response:
        parsed = await parse_body(request, OutageRequest)
        if isinstance(parsed, Response):
            return parsed
        with self._lock:
            self._outages.append(OutageScript(parsed.count, None, status=parsed.status))
        return JSONResponse(parsed.model_dump(), status_code=201)

    async def _reset(self, request: Request) -> Response:
        with self._lock:
            self.reports.clear()
            self.requests.clear()
            self._faults.clear()
            self._delays.clear()
            self._outages.clear()
        return Response(status_code=204)


# --- helpers ---------------------------------------------------------------------------------


async def _read_capped(request: Request) -> bytes | None:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_REQUEST_BYTES:
            return None
    return bytes(received)


def _body_child(envelope: etree._Element) -> etree._Element | None:
    body = envelope.find(f"{{{SOAP11_NS}}}Body")
    if body is None:
        return None
    children = [c for c in body if isinstance(c.tag, str)]
    return children[0] if len(children) == 1 else None


def _header_text(envelope: etree._Element, name: str) -> str | None:
    found = envelope.find(f"{{{SOAP11_NS}}}Header/{{{WSA_NS}}}{name}")
    return (found.text or "").strip() if found is not None else None


def _fault(refusal: Refusal) -> Response:
    data = render_fault(
        refusal.code, refusal.reason, client=refusal.client, subcode=refusal.subcode
    )
    return Response(data, status_code=500, media_type="text/xml; charset=utf-8")


def _envelope(operation: Operation, answer: etree._Element, relates_to: str | None) -> Response:
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS, "wsa": WSA_NS})
    header = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Header")
    etree.SubElement(header, f"{{{WSA_NS}}}Action").text = operation.response_action
    etree.SubElement(header, f"{{{WSA_NS}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA_NS}}}RelatesTo").text = relates_to
    etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body").append(answer)
    data = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return Response(data, media_type="text/xml; charset=utf-8")


def _echo(request: etree._Element) -> etree._Element:
    answer = etree.Element(f"{_D}EchoResponse", nsmap={"dmk": DMKS_NS})
    _sub(answer, "Tekst", _text(request, "Tekst") or "")
    return answer


def _registry_status(
    status: str, root_uuid: str, at: datetime, toelichting: str | None
) -> etree._Element:
    """The Annotatiestatus the registry adds to a report when it moves it on."""
    element = etree.Element(f"{_D}Annotatiestatus", uuid=str(uuid.uuid4()))
    door = _sub(element, "GeannoteerdDoor", None)
    _sub(door, "Oin", STUB_OIN)
    _sub(door, "Persoonsaanduiding", "Behandelaar (stub)")
    _sub(element, "GeannoteerdOp", at.isoformat())
    if toelichting is not None:
        _sub(element, "Toelichting", toelichting)
    _sub(element, "Annotatieverwijzing", root_uuid)
    _sub(element, "Status", status)
    return element


def _leaves(boom: etree._Element) -> list[etree._Element]:
    return [c for c in boom if etree.QName(c).localname in _LEAVES]


def _find(parent: etree._Element, name: str) -> etree._Element:
    found = parent.find(f"{_D}{name}")
    if found is None:  # pragma: no cover - schema-valid requests have it
        raise Refusal(NOT_XSD_CONFORMANT, f"{name} is missing", subcode="SchemaValidatie")
    return found


def _text(parent: etree._Element, path: str) -> str | None:
    found = parent.find(f"dmk:{path}", {"dmk": DMKS_NS})
    return found.text if found is not None else None


def _texts(parent: etree._Element, name: str) -> list[str]:
    return [e.text or "" for e in parent.findall(f"{_D}{name}")]


def _sub(parent: etree._Element, name: str, value: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{_D}{name}")
    element.text = value
    return element


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
