"""Load YAML safely, keeping the line and column of every value.

Only PyYAML's safe loader is used. On top of it, a document is refused when it
is too large, nested too deeply, uses anchors and aliases (the root of "billion
laughs" expansion), or repeats a key in a mapping. Floats become `Decimal`, so
no float ever enters a flow; timestamps stay strings, as JSON would have them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from .errors import FlowError, Position

# libyaml's safe loader when PyYAML was built with it (about 30 times faster),
# else the pure-Python one; both construct only plain types.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 100_000
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "bool", "null", "float", "seq", "map", "timestamp")
}


@dataclass
class YamlDocument:
    """A loaded document: plain data plus the position of each JSON pointer."""

    data: Any
    file: str
    text: str = ""
    values: dict[str, Position] = field(default_factory=dict)
    keys: dict[str, Position] = field(default_factory=dict)

    def position(self, pointer: str, *, key: bool = False) -> Position:
        """The position of the value (or key) at `pointer`, else its nearest parent."""
        table = self.keys if key else self.values
        probe = pointer
        while True:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return Position(self.file, 1, 1)
            probe = probe.rsplit("/", 1)[0]


def pointer_join(pointer: str, part: str | int) -> str:
    """Append one reference token to a JSON pointer (RFC 6901 escaping)."""
    token = str(part).replace("~", "~0").replace("/", "~1")
    return f"{pointer}/{token}"


def load_yaml(text: str, file: str) -> YamlDocument:
    """Parse `text`; raise FlowError with a position for anything unsafe or invalid."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise FlowError(
            f"file is larger than {MAX_BYTES} bytes; split it into smaller flows",
            position=Position(file, 1, 1),
        )
    _check_depth(text, file)
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise FlowError(f"YAML syntax error: {exc}", position=Position(file)) from None
    finally:
        loader.dispose()
    document = YamlDocument(data=None, file=file, text=text)
    if node is None:
        return document
    builder = _Builder(loader, document)
    document.data = builder.build(node, "")
    return document


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> FlowError:
    mark = exc.problem_mark or exc.context_mark
    position = (
        Position(file, mark.line + 1, mark.column + 1) if mark else Position(file)
    )
    problem = exc.problem or exc.context or "invalid YAML"
    if "nesting depth" in problem:  # libyaml's own limit, met while reading ahead
        return FlowError(
            f"nesting is deeper than {MAX_DEPTH} levels", position=position
        )
    return FlowError(f"YAML syntax error: {problem}", position=position)


def _check_depth(text: str, file: str) -> None:
    """Refuse deep nesting from the event stream, before any recursion happens."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise FlowError(
                        f"nesting is deeper than {MAX_DEPTH} levels",
                        position=Position(file, mark.line + 1, mark.column + 1),
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise FlowError(
                    "YAML anchors and aliases are not supported; write the value out",
                    position=Position(file, mark.line + 1, mark.column + 1),
                )
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise FlowError(f"YAML syntax error: {exc}", position=Position(file)) from None


class _Builder:
    """Turns a composed node tree into plain data, recording positions."""

    def __init__(self, loader: Any, document: YamlDocument) -> None:
        self.loader = loader
        self.document = document
        self.count = 0

    def build(self, node: yaml.Node, pointer: str) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise FlowError(
                f"document has more than {MAX_NODES} values",
                position=self._position(node),
            )
        self.document.values[pointer] = self._position(node)
        if node.tag not in _PLAIN_TAGS:
            raise FlowError(
                f"the YAML tag {node.tag} is not supported; remove it",
                position=self._position(node),
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, pointer)
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, pointer_join(pointer, index))
                for index, item in enumerate(node.value)
            ]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, pointer: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise FlowError(
                    "YAML merge keys (<<) are not supported; write the keys out",
                    position=self._position(key_node),
                )
            if key_node.tag not in _PLAIN_TAGS:
                raise FlowError(
                    f"the YAML tag {key_node.tag} is not supported; remove it",
                    position=self._position(key_node),
                )
            key = (
                self._scalar(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                raise FlowError(
                    "mapping keys must be strings; quote this key",
                    position=self._position(key_node),
                )
            if key in result:
                raise FlowError(
                    f"key '{key}' appears twice in the same mapping; keep one",
                    position=self._position(key_node),
                )
            child = pointer_join(pointer, key)
            self.document.keys[child] = self._position(key_node)
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == "tag:yaml.org,2002:float":
            return _decimal(node.value)
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        if node.tag == "tag:yaml.org,2002:binary":
            raise FlowError(
                "binary values are not supported", position=self._position(node)
            )
        return self.loader.construct_object(node, deep=True)

    def _position(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self.document.file, mark.line + 1, mark.column + 1)


def _decimal(text: str) -> Decimal:
    cleaned = text.replace("_", "").lower()
    if cleaned in {".nan", ".inf", "+.inf", "-.inf"}:
        raise FlowError(f"'{text}' is not a finite number")
    return Decimal(cleaned)
