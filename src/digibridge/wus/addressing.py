"""WS-Addressing 1.0 headers of a Digikoppeling WUS request, and those of our answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from lxml import etree

WSA_NS = "http://www.w3.org/2005/08/addressing"
#: The pre-standard namespace; Digikoppeling says it is not compliant.
WSA_2004_NS = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
ANONYMOUS = f"{WSA_NS}/anonymous"


@dataclass(frozen=True)
class AddressingHeaders:
    to: str
    action: str
    message_id: str
    from_address: str | None = None
    reply_to: str | None = None

    @property
    def sender_oin(self) -> str | None:
        """The OIN in `wsa:From/wsa:Address?OIN=…`, when the sender put one there."""
        return oin_from_address(self.from_address)


def oin_from_address(address: str | None) -> str | None:
    if not address:
        return None
    values = parse_qs(urlsplit(address).query).get("OIN")
    return values[0] if values else None


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def response_headers(
    header: etree._Element, *, action: str, relates_to: str, message_id: str
) -> None:
    """Add the mandatory response headers (Action, MessageID, RelatesTo) to a SOAP Header."""
    etree.SubElement(header, f"{{{WSA_NS}}}Action").text = action
    etree.SubElement(header, f"{{{WSA_NS}}}MessageID").text = message_id
    etree.SubElement(header, f"{{{WSA_NS}}}RelatesTo").text = relates_to
    etree.SubElement(header, f"{{{WSA_NS}}}To").text = ANONYMOUS
