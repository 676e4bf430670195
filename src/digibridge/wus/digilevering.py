"""The DigiLevering contract on the WUS side: operations, body validation, acknowledgement, WSDL.

A SOAP Body child is one of two DigiLevering forms (STANDARDS.md §2), both in the namespace
`http://www.digilevering.nl/digilevering.xsd`:

    v4  VerstrekkingAanAfnemer   root qualified, children unqualified
    v5  LeveringVanDGL           everything qualified

Each is one WSDL operation, answered with our own `Ontvangstbevestiging` (namespace
`urn:nld:digibridge:wus:1`). The schema and WSDL files live in the repository's `wsdl/` folder
(`wsdl_dir()`); they are served with their locations rewritten to the service's own URL.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from lxml import etree

from digibridge.errors import DigibridgeError
from digibridge.mapping.types import Levering
from digibridge.resources import bundled
from digibridge.wus._xml import SAFE_PARSER, XmlRefused, parse_untrusted
from digibridge.wus.faults import DkCode, SoapFault

DIGILEVERING_NS = "http://www.digilevering.nl/digilevering.xsd"
ACK_NS = "urn:nld:digibridge:wus:1"

#: wsa:Action of a v4 request; also its SOAP 1.1 soapAction.
ACTION_VERSTREKKING = "http://www.digilevering.nl/digilevering/VerstrekkingAanAfnemer"
#: wsa:Action of the answer to a v4 request.
ACTION_VERSTREKKING_RESPONSE = (
    "http://www.digilevering.nl/digilevering/VerstrekkingAanAfnemerResponse"
)
#: wsa:Action of a v5 request; also its SOAP 1.1 soapAction.
ACTION_LEVERING = "http://www.digilevering.nl/digilevering/LeveringVanDGL"
#: wsa:Action of the answer to a v5 request.
ACTION_LEVERING_RESPONSE = "http://www.digilevering.nl/digilevering/LeveringVanDGLResponse"

#: targetNamespace of the WSDL (portType, bindings, service); the acknowledgement's namespace too.
WSDL_NS = ACK_NS
#: The WSDL's bindings, as zeep's `Client.create_service` names them.
SOAP11_BINDING = f"{{{WSDL_NS}}}DigiLeveringSoap11Binding"
SOAP12_BINDING = f"{{{WSDL_NS}}}DigiLeveringSoap12Binding"

WSDL_FILE = "digilevering.wsdl"
#: The schema documents `schema_document` serves, and nothing else.
SCHEMA_FILES = ("digilevering.xsd", "digilevering-v5.xsd", "digibridge-wus.xsd")

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

_XS_NS = "http://www.w3.org/2001/XMLSchema"
_WSDL_SOAP11_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
_WSDL_SOAP12_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"


@dataclass(frozen=True)
class Operation:
    """One WSDL operation: which Body child it takes and which wsa:Actions go with it."""

    name: str
    request_element: str
    action: str
    response_action: str


_V4 = Operation(
    "VerstrekkingAanAfnemer",
    f"{{{DIGILEVERING_NS}}}VerstrekkingAanAfnemer",
    ACTION_VERSTREKKING,
    ACTION_VERSTREKKING_RESPONSE,
)
_V5 = Operation(
    "LeveringVanDGL",
    f"{{{DIGILEVERING_NS}}}LeveringVanDGL",
    ACTION_LEVERING,
    ACTION_LEVERING_RESPONSE,
)
OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {_V4.request_element: _V4, _V5.request_element: _V5}
)


def wsdl_dir() -> Path:
    """The folder holding the WSDL and XSD files: the one place that knows where they are."""
    return bundled("wsdl")


# --- parsing ---------------------------------------------------------------------------------


def operation_for(body_child: etree._Element) -> Operation:
    """The operation a Body child belongs to; a 0004 SoapFault when it is none of ours."""
    tag = body_child.tag
    operation = OPERATIONS.get(tag) if isinstance(tag, str) else None
    if operation is None:
        name = etree.QName(tag).localname if isinstance(tag, str) else "(no element)"
        expected = " or ".join(f"{{{DIGILEVERING_NS}}}{op.name}" for op in OPERATIONS.values())
        raise SoapFault(
            DkCode.NOT_XSD_CONFORMANT,
            f"unknown Body element {tag if isinstance(tag, str) else name}; expected {expected}",
            element=name,
        )
    return operation


def parse_levering(body_child: etree._Element) -> Levering:
    """Validate `body_child` against the DigiLevering schema and read it into a `Levering`.

    Raises SoapFault 0004 naming the offending element when it does not conform.
    """
    operation = operation_for(body_child)
    schema = _schema()
    # The validator keeps its error log on itself and lxml validates without the GIL, so two
    # threads must not validate at once with the same schema object (the log read is a copy).
    with _SCHEMA_LOCK:
        valid = schema.validate(body_child)
        errors = schema.error_log
    if not valid:
        raise _schema_fault(body_child, errors)
    if operation is _V4:
        return _read_v4(body_child)
    return _read_v5(body_child)


class UnreadableMessage(DigibridgeError):
    """A DigiLevering body document (a file: a sample, a dry run) that cannot be read."""


def read_levering(data: bytes, *, max_depth: int = 100) -> Levering:
    """A DigiLevering body document (`VerstrekkingAanAfnemer` / `LeveringVanDGL` as its root),
    parsed with the hardened parser and validated; UnreadableMessage saying why if it is not."""
    try:
        return parse_levering(parse_untrusted(data, max_depth=max_depth))
    except XmlRefused as exc:
        raise UnreadableMessage(exc.reason) from None
    except SoapFault as exc:
        where = f" (element {exc.element})" if exc.element else ""
        raise UnreadableMessage(f"not a valid DigiLevering message{where}: {exc.reason}") from None


def _read_v4(root: etree._Element) -> Levering:
    return Levering(
        form="v4",
        kenmerk=_text(root, "kenmerkDigilevering"),
        kenmerk_verstrekker=_text(root, "kenmerkLV"),
        referentie_id=_optional_text(root, "referentieId"),
        basisregistratie=_text(root, "basisregistratie"),
        gebeurtenissoort=_text(root, "gebeurtenissoort/naam"),
        gebeurtenissoort_versie=_text(root, "gebeurtenissoort/versie"),
        versie_berichttype=_text(root, "versieBerichttype"),
        abonnement=_text(root, "abonnement/naam"),
        abonnement_versie=_text(root, "abonnement/versie"),
        tijdstempel_verstrekker=_datetime(root, "datumtijdstempelLV"),
        tijdstempel_digilevering=_datetime(root, "datumtijdstempelDigilevering"),
        verstrekker_oin=None,
        ontvanger_oin=None,
        payload=_payload(root, "gebeurtenisinhoud"),
    )


def _read_v5(root: etree._Element) -> Levering:
    return Levering(
        form="v5",
        kenmerk=_text(root, "d:BerichtHeader/d:KenmerkLogius"),
        kenmerk_verstrekker=_text(root, "d:BerichtHeader/d:KenmerkVerstrekker"),
        referentie_id=_optional_text(root, "d:BerichtHeader/d:ReferentieId"),
        basisregistratie=_text(root, "d:Stuurgegevens/d:Basisregistratie"),
        gebeurtenissoort=_text(root, "d:Stuurgegevens/d:Gebeurtenissoort/d:Naam"),
        gebeurtenissoort_versie=_text(root, "d:Stuurgegevens/d:Gebeurtenissoort/d:Versie"),
        versie_berichttype=_text(root, "d:Stuurgegevens/d:VersieBerichttype"),
        abonnement=_text(root, "d:Stuurgegevens/d:Abonnement/d:Naam"),
        abonnement_versie=_text(root, "d:Stuurgegevens/d:Abonnement/d:Versie"),
        tijdstempel_verstrekker=_datetime(root, "d:BerichtHeader/d:DatumtijdstempelVerstrekker"),
        tijdstempel_digilevering=_datetime(root, "d:BerichtHeader/d:DatumtijdstempelLogius"),
        verstrekker_oin=_text(root, "d:BerichtHeader/d:VerstrekkerId"),
        ontvanger_oin=_text(root, "d:BerichtHeader/d:OntvangerId"),
        payload=_payload(root, "d:Inhoud"),
    )


# After validation every required element is there; these only read.
_NS = {"d": DIGILEVERING_NS}


def _optional_text(root: etree._Element, path: str) -> str | None:
    element = root.find(path, _NS)
    if element is None:
        return None
    return (element.text or "").strip()


def _text(root: etree._Element, path: str) -> str:
    value = _optional_text(root, path)
    if value is None:  # pragma: no cover - the schema requires it
        raise SoapFault(DkCode.NOT_XSD_CONFORMANT, f"{path} is missing", element=path)
    return value


def _datetime(root: etree._Element, path: str) -> datetime:
    """An xs:dateTime as an aware datetime; a value without timezone is Amsterdam local time."""
    raw = _text(root, path)
    name = path.rsplit(":", 1)[-1]
    # xs:dateTime allows 24:00:00 (the end of the day); Python does not.
    date_part, _, time_part = raw.partition("T")
    end_of_day = time_part.startswith("24:00:00")
    if end_of_day:
        raw = f"{date_part}T00{time_part[2:]}"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise SoapFault(
            DkCode.NOT_XSD_CONFORMANT,
            f"{name}: {raw!r} is not a usable dateTime ({exc})",
            element=name,
        ) from exc
    if end_of_day:
        value += timedelta(days=1)
    if value.tzinfo is None:
        value = value.replace(tzinfo=AMSTERDAM)
    return value


def _payload(root: etree._Element, path: str) -> etree._Element:
    container = root.find(path, _NS)
    children = [] if container is None else [c for c in container if isinstance(c.tag, str)]
    if len(children) != 1:  # pragma: no cover - the schema requires exactly one
        raise SoapFault(
            DkCode.NOT_XSD_CONFORMANT, f"{path} must hold exactly one element", element=path
        )
    return children[0]


# --- schema errors -------------------------------------------------------------------------

_ELEMENT_RE = re.compile(r"^Element '([^']+)'")
_EXPECTED_RE = re.compile(r"Expected is (?:one of )?\( ([^)]*) \)")
_CONTENT_CONTAINERS = {"gebeurtenisinhoud", f"{{{DIGILEVERING_NS}}}Inhoud"}


def _schema_fault(body_child: etree._Element, log: etree._ListErrorLog) -> SoapFault:
    """A 0004 fault from lxml's first schema error, naming the element a person should fix."""
    error = log[0]
    element, reason = _diagnose(body_child, error.message, error.line)
    root = etree.QName(body_child).localname
    return SoapFault(
        DkCode.NOT_XSD_CONFORMANT,
        f"{root} does not conform to the DigiLevering schema: {reason} (line {error.line})",
        element=element,
    )


