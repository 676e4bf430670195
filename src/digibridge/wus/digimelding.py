"""The DigiMelding (DMKS) client: terugmeldingen out, statuses and details back.

zeep builds every request from our WSDL (`wsdl/digimelding.wsdl`: elements, WS-Addressing
headers, SOAPAction) and reads every answer; the HTTP exchange is our own, with httpx, so that
it is bounded the way an outbound call to another organisation must be: a total deadline per
call, no redirects followed, a cap on the answer's size, the answer parsed with the hardened
parser (`_xml.parse_untrusted`) and checked against our schema before zeep reads it.

    DigimeldingError (DigibridgeError)      `.retryable`: may the same request succeed later?
     ├── DigimeldingFault                   the registry answered a SOAP Fault (`code`, ...)
     ├── DigimeldingRejected                an HTTP 3xx/4xx without a Fault: not retried
     └── DigimeldingUnavailable             no usable answer: connection refused, time-out,
                                            5xx without a Fault, an answer we cannot read
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from lxml import etree

from digibridge.clock import Clock, SystemClock
from digibridge.errors import DigibridgeError
from digibridge.mapping.dmks import DMKS_NS, WSDL_FILE, schema_errors
from digibridge.mapping.reverse_types import AnnotatieReceipt, AnnotatieToevoegen, StatusEntry
from digibridge.resources import bundled
from digibridge.wus._xml import SAFE_PARSER, XmlRefused, parse_untrusted
from digibridge.wus.dmks_faults import FaultInfo, read_fault
from digibridge.wus.faults import SOAP11_NS
from digibridge.wus.tls import client_context
from digibridge.wus.wsse import EnvelopeSigner

log = structlog.get_logger("digibridge.wus")

WSA_NS = "http://www.w3.org/2005/08/addressing"
#: The WSDL's SOAP 1.1 binding, as zeep names it.
BINDING = f"{{{DMKS_NS}}}DigimeldingSoap11Binding"
#: Answers larger than this are refused unread (bytes; attachments travel inline as base64).
DEFAULT_MAX_ANSWER = 32 * 1024 * 1024
_MAX_DEPTH = 64
_AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@dataclass(frozen=True)
class Operation:
    """One DMKS operation: its request and answer elements and wsa:Actions."""

    name: str

    @property
    def request(self) -> str:
        return f"{{{DMKS_NS}}}{self.name}Request"

    @property
    def response(self) -> str:
        return f"{{{DMKS_NS}}}{self.name}Response"

    @property
    def action(self) -> str:
        """wsa:Action of the request; also its SOAPAction."""
        return f"{DMKS_NS}{self.name}"

    @property
    def response_action(self) -> str:
        return f"{DMKS_NS}{self.name}Response"


ANNOTATIE_TOEVOEGEN = Operation("AnnotatieToevoegen")
STATUSOVERZICHT = Operation("Statusoverzicht")
DETAILS_TERUGMELDING = Operation("DetailsTerugmelding")
ECHO = Operation("Echo")
#: The operations by request element.
OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {op.request: op for op in (ANNOTATIE_TOEVOEGEN, STATUSOVERZICHT, DETAILS_TERUGMELDING, ECHO)}
)


def wsdl_path() -> Path:
    return bundled("wsdl") / WSDL_FILE


# --- errors ----------------------------------------------------------------------------------


class DigimeldingError(DigibridgeError):
    """A DMKS call that did not succeed; `retryable` says whether sending again may help."""

    retryable: bool = False


class DigimeldingFault(DigimeldingError):
    """The registry refused the request with a SOAP Fault (codes: `dmks_faults`)."""

    def __init__(
        self,
        code: str,
        faultstring: str,
        detail: str | None,
        retryable: bool,
        *,
        faultcode: str | None = None,
        actor: str | None = None,
    ) -> None:
        super().__init__(f"DigiMelding fault {code}: {faultstring}")
        self.code = code
        self.faultstring = faultstring
        self.detail = detail
        self.retryable = retryable
        self.faultcode = faultcode or code
        self.actor = actor

    @classmethod
    def of(cls, info: FaultInfo) -> DigimeldingFault:
        return cls(
            info.code,
            info.faultstring,
            info.detail,
            info.retryable,
            faultcode=info.faultcode,
            actor=info.actor,
        )


class DigimeldingRejected(DigimeldingError):
    """An HTTP error status other than 408, 429 and 5xx, without a SOAP Fault."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class DigimeldingUnavailable(DigimeldingError):
    """No usable answer: the registry (or the way to it) is down, slow or broken."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTls:
    """Mutual TLS from PEM files: our client certificate and the CAs the registry chains to."""

    certificate: Path | None = None
    key: Path | None = None
    password: bytes | None = None
    trusted_cas: Path | None = None

    def context(self) -> ssl.SSLContext:
        return client_context(
            trusted_cas=self.trusted_cas,
            certificate=self.certificate,
            key=self.key,
            password=self.password,
        )


@cache
def _zeep_client() -> Any:
    """zeep's view of our WSDL, read once; used to write requests and read answers. zeep (and
    the HTTP stack it brings) is imported here, on first use: a tenth of a gateway's import
    time, which a gateway that sends no terugmeldingen never needs."""
    import zeep  # noqa: PLC0415

    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True)
    return zeep.Client(str(wsdl_path()), settings=settings)  # type: ignore[no-untyped-call]


# --- the client ------------------------------------------------------------------------------


class DigimeldingClient:
    """Calls one DigiMelding endpoint (`url`). Safe to share: every call has its own connection.

    `tls` is an SSLContext or PEM files (`ClientTls`) for mutual TLS (2W-be); with `signer`
    every request is signed with WS-Security (2W-be-S). `oin` (ours) goes in `wsa:From` as
    `?OIN=`. `timeout` bounds each whole call, connection to last byte.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | ClientTls | None = None,
        signer: EnvelopeSigner | None = None,
        oin: str | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER,
        clock: Clock | None = None,
    ) -> None:
        scheme = httpx.URL(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the DigiMelding endpoint must be an http(s) URL, not {url!r}")
        self.url = url
        self._timeout = timeout
        self._verify: ssl.SSLContext | bool = (
            tls.context() if isinstance(tls, ClientTls) else tls or True
        )
        self._signer = signer
        self._oin = oin
        self._max_answer = max_answer_bytes
        self._clock = clock or SystemClock()
        self._service = _zeep_client().create_service(BINDING, url)

    # --- operations --------------------------------------------------------------------------

    async def annotatie_toevoegen(self, request: AnnotatieToevoegen) -> AnnotatieReceipt:
        """Send a new report, a withdrawal or a status change; the registry's receipt."""
        import zeep.xsd  # noqa: PLC0415 - loaded with the client (`_zeep_client`)

        boom = etree.fromstring(request.annotatieboom, SAFE_PARSER)
        arguments: dict[str, Any] = {
            "OinBasisregistratie": request.oin_basisregistratie,
            # zeep writes the other elements; the tree goes in as validated bytes (below).
            "AnnotatieBoom": zeep.xsd.SkipValue,
        }
        if request.registratie is not None:
            arguments["Registratie"] = request.registratie
        answer = await self._call(ANNOTATIE_TOEVOEGEN, arguments, append=boom)
        result = _read(ANNOTATIE_TOEVOEGEN, answer)
        return AnnotatieReceipt(_aware(result.Tijdstempel), str(result.AnnotatieVerwijzing))

    async def statusoverzicht(
        self,
        oin_basisregistratie: str,
        *,
        oin_melder: str,
        sinds: datetime | None = None,
        uuids: Sequence[str] = (),
        registratie: str | None = None,
    ) -> list[StatusEntry]:
        """The current status of our reports at one registry: all of them, those changed
        since `sinds`, or those with the root uuids `uuids`."""
        arguments: dict[str, Any] = {
            "OinBasisregistratie": oin_basisregistratie,
            "OinMelder": oin_melder,
        }
        if registratie is not None:
            arguments["Registratie"] = registratie
        if sinds is not None:
            arguments["VanafTijdstempel"] = _aware(sinds)
        if uuids:
            arguments["Uuid"] = list(uuids)
        answer = await self._call(STATUSOVERZICHT, arguments)
        result = _read(STATUSOVERZICHT, answer)
        return [
            StatusEntry(
                annotatie_uuid=str(row.Uuid),
                status=str(row.Status),
                tijdstempel=_aware(row.Tijdstempel),
                referentiekenmerk=row.Referentiekenmerk,
                toelichting=row.Toelichting,
            )
            for row in result.TerugmeldingStatus or []
        ]

    async def details_terugmelding(
        self, uuid_value: str, *, oin_basisregistratie: str | None = None
    ) -> bytes:
        """One report's whole `AnnotatieBoom`, as XML bytes (valid against our schema)."""
        arguments: dict[str, Any] = {"Uuid": uuid_value}
        if oin_basisregistratie is not None:
            arguments["OinBasisregistratie"] = oin_basisregistratie
        answer = await self._call(DETAILS_TERUGMELDING, arguments)
        boom = answer.find(f"{{{DMKS_NS}}}AnnotatieBoom")
        if boom is None:  # pragma: no cover - the schema check requires it
            raise DigimeldingUnavailable("DetailsTerugmelding answered without an AnnotatieBoom")
        detached = copy.deepcopy(boom)
        # Without the envelope's namespace declarations, which the tree does not use.
        etree.cleanup_namespaces(detached)
        return etree.tostring(detached, encoding="UTF-8")

    async def echo(self, text: str) -> str:
        """The registry's echo of `text`: is the service there, and does it speak our WSDL?"""
        answer = await self._call(ECHO, {"Tekst": text})
        return str(_read(ECHO, answer).Tekst or "")

    # --- one exchange ------------------------------------------------------------------------

    async def _call(
        self,
        operation: Operation,
        arguments: Mapping[str, Any],
        *,
        append: etree._Element | None = None,
    ) -> etree._Element:
        """Send one request; the answer's Body child, checked against our schema."""
        envelope, message_id = self._envelope(operation, arguments, append)
        content = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation.action}"'}
        logger = log.bind(operation=operation.name, message_id=message_id, endpoint=self.url)
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(content, headers)
        except TimeoutError:
            logger.warning("digimelding_timeout", timeout=self._timeout)
            raise DigimeldingUnavailable(
                f"{self.url} did not answer {operation.name} within {self._timeout}s"
            ) from None
        except httpx.HTTPError as exc:
            logger.warning("digimelding_unreachable", error=str(exc))
            raise DigimeldingUnavailable(f"cannot reach {self.url}: {exc}") from None
        answer = self._answer(operation, status, body, message_id)
        logger.debug("digimelding_answered", status=status)
        return answer

    def _envelope(
        self, operation: Operation, arguments: Mapping[str, Any], append: etree._Element | None
    ) -> tuple[etree._Element, str]:
        client = _zeep_client()
        envelope: etree._Element = client.create_message(self._service, operation.name, **arguments)
        body_child = envelope.find(f"{{{SOAP11_NS}}}Body/{operation.request}")
        if body_child is None:  # pragma: no cover - zeep writes what the WSDL says
            raise DigimeldingError(f"zeep wrote no {operation.name} request")
        if append is not None:
            body_child.append(append)
        header = envelope.find(f"{{{SOAP11_NS}}}Header")
        if header is None:  # pragma: no cover - zeep adds WS-Addressing from the WSDL
            raise DigimeldingError("zeep wrote no SOAP Header")
        message_id = f"urn:uuid:{uuid.uuid4()}"
        found = header.find(f"{{{WSA_NS}}}MessageID")
        if found is None:  # pragma: no cover - zeep adds WS-Addressing from the WSDL
            found = etree.SubElement(header, f"{{{WSA_NS}}}MessageID")
        found.text = message_id
        if self._oin is not None:
            sender = etree.SubElement(header, f"{{{WSA_NS}}}From")
            address = etree.SubElement(sender, f"{{{WSA_NS}}}Address")
            address.text = f"{WSA_NS}/anonymous?OIN={self._oin}"
        if self._signer is not None:
            self._signer.sign(envelope, now=self._clock.now())
        return envelope, message_id

    async def _post(self, content: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST; the status and at most `max_answer_bytes` of the answer (more: refused)."""
        async with (
            httpx.AsyncClient(
                verify=self._verify,
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self._timeout),
            ) as http,
            http.stream("POST", self.url, content=content, headers=headers) as response,
        ):
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_answer:
                raise DigimeldingUnavailable(self._too_large(), status=response.status_code)
            received = bytearray()
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) > self._max_answer:
                    raise DigimeldingUnavailable(self._too_large(), status=response.status_code)
            return response.status_code, bytes(received)

    def _too_large(self) -> str:
        return f"{self.url} answered more than {self._max_answer} bytes"

    def _answer(
        self, operation: Operation, status: int, body: bytes, message_id: str
    ) -> etree._Element:
        try:
            envelope = parse_untrusted(body, max_depth=_MAX_DEPTH)
        except XmlRefused as exc:
            raise self._no_soap(
                status, f"an answer that is not usable XML ({exc.reason})"
            ) from None
        if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
            raise self._no_soap(status, f"{envelope.tag} instead of a SOAP 1.1 Envelope")
        fault = envelope.find(f"{{{SOAP11_NS}}}Body/{{{SOAP11_NS}}}Fault")
        if fault is not None:
            info = read_fault(fault)
            log.info(
                "digimelding_fault",
                operation=operation.name,
                code=info.code,
                retryable=info.retryable,
                faultstring=info.faultstring,
            )
            raise DigimeldingFault.of(info)
        if status != 200:
            raise self._no_soap(status, f"HTTP {status} with a SOAP answer but no Fault")
        relates_to = envelope.find(f"{{{SOAP11_NS}}}Header/{{{WSA_NS}}}RelatesTo")
        if relates_to is not None and (relates_to.text or "").strip() != message_id:
            raise DigimeldingUnavailable(f"{self.url} answered another message than ours")
        answer = envelope.find(f"{{{SOAP11_NS}}}Body/{operation.response}")
        if answer is None:
            raise DigimeldingUnavailable(
                f"{self.url} answered {operation.name} without {operation.name}Response"
            )
        problems = schema_errors(answer)
        if problems:
            raise DigimeldingUnavailable(
                f"{self.url} answered {operation.name} against the schema: {problems[0]}"
            )
        return answer

    def _no_soap(self, status: int, what: str) -> DigimeldingError:
        message = f"{self.url} answered HTTP {status}: {what}"
        if status in (408, 429) or status >= 500 or status == 200:
            return DigimeldingUnavailable(message, status=status)
        return DigimeldingRejected(message, status=status)


def _read(operation: Operation, answer: etree._Element) -> Any:
    """zeep's reading of a (schema-valid) answer element."""
    element = _zeep_client().get_element(operation.response)
    return element.parse(answer, _zeep_client().wsdl.types)


def _aware(value: datetime) -> datetime:
    """In UTC; an xs:dateTime without a zone is Dutch local time."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=_AMSTERDAM)
    return aware.astimezone(UTC)
