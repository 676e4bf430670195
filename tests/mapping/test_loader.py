"""Mapping files that are wrong fail at load, each with file:line:column and a clear reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from digibridge.mapping.engine import MappingSet
from digibridge.mapping.loader import load_file
from digibridge.mapping.types import MappingError
from tests.mapping.conftest import FIXTURES, MAPPINGS

HOSTILE = FIXTURES / "hostile"

# file, line:column of the offending node, a fragment of the message
CASES = [
    ("bad-yaml", "5:10", "expected ',' or '}'"),
    ("xpath-syntax", "16:15", "Invalid predicate"),
    ("unknown-prefix", "16:15", "unknown namespace prefix 'foo'"),
    ("unknown-variable", "16:15", "unknown variable $bsn"),
    ("missing-type", "14:7", "event is missing 'type'"),
    ("missing-name", "8:5", "rule is missing 'name'"),
    ("missing-gebeurtenissoort", "10:7", "match is missing 'gebeurtenissoort'"),
    ("type-not-reverse-dns", "14:13", "'BRP', 'Verhuisd' must be lower-case"),
    ("type-two-versions", "14:13", "2 version segments (v1, v2)"),
    ("exslt-regexp", "13:13", "extension function re:test() is not allowed"),
    ("document-function", "16:15", "document() is not an XPath 1.0 core function"),
    ("php-function", "17:15", "extension function php:function() is not allowed"),
    ("unknown-rule-key", "9:5", "unknown key 'descripton' in rule"),
    ("unknown-value-key", "16:35", "did you mean 'optional'?"),
    ("duplicate-key", "12:7", "duplicate key 'gebeurtenissoort'"),
    ("unquoted-oin", "2:6", "quote it"),
    ("unknown-conversion", "16:44", "unknown conversion 'datum'"),
    ("alias", "17:12", "aliases (*name) are not allowed"),
    ("source-not-nld-urn", "6:11", "must be a URN in the nld namespace"),
    ("unknown-template-field", "6:11", "unknown template field {oin}"),
    ("extension-name", "16:9", "attribute name 'traceParent' must consist of a-z and 0-9"),
    ("field-name", "16:7", "field name 'Waarde_1' must be lowerCamelCase"),
    ("lookup-unknown", "16:43", "unknown lookup 'kleur'"),
    ("lookup-and-convert", "18:50", "use lookup or convert, not both"),
    ("identifier-unknown", "15:19", "identifier 'nummer': data has no field 'nummer'"),
    ("dataref-not-url", "16:14", "must be an http(s) URL or start with {base}"),
    ("dataref-not-identifier", "15:14", "{data.waarde} is not an identifier of rule"),
    ("version-family", "18:15", "must be 'nl.tst.iets-gebeurd' with a version segment"),
    ("python-tag", "16:15", "could not determine a constructor for the tag"),
    ("for-each-document", "13:15", "document() is not an XPath 1.0 core function"),
]


def test_every_hostile_fixture_has_a_case() -> None:
    assert {path.stem for path in HOSTILE.glob("*.yaml")} == {name for name, _, _ in CASES}


def test_the_fixtures_base_file_is_valid() -> None:
    """The hostile files are this one with one defect each."""
    assert [rule.name for rule in load_file(FIXTURES / "tst" / "tst.yaml").rules] == [
        "iets-gebeurd"
    ]


@pytest.mark.parametrize(("name", "position", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_with_its_position(name: str, position: str, fragment: str) -> None:
    with pytest.raises(MappingError) as caught:
        load_file(HOSTILE / f"{name}.yaml")
    error = caught.value
    assert error.location is not None
    assert error.location.endswith(f"hostile/{name}.yaml:{position}")
    assert fragment in error.message
    assert str(error) == f"{error.location}: {error.message}"


def test_load_reports_the_position_through_the_public_api(tmp_path: Path) -> None:
    (tmp_path / "brp.yaml").write_text(
        (HOSTILE / "unknown-prefix.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(MappingError) as caught:
        MappingSet.load(tmp_path, dataschema_base="https://digibridge.example")
    assert caught.value.location == f"{tmp_path / 'brp.yaml'}:16:15"


def test_a_rule_name_used_twice_is_refused() -> None:
    with pytest.raises(MappingError, match="rule name 'iets-gebeurd' is also used at") as caught:
        MappingSet.load(FIXTURES / "duplicate-names", dataschema_base="https://x.example")
    assert caught.value.location is not None
    assert caught.value.location.endswith("duplicate-names/b.yaml:8:5")


def test_an_event_type_emitted_by_two_rules_is_refused() -> None:
    with pytest.raises(MappingError, match=r"event type 'nl\.tst\.iets-gebeurd' is also emitted"):
        MappingSet.load(FIXTURES / "duplicate-types", dataschema_base="https://x.example")


def test_a_folder_without_mapping_files_is_refused() -> None:
    with pytest.raises(MappingError, match=r"no mapping files"):
        MappingSet.load(FIXTURES / "empty", dataschema_base="https://x.example")


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="does not exist"):
        MappingSet.load(tmp_path / "nope", dataschema_base="https://x.example")


def test_the_bundled_mappings_load() -> None:
    mapping_set = MappingSet.load(MAPPINGS, dataschema_base="https://x.example/")
    assert [path.name for path in mapping_set.files] == [
        "bag.yaml",
        "brk.yaml",
        "brp.yaml",
        "nhr.yaml",
    ]
    assert {info.type for info in mapping_set.event_types} == {
        *(
            f"nl.bag.{kind}-{change}"
            for kind in ("pand", "verblijfsobject", "nummeraanduiding")
            for change in ("toegevoegd", "gewijzigd", "ingetrokken")
        ),
        "nl.brk.eigendom-overgedragen",
        "nl.brp.persoon-verhuisd",
        "nl.brp.persoon-overleden",
        "nl.brp.persoon-ingeschreven",
        "nl.brp.anummer-gewijzigd",
        "nl.nhr.onderneming-ingeschreven",
        "nl.nhr.onderneming-gewijzigd",
        "nl.nhr.onderneming-beeindigd",
    }