def _diagnose(body_child: etree._Element, message: str, line: int) -> tuple[str, str]:
    """(element to name, reason) for one lxml schema error message.

    lxml reports where validation stopped; for a missing element that is its next sibling (or its
    parent), so when the expected element is absent we name that one instead.
    """
    found = _ELEMENT_RE.match(message)
    reported = found.group(1) if found else str(body_child.tag)
    name = _local(reported)
    listed = _EXPECTED_RE.search(message)
    expected = [e.strip() for e in listed.group(1).split(",")] if listed else []
    single = expected[0] if len(expected) == 1 and "*" not in expected[0] else None
    nodes = _locate(body_child, reported, line)
    containers = [tag for n in nodes if (tag := _parent_tag(n)) in _CONTENT_CONTAINERS]
    if reported in _CONTENT_CONTAINERS and "Missing" in message:
        containers.append(reported)
    if containers:
        container = _local(containers[0])
        return container, f"{container} must hold exactly one element: {message}"
    if single is None:
        return name, message
    if "Missing child element" in message:
        return _local(single), f"{_local(single)} is missing in {name}: {message}"
    if _local(single) == name:
        return name, (
            f"{name} is in the wrong namespace (v4 children are unqualified, v5 elements"
            f" qualified): {message}"
        )
    for node in nodes:
        parent = node.getparent()
        if parent is not None and parent.find(single) is None:
            parent_name = _local(str(parent.tag))
            return _local(single), f"{_local(single)} is missing in {parent_name}: {message}"
    return name, message


