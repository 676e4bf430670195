"""`/v1/terugmeldingen`: report a doubted registry value as JSON, follow it, withdraw it.

- `POST /v1/terugmeldingen`: validated (the JSON shape here; the registry's rules by its reverse
  mapping), converted into a DMKS `AnnotatieToevoegen` and committed with its outbox request
  before the 201; the outbox sends it. `Idempotency-Key` (per consumer): the same key and body
  answer the first resource again (200), another body 409.
- `GET /v1/terugmeldingen?status=&dmksStatus=&after=&limit=`: the caller's own, oldest first.
- `GET /v1/terugmeldingen/{id}`: one, with its history.
- `POST /v1/terugmeldingen/{id}/intrekken`: withdraw it (an `AnnotatieToevoegen` with status
  `Ingetrokken` through the same outbox); 202.

The reporting OIN is the gateway's (`oin` setting), never the body's. Another consumer's
terugmelding is a 404, as if it did not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from digibridge.api._paging import Link, cursor_links
from digibridge.api.auth import consumer_of
from digibridge.api.problems import Problem
from digibridge.delivery.dmks_outbox import DmksOutbox
from digibridge.mapping.dmks import END_STATES, INGETROKKEN
from digibridge.mapping.reverse import ReverseMapping, ReverseMappings
from digibridge.mapping.reverse_types import (
    AnnotatieToevoegen,
    Attribuut,
    Bijlage,
    Contact,
    Terugmelding,
)
from digibridge.metrics import TRANSPORT
from digibridge.runtime import Runtime
from digibridge.store.types import (
    DmksRequest,
    HistoryEntry,
    IdempotencyConflict,
    IdempotencyKey,
    RequestKind,
    StoreConflict,
    TerugmeldingRecord,
    TransportStatus,
)


class _CappedBody(APIRoute):
    """Reads the body up to `terugmelding_max_bytes`, before anything parses it, and answers a
    larger one with a 413 problem (Starlette's own limit answers in plain text)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            cap = _runtime(request).settings.terugmelding_max_bytes
            too_large = Problem(413, f"the request body is larger than {cap} bytes")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise too_large
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > cap:
                    raise too_large
            request._body = bytes(body)  # what FastAPI's handler reads the body from
            return await handler(request)

        return capped


router = APIRouter(prefix="/v1/terugmeldingen", tags=["terugmeldingen"], route_class=_CappedBody)

DEFAULT_PAGE = 100
#: Idempotency-Key: printable ASCII, as the IETF draft's examples and common practice use.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

TransportName = Literal["ontvangen", "verzonden", "mislukt"]
DmksName = Literal[
    "Gemeld",
    "In behandeling",
    "Ingepland",
    "Onvoldoende informatie",
    "Verkeerde Bronhouder",
    "Afgehandeld",
    "Ingetrokken",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttribuutIn(_Strict):
    naam: str = Field(min_length=1, max_length=100, description="attribute name of the registry")
    betwijfeldeWaarde: str | None = Field(  # noqa: N815 - lowerCamelCase per the NL API rules
        default=None, max_length=1000, description="the value the consumer doubts"
    )
    voorgesteldeWaarde: str | None = Field(  # noqa: N815
        default=None, max_length=1000, description="the value the consumer proposes"
    )

    @model_validator(mode="after")
    def _a_value(self) -> AttribuutIn:
        if self.betwijfeldeWaarde is None and self.voorgesteldeWaarde is None:
            raise ValueError("give betwijfeldeWaarde, voorgesteldeWaarde or both")
        return self


class ContactIn(_Strict):
    naam: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    telefoon: str | None = Field(default=None, max_length=30)
    afdeling: str | None = Field(default=None, max_length=200)


class BijlageIn(_Strict):
    bestandsnaam: str = Field(min_length=1, max_length=255)
    mimeType: str = Field(min_length=3, max_length=127)  # noqa: N815
    data: str = Field(min_length=1, description="the file, base64 (RFC 4648 §4, padded)")
    beschrijving: str | None = Field(default=None, max_length=4000)


class TerugmeldingIn(_Strict):
    """A terugmelding: which object of which registry, which values are doubted, and why."""

    registratie: str = Field(min_length=1, max_length=3, description="BRP, NHR, BAG, BGT, BRT")
    oinBasisregistratie: str | None = Field(  # noqa: N815
        default=None,
        pattern=r"^[0-9]{20}$",
        description="OIN of the registry; default: the one of `registratie`",
    )
    objectSleutel: str = Field(  # noqa: N815
        min_length=1, max_length=200, description="the object's key: BSN, KvK number, BAG id"
    )
    attributen: list[AttribuutIn] = Field(min_length=1, max_length=100)
    peildatum: date | None = Field(
        default=None, description="the date the doubted values apply to (YYYY-MM-DD)"
    )
    toelichting: str = Field(min_length=1, max_length=4000)
    referentiekenmerk: str = Field(
        min_length=1, max_length=12, description="the reporter's own reference"
    )
    contact: ContactIn
    bijlagen: list[BijlageIn] = Field(default_factory=list, max_length=20)
    vestiging: str | None = Field(default=None, pattern=r"^[0-9]{12}$")

    @field_validator("peildatum", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        # Lax pydantic takes a number as a Unix time; a date here is written YYYY-MM-DD.
        if value is not None and not (isinstance(value, str) and _DATE.fullmatch(value)):
            raise ValueError("a date is written YYYY-MM-DD")
        return value


class IntrekkenIn(_Strict):
    toelichting: str | None = Field(default=None, max_length=4000)


class HistoryOut(BaseModel):
    kind: Literal["transport", "dmks", "fault"]
    at: str
    status: str | None = None
    previousStatus: str | None = None  # noqa: N815
    request: Literal["melding", "intrekking"] | None = None
    code: str | None = Field(default=None, description="DK code of a fault, or `transport`")
    text: str | None = None
    retried: bool | None = None
    unexpected: bool = Field(default=False, description="a change the DMKS lifecycle forbids")
    registryTime: str | None = None  # noqa: N815


class BijlageOut(BaseModel):
    bestandsnaam: str
    mimeType: str  # noqa: N815
    grootte: int = Field(description="bytes")
    beschrijving: str | None = None


class TerugmeldingOut(BaseModel):
    id: str
    status: TransportName = Field(description="transport status: ontvangen, verzonden, mislukt")
    dmksStatus: str | None = Field(  # noqa: N815
        description="the registry's status (Statusoverzicht); null until known"
    )
    dmksStatusAt: str | None  # noqa: N815
    intrekkingStatus: TransportName | None  # noqa: N815
    registratie: str
    oinBasisregistratie: str  # noqa: N815
    oinMelder: str  # noqa: N815
    objectSleutel: str  # noqa: N815
    attributen: list[dict[str, Any]]
    peildatum: str | None
    toelichting: str
    referentiekenmerk: str
    contact: dict[str, Any]
    bijlagen: list[BijlageOut]
    vestiging: str | None
    annotatieUuid: str = Field(  # noqa: N815
        description="uuid of the root Terugmelding annotation: the registry's handle"
    )
    annotatieVerwijzing: str | None  # noqa: N815
    verzondenAt: str | None  # noqa: N815
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815
    history: list[HistoryOut] | None = None
    links: dict[str, Link] = Field(serialization_alias="_links")


class TerugmeldingPage(BaseModel):
    terugmeldingen: list[TerugmeldingOut]
    links: dict[str, Link] = Field(serialization_alias="_links")


# -- plumbing -----------------------------------------------------------------------------------


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _reverse(request: Request) -> ReverseMappings:
    reverse: ReverseMappings = request.app.state.reverse_mappings
    return reverse


def _outbox(request: Request) -> DmksOutbox:
    outbox: DmksOutbox = request.app.state.dmks_outbox
    return outbox


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _name(pointer: str) -> str:
    """`/attributen/0/naam` → `attributen.0.naam`, as FastAPI's own errors name fields."""
    return pointer.strip("/").replace("/", ".") or "body"


def _bad(params: list[dict[str, str]]) -> Problem:
    detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params)
    return Problem(400, detail, invalid_params=params)


async def _visible(request: Request, terugmelding_id: str) -> TerugmeldingRecord:
    record = await _runtime(request).store.get_terugmelding(terugmelding_id)
    consumer = consumer_of(request)
    if record is None or not (consumer.admin or record.owner == consumer.id):
        raise Problem(404, f"terugmelding {terugmelding_id} does not exist")
    return record


# -- from JSON to a Terugmelding ----------------------------------------------------------------


def _mapping_of(request: Request, body: TerugmeldingIn) -> ReverseMapping:
    reverse = _reverse(request)
    mapping = reverse.get(body.registratie)
    if mapping is None:
        known = ", ".join(reverse.registries()) or "none"
        reason = f"no registry {body.registratie!r} takes terugmeldingen here (known: {known})"
        raise _bad([{"name": "registratie", "reason": reason}])
    if body.registratie not in _runtime(request).settings.digimelding:
        raise Problem(
            503,
            f"no DigiMelding endpoint is configured for {body.registratie}; "
            "ask the operator to set digimelding." + body.registratie,
        )
    return mapping


def _decode(body: TerugmeldingIn, cap: int) -> tuple[list[bytes], list[dict[str, str]]]:
    decoded: list[bytes] = []
    problems: list[dict[str, str]] = []
    for index, bijlage in enumerate(body.bijlagen):
        name = f"bijlagen.{index}.data"
        # Refused before decoding: base64 is 4 characters per 3 bytes.
        if len(bijlage.data) > (cap + 2) // 3 * 4:
            problems.append({"name": name, "reason": f"larger than {cap} bytes"})
            decoded.append(b"")
            continue
        try:
            data = base64.b64decode(bijlage.data, validate=True)
        except (binascii.Error, ValueError):
            problems.append({"name": name, "reason": "not valid base64 (RFC 4648, padded)"})
            data = b""
        if len(data) > cap:
            problems.append({"name": name, "reason": f"larger than {cap} bytes"})
        decoded.append(data)
    return decoded, problems


def _terugmelding(
    body: TerugmeldingIn, mapping: ReverseMapping, oin: str, data: list[bytes]
) -> Terugmelding:
    return Terugmelding(
        registratie=body.registratie,
        oin_basisregistratie=body.oinBasisregistratie or mapping.oin,
        object_sleutel=body.objectSleutel,
        attributen=tuple(
            Attribuut(a.naam, a.betwijfeldeWaarde, a.voorgesteldeWaarde) for a in body.attributen
        ),
        toelichting=body.toelichting,
        referentiekenmerk=body.referentiekenmerk,
        contact=Contact(
            body.contact.naam, body.contact.email, body.contact.telefoon, body.contact.afdeling
        ),
        oin_melder=oin,
        peildatum=body.peildatum,
        bijlagen=tuple(
            Bijlage(b.bestandsnaam, b.mimeType, content, b.beschrijving)
            for b, content in zip(body.bijlagen, data, strict=True)
        ),
        vestiging=body.vestiging,
    )


def _document(body: TerugmeldingIn, oin_basisregistratie: str, data: list[bytes]) -> dict[str, Any]:
    """What is kept of the body for reading back: all but the attachments' content."""
    document = body.model_dump(mode="json", exclude={"bijlagen"})
    document["oinBasisregistratie"] = oin_basisregistratie
    document["bijlagen"] = [
        {
            "bestandsnaam": b.bestandsnaam,
            "mimeType": b.mimeType,
            "grootte": len(content),
            "beschrijving": b.beschrijving,
        }
        for b, content in zip(body.bijlagen, data, strict=True)
    ]
    return document


def _digest(body: TerugmeldingIn) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- out ------------------------------------------------------------------------------------------


def _history_out(entry: HistoryEntry) -> HistoryOut:
    return HistoryOut(
        kind=entry.kind.value,
        at=entry.at.isoformat(),
        status=entry.status,
        previousStatus=entry.previous,
        request=None if entry.request_kind is None else entry.request_kind.value,
        code=entry.code,
        text=entry.text,
        retried=entry.retried,
        unexpected=entry.unexpected,
        registryTime=_time(entry.registry_time),
    )


def _out(record: TerugmeldingRecord, history: list[HistoryEntry] | None = None) -> TerugmeldingOut:
    d = record.document
    return TerugmeldingOut(
        id=record.id,
        status=record.transport_status.value,
        dmksStatus=record.dmks_status,
        dmksStatusAt=_time(record.dmks_status_at),
        intrekkingStatus=None
        if record.intrekking_status is None
        else record.intrekking_status.value,
        registratie=record.registratie,
        oinBasisregistratie=record.oin_basisregistratie,
        oinMelder=record.oin_melder,
        objectSleutel=d["objectSleutel"],
        attributen=d["attributen"],
        peildatum=d.get("peildatum"),
        toelichting=d["toelichting"],
        referentiekenmerk=d["referentiekenmerk"],
        contact=d["contact"],
        bijlagen=[BijlageOut(**b) for b in d.get("bijlagen", [])],
        vestiging=d.get("vestiging"),
        annotatieUuid=record.root_uuid,
        annotatieVerwijzing=record.annotatie_uuid,
        verzondenAt=_time(record.verzonden_at),
        createdAt=record.created_at.isoformat(),
        updatedAt=record.updated_at.isoformat(),
        history=None if history is None else [_history_out(h) for h in history],
        links={
            "self": Link(href=f"/v1/terugmeldingen/{record.id}"),
            "intrekken": Link(href=f"/v1/terugmeldingen/{record.id}/intrekken"),
        },
    )


# -- routes ---------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model_by_alias=True,
    responses={200: {"description": "an Idempotency-Key replay: the resource made the first time"}},
)
async def create_terugmelding(
    body: TerugmeldingIn,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="the same key and body answer the same"),
    ] = None,
) -> TerugmeldingOut:
    """Accept a terugmelding; it is stored (and queued for DigiMelding) before the answer."""
    runtime = _runtime(request)
    settings = runtime.settings
    if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
        raise _bad([{"name": "Idempotency-Key", "reason": "1 to 255 printable ASCII characters"}])
    mapping = _mapping_of(request, body)
    if settings.oin is None:
        raise Problem(503, "the gateway has no reporting OIN; ask the operator to set oin")
    data, problems = _decode(body, settings.terugmelding_max_attachment_bytes)
    terugmelding = _terugmelding(body, mapping, settings.oin, data)
    # Every problem in one answer; an attachment that could not be decoded is reported once.
    named = {problem["name"] for problem in problems}
    for pointer, reason in mapping.check(terugmelding):
        if _name(pointer) not in named:
            problems.append({"name": _name(pointer), "reason": reason})
    if problems:
        raise _bad(problems)
    now = runtime.clock.now()
    annotatie = mapping.build(terugmelding, now=now, new_uuid=lambda: str(uuid.uuid4()))
    record = TerugmeldingRecord(
        id=str(uuid.uuid4()),
        owner=consumer_of(request).id,
        registratie=mapping.registratie,
        oin_basisregistratie=annotatie.oin_basisregistratie,
        oin_melder=settings.oin,
        document=_document(body, annotatie.oin_basisregistratie, data),
        root_uuid=annotatie.root_uuid,
        transport_status=TransportStatus.ONTVANGEN,
        created_at=now,
        updated_at=now,
    )
    outbox_request = _outbox_request(
        record.id, RequestKind.MELDING, mapping.registratie, annotatie, now
    )
    key = None
    if idempotency_key is not None:
        key = IdempotencyKey(consumer_of(request).id, idempotency_key, _digest(body))
    try:
        created = await runtime.store.create_terugmelding(record, outbox_request, key)
    except IdempotencyConflict as exc:
        raise Problem(409, f"{exc}; use a new key for a new terugmelding") from None
    stored = created.record
    if created.replayed:
        response.status_code = 200
    else:
        runtime.metrics.terugmelding_status(TRANSPORT, "ontvangen")
        _outbox(request).wake()
    response.headers["Location"] = f"/v1/terugmeldingen/{stored.id}"
    return _out(stored, await runtime.store.terugmelding_history(stored.id))


