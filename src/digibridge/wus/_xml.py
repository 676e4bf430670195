"""Hardened XML parsing for everything that arrives from outside.

Refuses what costs before it costs: DTDs (and with them every entity trick) are rejected by a
scan of the prolog before the parser runs; the parser itself never loads a DTD, resolves an
entity or touches the network; depth is capped after parsing (libxml2 caps it at 256 anyway).
"""

from __future__ import annotations

import functools
import re

from lxml import etree

#: The one parser configuration for XML digibridge did not write itself.
SAFE_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)

_XML_DECL = re.compile(rb"\A<\?xml\s[^>]*?\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PROLOG_ITEM = re.compile(rb"\s+|<!--.*?-->|<\?.*?\?>", re.DOTALL)


class XmlRefused(ValueError):
    """Input that is not acceptable XML; `reason` is meant for a person, `kind` for code."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def check_utf8(data: bytes) -> None:
    """Digikoppeling is UTF-8 only: refuse other declared encodings and invalid UTF-8 bytes."""
    declaration = _XML_DECL.match(data)
    if declaration:
        encoding = _ENCODING.search(declaration.group(0))
        if encoding and encoding.group(1).decode().lower().replace("_", "-") not in (
            "utf-8",
            "utf8",
        ):
            raise XmlRefused("encoding", f"encoding {encoding.group(1).decode()!r} is not UTF-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlRefused("encoding", f"body is not valid UTF-8 (byte {exc.start})") from None


def _refuse_doctype(data: bytes) -> None:
    """A DOCTYPE may only stand in the prolog; find it there without parsing anything."""
    position = 0
    declaration = _XML_DECL.match(data)
    if declaration:
        position = declaration.end()
    if data.startswith(b"\xef\xbb\xbf"):
        position = max(position, 3)
    while True:
        item = _PROLOG_ITEM.match(data, position)
        if not item:
            break
        position = item.end()
    if data.startswith(b"<!DOCTYPE", position) or data.startswith(b"<!doctype", position):
        raise XmlRefused("dtd", "DTDs and entity declarations are not allowed")


def _depth_exceeds(root: etree._Element, max_depth: int) -> bool:
    return bool(_deeper_than(max_depth)(root))


@functools.cache
def _deeper_than(max_depth: int) -> etree.XPath:
    """Whether an element lies deeper than `max_depth` (the root element is at depth 1): one
    XPath of `max_depth + 1` child steps, walked level by level in C, where a walk of every
    node in Python took three times as long."""
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def parse_untrusted(data: bytes, *, max_depth: int) -> etree._Element:
    """Parse bytes from outside into an element tree, or raise XmlRefused."""
    _refuse_doctype(data)
    try:
        root = etree.fromstring(data, SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        message = str(exc.msg) if exc.msg else str(exc)
        if "Excessive depth" in message:
            raise XmlRefused("depth", f"XML nested deeper than {max_depth} levels") from None
        raise XmlRefused("syntax", f"malformed XML: {message}") from None
    if root is None:
        raise XmlRefused("syntax", "empty document")
    if _depth_exceeds(root, max_depth):
        raise XmlRefused("depth", f"XML nested deeper than {max_depth} levels")
    return root