def _parent_tag(element: etree._Element) -> str:
    parent = element.getparent()
    return "" if parent is None else str(parent.tag)


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _locate(root: etree._Element, tag: str, line: int) -> list[etree._Element]:
    """The elements an error may be about: same tag, narrowed to the reported line if possible."""
    candidates = list(root.iter(tag))
    on_line = [e for e in candidates if _line(e) == line]
    return on_line or candidates


def _line(element: etree._Element) -> int | None:
    # lxml-stubs types `sourceline` as `...`; it is Optional[int].
    line: int | None = getattr(element, "sourceline", None)
    return line


# --- documents -------------------------------------------------------------------------------


_SCHEMA_LOCK = threading.Lock()


@cache
def _schema() -> etree.XMLSchema:
    """The DigiLevering schema (v4 + the included v5), compiled once."""
    path = wsdl_dir() / "digilevering.xsd"
    return etree.XMLSchema(etree.parse(str(path), SAFE_PARSER))


@cache
def _template(name: str) -> etree._ElementTree:
    return etree.parse(str(wsdl_dir() / name), SAFE_PARSER)


def wsdl_document(service_url: str) -> bytes:
    """The WSDL, its addresses set to `service_url` and its imports to `service_url?xsd=NAME`."""
    tree = copy.deepcopy(_template(WSDL_FILE))
    for address in tree.iter(f"{{{_WSDL_SOAP11_NS}}}address", f"{{{_WSDL_SOAP12_NS}}}address"):
        address.set("location", service_url)
    _rewrite_locations(tree, service_url)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def schema_document(name: str, service_url: str) -> bytes | None:
    """One of `SCHEMA_FILES` with its imports rewritten like the WSDL's; None for other names."""
    if name not in SCHEMA_FILES:
        return None
    tree = copy.deepcopy(_template(name))
    _rewrite_locations(tree, service_url)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def _rewrite_locations(tree: etree._ElementTree, service_url: str) -> None:
    for ref in tree.iter(f"{{{_XS_NS}}}import", f"{{{_XS_NS}}}include"):
        location = ref.get("schemaLocation")
        if location in SCHEMA_FILES:
            ref.set("schemaLocation", f"{service_url}?xsd={location}")


# --- acknowledgement -----------------------------------------------------------------------


def build_acknowledgement(
    levering: Levering,
    *,
    duplicate: bool,
    event_ids: Sequence[str],
    received_at: datetime,
) -> etree._Element:
    """The response Body child: `Ontvangstbevestiging` (see wsdl/digibridge-wus.xsd)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    ack = etree.Element(f"{{{ACK_NS}}}Ontvangstbevestiging", nsmap={"dbw": ACK_NS})
    _sub(ack, "kenmerk", levering.kenmerk)
    _sub(ack, "kenmerkVerstrekker", levering.kenmerk_verstrekker)
    _sub(ack, "ontvangen", received_at.isoformat())
    _sub(ack, "duplicaat", _boolean(duplicate))
    ids = _sub(ack, "eventIds", None)
    for event_id in event_ids:
        _sub(ids, "eventId", event_id)
    return ack


def _sub(parent: etree._Element, name: str, text: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ACK_NS}}}{name}")
    element.text = text
    return element


def _boolean(value: bool) -> Literal["true", "false"]:
    return "true" if value else "false"