def _outbox_request(
    terugmelding_id: str,
    kind: RequestKind,
    registratie: str,
    annotatie: AnnotatieToevoegen,
    now: datetime,
) -> DmksRequest:
    """The outbox entry that sends `annotatie` (a melding or a withdrawal) to DigiMelding."""
    return DmksRequest(
        id=str(uuid.uuid4()),
        terugmelding_id=terugmelding_id,
        kind=kind,
        registratie=registratie,
        oin_basisregistratie=annotatie.oin_basisregistratie,
        annotatieboom=annotatie.annotatieboom,
        root_uuid=annotatie.root_uuid,
        uuids=annotatie.uuids,
        created_at=now,
    )


def _cursor(record: TerugmeldingRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, record_id = text.partition("|")
        at: datetime | None = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        at, record_id = None, ""
    if at is None or at.tzinfo is None or not record_id:
        raise Problem(
            400,
            "after: not a cursor from this API (use the next link of the previous page)",
            invalid_params=[{"name": "after", "reason": "not a valid cursor"}],
        )
    return at, record_id


@router.get("", response_model_by_alias=True)
async def list_terugmeldingen(
    request: Request,
    status: Annotated[TransportName | None, Query(description="transport status")] = None,
    dmks_status: Annotated[
        DmksName | None, Query(alias="dmksStatus", description="the registry's status")
    ] = None,
    after: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = DEFAULT_PAGE,
) -> TerugmeldingPage:
    """The caller's terugmeldingen (an admin's: everyone's), oldest first; follow
    `_links.next.href` for the next page."""
    consumer = consumer_of(request)
    found = await _runtime(request).store.list_terugmeldingen(
        owner=None if consumer.admin else consumer.id,
        transport_status=None if status is None else TransportStatus(status),
        dmks_status=dmks_status,
        after=None if after is None else _after(after),
        limit=limit + 1,
    )
    page = found[:limit]
    links = cursor_links(
        "/v1/terugmeldingen",
        {"status": status, "dmksStatus": dmks_status},
        limit=limit,
        next_after=_cursor(page[-1]) if len(found) > limit else None,
    )
    return TerugmeldingPage(terugmeldingen=[_out(r) for r in page], links=links)


@router.get("/{terugmelding_id}", response_model_by_alias=True)
async def get_terugmelding(terugmelding_id: str, request: Request) -> TerugmeldingOut:
    """One terugmelding with its whole history: transport and DMKS statuses, faults."""
    record = await _visible(request, terugmelding_id)
    return _out(record, await _runtime(request).store.terugmelding_history(record.id))


@router.post("/{terugmelding_id}/intrekken", status_code=202, response_model_by_alias=True)
async def withdraw_terugmelding(
    terugmelding_id: str,
    request: Request,
    body: Annotated[IntrekkenIn | None, Body()] = None,
) -> TerugmeldingOut:
    """Withdraw it: DigiMelding gets status `Ingetrokken` through the outbox (202: queued)."""
    runtime = _runtime(request)
    record = await _visible(request, terugmelding_id)
    mapping = _reverse(request).get(record.registratie)
    if mapping is None:
        raise Problem(409, f"registry {record.registratie} no longer takes terugmeldingen here")
    now = runtime.clock.now()
    toelichting = None if body is None else body.toelichting
    try:
        annotatie = mapping.build_status(
            record.root_uuid,
            INGETROKKEN,
            toelichting,
            record.oin_melder,
            now,
            lambda: str(uuid.uuid4()),
        )
    except ValueError as exc:
        raise _bad([{"name": "toelichting", "reason": str(exc)}]) from None
    withdrawal = _outbox_request(
        record.id, RequestKind.INTREKKING, record.registratie, annotatie, now
    )
    try:
        updated = await runtime.store.queue_intrekking(withdrawal, end_states=END_STATES)
    except StoreConflict as exc:
        raise Problem(409, f"cannot withdraw terugmelding {record.id}: {exc}") from None
    if updated is None:  # pragma: no cover - it was there a moment ago; nothing deletes them
        raise Problem(404, f"terugmelding {terugmelding_id} does not exist")
    _outbox(request).wake()
    return _out(updated, await runtime.store.terugmelding_history(updated.id))
