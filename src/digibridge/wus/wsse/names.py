"""Namespaces, algorithm URIs and small shared pieces of WS-Security 1.0/1.1 as WUS uses it."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE11_NS = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
X509V3_VALUE_TYPE = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
)
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
#: Signature methods Digikoppeling allows: RSA with SHA-256 or stronger.
SIGNATURE_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    }
)
#: Digest methods: SHA-256 or stronger.
DIGEST_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)

WSU_ID = f"{{{WSU_NS}}}Id"
#: Attribute names signxml (and most XML-DSig tools) resolve `#id` references by, in any
#: namespace; a reference must name exactly one element across all of them.
ID_ATTRIBUTE_NAMES = frozenset({"Id", "ID", "id"})


def qname(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def format_time(moment: datetime) -> str:
    """xsd:dateTime in UTC with milliseconds and `Z`, as WS-Security timestamps are written."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """An xsd:dateTime with a time zone, as aware UTC; None if absent or not such a value."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def id_index(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every ID-like attribute value in the document and the elements that carry it."""
    index: dict[str, list[etree._Element]] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if etree.QName(name).localname in ID_ATTRIBUTE_NAMES:
                index.setdefault(str(value), []).append(element)
    return index
