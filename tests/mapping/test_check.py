"""`check_directory`: every file and every sample of a mapping folder, problems with locations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from digibridge.mapping.check import GOLDEN_BASE, check_directory, samples_folder
from digibridge.wus.digilevering import read_levering
from tests.mapping.conftest import FIXTURES, MAPPINGS, SAMPLES


def _copy_bundle(tmp_path: Path) -> Path:
    """The bundled mappings and samples, laid out as in the repository (samples beside)."""
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    shutil.copytree(SAMPLES, tmp_path / "samples")
    return tmp_path / "mappings"


def test_the_bundled_mappings_pass_with_every_sample() -> None:
    result = check_directory(MAPPINGS, read_message=read_levering)
    assert result.problems == ()
    assert len(result.samples) == len(list(SAMPLES.glob("*.xml"))) >= 12
    assert result.mapping_set is not None
    assert result.mapping_set.base == GOLDEN_BASE
    assert result.summary().startswith("ok: 4 mapping file(s)")


def test_samples_live_inside_the_folder_or_beside_it(tmp_path: Path) -> None:
    assert samples_folder(MAPPINGS) == SAMPLES
    (tmp_path / "samples").mkdir()
    assert samples_folder(tmp_path) == tmp_path / "samples"
    assert samples_folder(FIXTURES / "tst") is None


def test_a_golden_difference_points_at_the_golden_line(tmp_path: Path) -> None:
    mappings = _copy_bundle(tmp_path)
    golden = tmp_path / "samples" / "brp-verhuizing.events.json"
    text = golden.read_text()
    golden.write_text(text.replace('"3011AB"', '"3011AC"'))
    line, column = next(
        (n, row.index('"3011AB"') + 1)
        for n, row in enumerate(text.splitlines(), 1)
        if '"3011AB"' in row
    )
    (problem,) = check_directory(mappings, read_message=read_levering).problems
    assert problem.location.endswith(f"samples/brp-verhuizing.events.json:{line}:{column}")
    assert problem.message == (
        '[0].data.nieuwAdres.postcode: expected "3011AC", the mapping gives "3011AB"'
    )


def test_a_missing_golden_file_and_an_unmapped_sample_are_problems(tmp_path: Path) -> None:
    mappings = _copy_bundle(tmp_path)
    (tmp_path / "samples" / "nhr-update.events.json").unlink()
    unmapped = tmp_path / "samples" / "brp-onbekend.xml"
    unmapped.write_bytes(
        (SAMPLES / "brp-verhuizing.xml").read_bytes().replace(b"<naam>Gv01<", b"<naam>Zz99<")
    )
    (tmp_path / "samples" / "brp-onbekend.events.json").write_text(json.dumps([]))
    problems = [str(p) for p in check_directory(mappings, read_message=read_levering).problems]
    assert len(problems) == 2
    assert "samples/brp-onbekend.xml:1:1: the sample does not map: " in problems[0]
    assert "gebeurtenissoort is 'Zz99'" in problems[0]
    assert "samples/nhr-update.xml:1:1: no golden file nhr-update.events.json" in problems[1]


def test_every_broken_file_is_reported_not_just_the_first(tmp_path: Path) -> None:
    for name in ("unknown-prefix", "type-two-versions"):
        shutil.copy(FIXTURES / "hostile" / f"{name}.yaml", tmp_path / f"{name}.yaml")
    result = check_directory(tmp_path, read_message=read_levering)
    assert [p.location.rsplit("/", 1)[-1] for p in result.problems] == [
        "type-two-versions.yaml:14:13",
        "unknown-prefix.yaml:16:15",
    ]
    assert result.mapping_set is None
    assert not result.ok
