"""Only XPath 1.0 itself: no extension functions, no EXSLT, nothing undeclared."""

from __future__ import annotations

import pytest
from lxml import etree

from digibridge.mapping._xpath import XPathProblem, compile_xpath

NAMESPACES = {
    "gba": "urn:example:gba",
    "re": "http://exslt.org/regular-expressions",
    "str": "http://exslt.org/strings",
    "php": "http://php.net/xsl",
}
VARIABLES = ("kenmerk",)


@pytest.mark.parametrize(
    "expression",
    [
        "gba:categorie[@nummer='08'] and gba:categorie[@nummer='58']",
        "a and (b or c)",
        "count(gba:x) * 2",
        "x mod (3) div 2",
        "@*",
        "gba:*",
        "child::gba:x/text()",
        "ancestor-or-self::node()",
        "concat('a(', \"b\", $kenmerk)",
        "normalize-space(translate(., 'ab', 'AB'))",
        "processing-instruction('x')",
        "..//gba:x[last()]",
    ],
)
def test_xpath_1_0_is_allowed(expression: str) -> None:
    assert isinstance(compile_xpath(expression, NAMESPACES, VARIABLES), etree.XPath)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("re:test(gba:x, '^1')", "extension function re:test()"),
        ("re:replace(gba:x, 'a', 'g', 'b')", "extension function re:replace()"),
        ("str:tokenize('a b')", "extension function str:tokenize()"),
        ("php:function('system', 'id')", "extension function php:function()"),
        ("document('/etc/passwd')", "document() is not an XPath 1.0 core function"),
        ("unparsed-text('/etc/passwd')", "unparsed-text() is not"),
        ("system-property('xsl:vendor')", "system-property() is not"),
        ("foo:x", "unknown namespace prefix 'foo'"),
        ("$bsn", "unknown variable $bsn"),
        ("bogus::x", "unknown axis 'bogus'"),
        ("count(", "unbalanced"),
        ("count())", "unbalanced ')'"),
        ("x[", "Invalid"),
        ("count()", "Invalid number of arguments"),
        ("'unterminated", "unexpected"),
        ("  ", "empty"),
    ],
)
def test_anything_else_is_refused(expression: str, reason: str) -> None:
    with pytest.raises(XPathProblem) as caught:
        compile_xpath(expression, NAMESPACES, VARIABLES)
    assert reason in str(caught.value)
