"""YAML for mapping files: `yaml.safe_load` semantics, plus where every node starts.

Mapping errors must point at `file:line:column`, so mappings are read into `MarkedMap` and
`MarkedList` (a dict and a list that remember their own position and that of each key and item).
Stricter than plain YAML on purpose: a duplicate key is an error (YAML would keep the last one,
silently), keys must be strings, and aliases are refused (they buy nothing in a mapping file and
would let a small file expand into a huge one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver


@dataclass(frozen=True)
class Mark:
    """A position in a mapping file, 1-based, printed as `file:line:column`."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class YamlError(ValueError):
    """A mapping file is not YAML we accept."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(f"{mark}: {message}")
        self.message = message
        self.mark = mark


class MarkedMap(dict[str, Any]):
    """A YAML mapping that knows where it, each key and each value start."""

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.value_marks: dict[str, Mark] = {}


class MarkedList(list[Any]):
    """A YAML sequence that knows where it and each item start."""

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[Mark] = []


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
elif yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _SafeLoader(Composer, CParser, SafeConstructor, Resolver):
        """`yaml.SafeLoader` with libyaml reading the text (five times as fast, a good part
        of a gateway's start) and Python composing the nodes (where aliases are refused)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

else:  # PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader


class _MarkingLoader(_SafeLoader):
    def __init__(self, stream: str, file: str) -> None:
        super().__init__(stream)
        self.file = file

    def mark_of(self, node: Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in mapping files", event.start_mark
            )
        return super().compose_node(parent, index)


def _construct_map(loader: _MarkingLoader, node: MappingNode) -> MarkedMap:
    loader.flatten_mapping(node)
    result = MarkedMap(loader.mark_of(node))
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_mark = loader.mark_of(key_node)
        if not isinstance(key, str):
            raise YamlError(f"keys must be strings, not {key!r}", key_mark)
        if key in result:
            raise YamlError(f"duplicate key {key!r} (first at {result.key_marks[key]})", key_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = key_mark
        result.value_marks[key] = loader.mark_of(value_node)
    return result


def _construct_list(loader: _MarkingLoader, node: SequenceNode) -> MarkedList:
    result = MarkedList(loader.mark_of(node))
    for item_node in node.value:
        result.append(loader.construct_object(item_node, deep=True))
        result.item_marks.append(loader.mark_of(item_node))
    return result


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


def load_marked(path: Path, display: str) -> Any:
    """Read one YAML document from `path`; positions in errors and marks name it `display`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8: {exc.reason}", Mark(display, 1, 1)) from None
    except OSError as exc:
        raise YamlError(f"cannot read: {exc.strerror}", Mark(display, 1, 1)) from None
    loader = _MarkingLoader(text, display)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        mark = Mark(display, where.line + 1, where.column + 1) if where else Mark(display, 1, 1)
        raise YamlError(exc.problem or exc.context or "invalid YAML", mark) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", Mark(display, 1, 1)) from None
    finally:
        loader.dispose()
