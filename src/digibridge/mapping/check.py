"""`digibridge check`: a mapping folder, every file and every sample message, in one pass.

What passes here is what the gateway runs: `serve` starts and a reload swaps mappings only when
`check_directory` finds no problem. The checks:

1. every mapping file on its own (`loader.load_file`: YAML, keys, XPath, prefixes, lookups,
   required attributes, NL GOV rules), every file reported, not just the first wrong one;
2. the files together (rule names and event types unique);
3. the reverse mappings in `terugmeldingen/` (`reverse.load_reverse_file`), if any;
4. every sample message beside the mappings (`samples_folder`) maps to exactly the events of
   its golden file `<name>.events.json`, each event passes the NL GOV checks and its `data`
   (informatierijk and informatiearm) validates against its type's JSON Schema.

Golden files are written with the public base URL `GOLDEN_BASE` (`https://digibridge.example`),
whatever the gateway's own `public_url` is, so they stay valid on every installation.
Every problem is `file:line:column: what was expected`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from digibridge.errors import DigibridgeError
from digibridge.events.nlgov import event_problems
from digibridge.events.types import CloudEvent
from digibridge.mapping._yaml import Mark, MarkedList, MarkedMap, YamlError, load_marked
from digibridge.mapping.engine import MappingSet
from digibridge.mapping.loader import check_unique, display_path, load_file, mapping_paths
from digibridge.mapping.model import EventTypeInfo, MappingFile
from digibridge.mapping.reverse import ReverseMappings, load_reverse_file, reverse_paths
from digibridge.mapping.types import Levering, MappingError

#: The public base URL golden files are written with (`dataschema`, default `dataref`).
GOLDEN_BASE = "https://digibridge.example"
GOLDEN_SUFFIX = ".events.json"
#: At most this many differences are reported per golden file.
MAX_DIFFERENCES = 10

#: Reads one sample message file; raises DigibridgeError (or ValueError) if it is unreadable.
ReadMessage = Callable[[bytes], Levering]


@dataclass(frozen=True)
class CheckProblem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    folder: Path
    problems: tuple[CheckProblem, ...]
    #: The set as checked (base `GOLDEN_BASE`); None when the files do not load.
    mapping_set: MappingSet | None = None
    samples: tuple[Path, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        files = len(self.mapping_set.files) if self.mapping_set else 0
        types = len(self.mapping_set.event_types) if self.mapping_set else 0
        samples = f"{len(self.samples)} sample(s)"
        if self.ok:
            return f"ok: {files} mapping file(s), {types} event type(s), {samples} as expected"
        return f"{len(self.problems)} problem(s) in {display_path(self.folder)}"


def samples_folder(mappings: Path) -> Path | None:
    """Where the sample messages of a mapping folder live: its own `samples/` subfolder, else a
    `samples/` folder next to it (the repository and the installed bundle are laid out so)."""
    for candidate in (mappings / "samples", mappings.parent / "samples"):
        if candidate.is_dir():
            return candidate
    return None


def check_directory(folder: Path, *, read_message: ReadMessage) -> CheckResult:
    """Every check above on `folder`; the result lists every problem found."""
    try:
        paths = mapping_paths(folder)
    except MappingError as exc:
        return CheckResult(folder, (_problem(exc),))
    problems: list[CheckProblem] = []
    files: list[MappingFile] = []
    for path in paths:
        try:
            files.append(load_file(path))
        except MappingError as exc:
            problems.append(_problem(exc))
    problems += _check_reverse(folder)
    if problems:
        return CheckResult(folder, tuple(problems))
    try:
        check_unique(files)
    except MappingError as exc:
        return CheckResult(folder, (_problem(exc),))
    mapping_set = MappingSet(files, dataschema_base=GOLDEN_BASE)
    samples_dir = samples_folder(folder)
    samples = sorted(samples_dir.glob("*.xml")) if samples_dir else []
    for sample in samples:
        problems += _check_sample(mapping_set, sample, read_message)
    if samples_dir:
        for golden in sorted(samples_dir.glob(f"*{GOLDEN_SUFFIX}")):
            if not golden.with_name(golden.name.removesuffix(GOLDEN_SUFFIX) + ".xml").is_file():
                problems.append(
                    CheckProblem(f"{display_path(golden)}:1:1", "a golden file without its sample")
                )
    return CheckResult(folder, tuple(problems), mapping_set, tuple(samples))


def _check_reverse(folder: Path) -> list[CheckProblem]:
    """The reverse mappings (`terugmeldingen/`): every file on its own, then all together."""
    problems: list[CheckProblem] = []
    for path in reverse_paths(folder):
        try:
            load_reverse_file(path)
        except MappingError as exc:
            problems.append(_problem(exc))
    if not problems:
        try:
            ReverseMappings.load(folder)
        except MappingError as exc:
            problems.append(_problem(exc))
    return problems


def _problem(exc: MappingError) -> CheckProblem:
    return CheckProblem(exc.location or "?", exc.message)


def _check_sample(
    mapping_set: MappingSet, sample: Path, read_message: ReadMessage
) -> list[CheckProblem]:
    at_sample = f"{display_path(sample)}:1:1"
    golden = sample.with_name(sample.stem + GOLDEN_SUFFIX)
    try:
        levering = read_message(sample.read_bytes())
    except (DigibridgeError, ValueError, OSError) as exc:
        return [CheckProblem(at_sample, f"the sample cannot be read: {exc}")]
    try:
        events = mapping_set.map(levering)
    except MappingError as exc:
        return [CheckProblem(at_sample, f"the sample does not map: {exc.message}")]
    problems = _check_events(mapping_set, events, at_sample)
    actual = [event.to_json_dict() for event in events]
    if not golden.is_file():
        problems.append(
            CheckProblem(
                at_sample,
                f"no golden file {golden.name}; expected the events the sample maps to "
                "(`digibridge map` prints them)",
            )
        )
        return problems
    return problems + _compare_golden(golden, actual)


def _check_events(
    mapping_set: MappingSet, events: Sequence[CloudEvent], at_sample: str
) -> list[CheckProblem]:
    infos: Mapping[str, EventTypeInfo] = {info.type: info for info in mapping_set.event_types}
    problems = []
    for index, event in enumerate(events):
        info = infos[event.type]
        forms = [(event, info.schema, "")]
        if event.informatiearm is not None:
            forms.append((event.informatiearm, info.informatiearm_schema, " (informatiearm)"))
        for form, schema, label in forms:
            for problem in event_problems(form):
                problems.append(CheckProblem(at_sample, f"event {index}{label}: {problem}"))
            validator = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            for error in validator.iter_errors(form.data):
                where = "".join(f"[{part!r}]" for part in error.absolute_path)
                problems.append(
                    CheckProblem(
                        at_sample,
                        f"event {index}{label} data{where} does not fit the schema of "
                        f"{event.type}: {error.message}",
                    )
                )
    return problems


def _compare_golden(golden: Path, actual: list[dict[str, Any]]) -> list[CheckProblem]:
    display = display_path(golden)
    try:
        expected = json.loads(golden.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [CheckProblem(f"{display}:1:1", f"not a JSON golden file: {exc}")]
    try:
        marked = load_marked(golden, display)
    except YamlError:
        marked = None
    differences: list[tuple[tuple[str | int, ...], str]] = []
    _differences(expected, actual, (), differences)
    problems = []
    for path, message in differences[:MAX_DIFFERENCES]:
        mark = _mark_of(marked, path) or Mark(display, 1, 1)
        problems.append(CheckProblem(str(mark), message))
    if len(differences) > MAX_DIFFERENCES:
        more = len(differences) - MAX_DIFFERENCES
        problems.append(CheckProblem(f"{display}:1:1", f"... and {more} more difference(s)"))
    return problems


def _differences(expected: Any, actual: Any, path: tuple[str | int, ...], out: list[Any]) -> None:
    where = _path_text(path)
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                out.append(
                    (
                        (*path, key),
                        f"{_path_text((*path, key))}: expected "
                        f"{_json(expected[key])}, the mapping gives no such member",
                    )
                )
            else:
                _differences(expected[key], actual[key], (*path, key), out)
        for key in actual:
            if key not in expected:
                out.append(
                    (
                        path,
                        f"{where or 'the events'}: the mapping also gives "
                        f"{key!r}: {_json(actual[key])}, which the golden file lacks",
                    )
                )
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            what = "events" if not path else "items"
            out.append(
                (
                    path,
                    f"{where or 'the file'}: expected {len(expected)} {what}, "
                    f"the mapping gives {len(actual)}",
                )
            )
        for index, (left, right) in enumerate(zip(expected, actual, strict=False)):
            _differences(left, right, (*path, index), out)
        return
    if expected != actual or type(expected) is not type(actual):
        out.append(
            (path, f"{where}: expected {_json(expected)}, the mapping gives {_json(actual)}")
        )


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _mark_of(node: Any, path: tuple[str | int, ...]) -> Mark | None:
    """Where the value at `path` starts in the golden file (its nearest existing ancestor)."""
    mark = getattr(node, "mark", None)
    for part in path:
        if isinstance(node, MarkedMap) and isinstance(part, str) and part in node:
            mark = node.value_marks[part]
            node = node[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and part < len(node):
            mark = node.item_marks[part]
            node = node[part]
        else:
            break
    return mark
