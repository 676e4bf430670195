"""Only XPath 1.0 itself: no extension functions, no EXSLT, nothing undeclared."""

from __future__ import annotations

import pytest
from lxml import etree

from digibridge.mapping._fastpath import IndexPlan
from digibridge.mapping._xpath import (
    ChildIndex,
    CompiledXPath,
    XPathProblem,
    compile_checked,
    compile_xpath,
)
from digibridge.mapping.loader import load_directory
from digibridge.mapping.model import ForEachSpec, ObjectSpec, XPathSpec
from tests.mapping.conftest import MAPPINGS, levering_from_file, sample_paths

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


def _compiled_expressions() -> list[tuple[str, CompiledXPath]]:

    found: list[tuple[str, CompiledXPath]] = []
    for mapping_file in load_directory(MAPPINGS):
        for rule in mapping_file.rules:
            specs: list[object] = [rule.data]
            compiled = [c for c in (rule.match.when, rule.items) if c is not None]
            found += [(rule.name, c.compiled) for c in compiled]
            while specs:
                spec = specs.pop()
                if isinstance(spec, XPathSpec):
                    found.append((rule.name, spec.compiled))
                elif isinstance(spec, ForEachSpec):
                    found.append((rule.name, spec.nodes))
                    specs.append(spec.item)
                elif isinstance(spec, ObjectSpec):
                    specs += [child for _, child in spec.fields]
    return found


def test_the_fast_forms_give_what_lxml_gives_on_every_sample() -> None:
    """Child paths and simple comparisons skip lxml's XPath; on every sample payload, and on
    every element inside it, they must answer exactly as lxml does."""

    expressions = [(name, c) for name, c in _compiled_expressions() if c.fast is not None]
    assert len(expressions) > 100
    for sample in sample_paths():
        payload = levering_from_file(sample).payload
        index = ChildIndex()
        for node in payload.iter():
            if not isinstance(node.tag, str):
                continue
            for _, compiled in expressions:
                assert compiled.fast is not None
                fast = compiled.fast(node, index)
                assert fast == compiled.xpath(node), (compiled.expression, sample.name)


def test_the_first_item_walkers_give_lxmls_first_item_on_every_sample() -> None:
    """Values read only the first item of a child path (`first`, no lists built); with the
    index bucketing only what the mapping set's paths need (`IndexPlan`), both `first` and the
    whole node-set must still be what lxml gives, on every element of every sample."""

    expressions = [c for _, c in _compiled_expressions() if c.fast is not None]
    plan = IndexPlan()
    for compiled in expressions:
        plan |= compiled.index_plan
    paths = [c for c in expressions if c.first is not None]
    assert len(paths) > 100
    for sample in sample_paths():
        payload = levering_from_file(sample).payload
        planned = ChildIndex(plan)
        for node in payload.iter():
            if not isinstance(node.tag, str):
                continue
            for compiled in expressions:
                assert compiled.fast is not None
                expected = compiled.xpath(node)
                assert compiled.fast(node, planned) == expected, compiled.expression
                if compiled.first is not None:
                    first = expected[0] if expected else None
                    assert compiled.first(node, planned) == first, compiled.expression
                    assert compiled.first(node, ChildIndex()) == first, compiled.expression


@pytest.mark.parametrize(
    ("expression", "fast"),
    [
        ("gba:x[@nummer='08']/gba:y", True),
        ("@aNummer", True),
        (".", True),
        ("gba:x and gba:y", True),
        ("gba:x/gba:y != '00000000'", True),
        ("gba:x/gba:y = gba:z/gba:y", True),
        ("/gba:x", False),
        ("gba:x[1]", False),
        ("count(gba:x) > 1", False),
        ("gba:x and gba:y or gba:z", False),
        ("$kenmerk", False),
    ],
)
def test_which_expressions_have_a_fast_form(expression: str, fast: bool) -> None:

    assert (compile_checked(expression, NAMESPACES, VARIABLES).fast is not None) is fast


@pytest.mark.parametrize(
    ("expression", "escapes"),
    [
        ("gba:x/gba:y", False),
        ("count(gba:x) > 1 and not(gba:z)", False),
        ("/gba:x", True),
        ("a and //gba:x", True),
        ("../gba:x", True),
        ("preceding-sibling::gba:x", True),
        ("id('x')", True),
    ],
)
def test_which_expressions_may_leave_their_subtree(expression: str, escapes: bool) -> None:

    assert compile_checked(expression, NAMESPACES, VARIABLES).escapes is escapes
