"""The CloudEvents SQL test compatibility kit (tests/conformance/cesql_tck/), every case of every
file: the value and the error kind each expression yields, or the parse error it must raise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from digibridge.events.cesql import CesqlParseError, compile_expression

TCK = Path(__file__).parents[1] / "conformance" / "cesql_tck"

#: An event with only the required attributes, for cases that give only `eventOverrides`.
DEFAULT_EVENT = {"specversion": "1.0", "id": "tck-id", "source": "tck-source", "type": "tck.type"}


class _JsonLikeLoader(yaml.SafeLoader):
    """YAML as the TCK means it (events in JSON format): timestamps stay strings."""


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expressions(text: str) -> list[str]:
    """Each case's expression exactly as written: plain YAML would read `TRUE` or `-10` as a
    boolean or an integer, but an expression is always text."""
    root = yaml.compose(text, Loader=_JsonLikeLoader)
    assert isinstance(root, yaml.MappingNode)
    tests = next(value for key, value in root.value if key.value == "tests")
    return [
        next(value.value for key, value in case.value if key.value == "expression")
        for case in tests.value
    ]


def _cases() -> list[Any]:
    cases = []
    for path in sorted(TCK.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        suite = yaml.load(text, Loader=_JsonLikeLoader)  # noqa: S506
        for case, expression in zip(suite["tests"], _expressions(text), strict=True):
            case["expression"] = expression
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


CASES = _cases()


def test_the_whole_kit_is_loaded() -> None:
    assert len(list(TCK.glob("*.yaml"))) == 18
    assert len(CASES) > 250


@pytest.mark.parametrize("case", CASES)
def test_tck_case(case: dict[str, Any]) -> None:
    if case.get("error") == "parse":
        with pytest.raises(CesqlParseError):
            compile_expression(case["expression"])
        return
    event = dict(case.get("event") or DEFAULT_EVENT)
    event.update(case.get("eventOverrides") or {})

    result = compile_expression(case["expression"]).evaluate(event)

    if "result" in case:
        assert result.value == case["result"]
        assert type(result.value) is type(case["result"])
    kinds = [error.kind.value for error in result.errors]
    assert kinds == ([case["error"]] if "error" in case else []), result.errors
