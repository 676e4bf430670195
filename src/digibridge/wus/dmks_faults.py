"""SOAP Faults of the DigiMelding koppelvlak: reading them, and writing them (for the stub).

A DMKS fault (STANDARDS.md §3) carries its code twice: in `faultcode` as `Client.DK0004.…` or
`Server.DK0051.…`, and in the detail `DigimeldingSynchroonFault {faultcode, faultstring,
faultactor, faultdetail}` (namespace `http://webservices.digimelding.nl/dmks/cookiebox/`).

Whether the same request may succeed later (`retryable`), decided here once:

    DK0002  not authorised        never: our certificate or OIN must change first
    DK0004  not XSD conformant    never: the same bytes stay invalid
    DK0051  time-out              always: the registry was slow, not the request wrong
    DK0050  processing error      as the faultcode says: `Server.` retried, `Client.` not
    other (registry-specific)     likewise by the faultcode's side; no side: not retried
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from digibridge.mapping.dmks import DMKS_NS
from digibridge.wus.faults import SOAP11_NS

NOT_AUTHORISED = "DK0002"
NOT_XSD_CONFORMANT = "DK0004"
PROCESSING_ERROR = "DK0050"
TIME_OUT = "DK0051"

_NEVER = frozenset({NOT_AUTHORISED, NOT_XSD_CONFORMANT})
_ALWAYS = frozenset({TIME_OUT})
_MAX_TEXT = 2000


@dataclass(frozen=True)
class FaultInfo:
    """What a DMKS fault says."""

    #: The DK code (`DK0004`) or the registry's own code.
    code: str
    faultstring: str
    #: The raw `faultcode` text, prefix removed (`Client.DK0004.Validatie`).
    faultcode: str
    #: `Client` or `Server` (None when the faultcode says neither).
    side: str | None
    actor: str | None
    #: `faultdetail` of the DigimeldingSynchroonFault.
    detail: str | None

    @property
    def retryable(self) -> bool:
        if self.code in _NEVER:
            return False
        if self.code in _ALWAYS:
            return True
        return self.side == "Server"


def read_fault(fault: etree._Element) -> FaultInfo:
    """A SOAP 1.1 `Fault` element as FaultInfo; tolerant of missing parts, bounded in size."""
    raw_code = _text(fault.find("faultcode")) or ""
    local = raw_code.rpartition(":")[2]
    parts = local.split(".")
    side = parts[0] if parts[0] in ("Client", "Server") else None
    code = parts[1] if side and len(parts) > 1 and parts[1] else local
    detail = fault.find(f"detail/{{{DMKS_NS}}}DigimeldingSynchroonFault")
    detail_text = None
    actor = _text(fault.find("faultactor"))
    if detail is not None:
        code = _text(detail.find(f"{{{DMKS_NS}}}faultcode")) or code
        actor = _text(detail.find(f"{{{DMKS_NS}}}faultactor")) or actor
        detail_text = _text(detail.find(f"{{{DMKS_NS}}}faultdetail"))
    return FaultInfo(
        code=code or "unknown",
        faultstring=_text(fault.find("faultstring")) or "",
        faultcode=local,
        side=side,
        actor=actor,
        detail=detail_text,
    )


def render_fault(
    code: str,
    faultstring: str,
    *,
    client: bool,
    subcode: str,
    detail: str | None = None,
    actor: str = "DigiMelding",
) -> bytes:
    """A SOAP 1.1 Fault envelope in DMKS form: `soap:Client.DK0004.Subcode` + detail."""
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
    body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11_NS}}}Fault")
    side = "Client" if client else "Server"
    etree.SubElement(fault, "faultcode").text = f"soap:{side}.{code}.{subcode}"
    etree.SubElement(fault, "faultstring").text = faultstring
    etree.SubElement(fault, "faultactor").text = actor
    holder = etree.SubElement(fault, "detail")
    info = etree.SubElement(
        holder, f"{{{DMKS_NS}}}DigimeldingSynchroonFault", nsmap={"dmk": DMKS_NS}
    )
    etree.SubElement(info, f"{{{DMKS_NS}}}faultcode").text = code
    etree.SubElement(info, f"{{{DMKS_NS}}}faultstring").text = faultstring[:4000]
    etree.SubElement(info, f"{{{DMKS_NS}}}faultactor").text = actor
    if detail is not None:
        etree.SubElement(info, f"{{{DMKS_NS}}}faultdetail").text = detail[:4000]
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    # A hostile registry could send megabytes here; what we keep goes into history and logs.
    return element.text.strip()[:_MAX_TEXT]
