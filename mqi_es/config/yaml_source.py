"""A YAML configuration file kept together with where each key was written.

PyYAML composes the file into a node tree (every node has a start mark) and constructs
plain data from that same tree, so a problem found later in the data (a msgspec path such
as ``$.hosts[0].port``) can be reported at its line and column. Messages never quote a
source line: a misplaced secret must not end up in a log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from mqi_es.core.errors import ConfigError

KeyPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# Integers YAML 1.1 reads in base 8, 16, 2 or 60, and floats in base 60.
_NOT_DECIMAL = {
    "tag:yaml.org,2002:int": re.compile(r"[-+]?0[0-9bx_]|.*:"),
    "tag:yaml.org,2002:float": re.compile(r".*:"),
}
# What YAML 1.1 makes of an unquoted word that is not text.
_PLAIN_KINDS = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "an empty value (null)",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}


def format_path(path: KeyPath) -> str:
    """``("hosts", 0, "port")`` -> ``hosts[0].port``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


@dataclass(frozen=True, slots=True)
class Location:
    """1-based line and column in the file."""

    line: int
    column: int

    @classmethod
    def of(cls, node_or_mark: yaml.Node | yaml.Mark) -> Location:
        mark = node_or_mark.start_mark if isinstance(node_or_mark, yaml.Node) else node_or_mark
        return cls(mark.line + 1, mark.column + 1)


def _where(name: str, location: Location | None, path: KeyPath) -> str:
    """``file:line:column: key.path``, leaving out the parts not known."""
    head = f"{name}:{location.line}:{location.column}" if location else name
    return f"{head}: {format_path(path)}" if path else head


class YamlDocument:
    """One parsed configuration file: ``data`` for msgspec, nodes for locating keys."""

    def __init__(self, name: str, root: yaml.Node | None, data: object) -> None:
        self.name = name
        self.root = root
        self.data = data

    @classmethod
    def parse(cls, text: str, name: str) -> YamlDocument:
        """Parse ``text``, read from the file shown as ``name`` in messages.

        :raises ConfigError: YAML syntax error, several documents, a key given twice in
            one mapping, or a number not written in decimal.
        """
        try:
            loader = yaml.SafeLoader(text)
        except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
            raise _reader_error(name, text, exc) from None
        try:
            root = loader.get_single_node()
            if root is not None:
                _refuse_ambiguous(name, root)
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(name, text, exc) from None
        finally:
            loader.dispose()
        return cls(name, root, data)

    def error(self, path: KeyPath, message: str, *, at_key: bool = False) -> ConfigError:
        """A ConfigError for ``path``, placed at its key (``at_key``) or at its value."""
        return ConfigError(f"{self.where(path, at_key=at_key)}: {message}")

    def where(self, path: KeyPath, *, at_key: bool = False) -> str:
        """``file:line:column: key.path``: the deepest written part of ``path``."""
        return _where(self.name, self.locate(path, at_key=at_key), path)

    def locate(self, path: KeyPath, *, at_key: bool = False) -> Location | None:
        found = self._descend(path)
        if found is None:
            return None
        key, value, complete = found
        return Location.of(key if (at_key or not complete) and key is not None else value)

    def contains(self, path: KeyPath) -> bool:
        """Whether the file itself gives ``path`` (as opposed to a default)."""
        found = self._descend(path)
        return found is not None and found[2]

    def value_hint(self, path: KeyPath) -> str:
        """Why a plain scalar at ``path`` is not text, e.g. YAML 1.1 reading ``no`` as false."""
        found = self._descend(path)
        return _plain_hint(found[1]) if found and found[2] else ""

    def odd_key_error(self, path: KeyPath) -> ConfigError:
        """The error for a key of the mapping at ``path`` that YAML did not read as text."""
        found = self._descend(path)
        mapping = found[1] if found and found[2] else None
        keys = [key for key, _ in mapping.value] if isinstance(mapping, yaml.MappingNode) else []
        for key in keys:
            if key.tag not in (_STR_TAG, _MERGE_TAG):
                where = _where(self.name, Location.of(key), path)
                return ConfigError(f"{where}: {_plain_hint(key) or 'keys must be text'}")
        return self.error(path, "keys must be text")

    def written_keys(self) -> Iterator[tuple[KeyPath, str]]:
        """Every text key in the file, with its path (each aliased node visited once)."""
        if self.root is not None:
            for path, node in _walk(self.root, (), set()):
                for key, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                    if isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG:
                        yield (*path, key.value), key.value

    def _descend(self, path: KeyPath) -> tuple[yaml.Node | None, yaml.Node, bool] | None:
        """(key node, value node, whether the whole path was found) of the deepest match."""
        if self.root is None:
            return None
        key_node: yaml.Node | None = None
        node: yaml.Node = self.root
        for part in path:
            child = _child(node, part)
            if child is None:
                return key_node, node, False
            key_node, node = child
        return key_node, node, True


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(part, int):
        if isinstance(node, yaml.SequenceNode) and 0 <= part < len(node.value):
            return None, node.value[part]
        return None
    if isinstance(node, yaml.MappingNode):
        # After a merge (<<) the explicit key comes last and is the one that counts.
        for key, value in reversed(node.value):
            if key.tag == _STR_TAG and key.value == part:
                return key, value
    return None


def _walk(node: yaml.Node, path: KeyPath, seen: set[int]) -> Iterator[tuple[KeyPath, yaml.Node]]:
    """Every node with its key path; a node reached again through an alias is skipped."""
    if id(node) in seen:
        return
    seen.add(id(node))
    yield path, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            yield from _walk(value, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, (*path, index), seen)


def _refuse_ambiguous(name: str, root: yaml.Node) -> None:
    """Refuse what PyYAML would otherwise accept silently: a key given twice in one mapping
    (the last would win) and numbers YAML 1.1 reads in another base (022 is 18, 1:30 is 90).
    Plain keys YAML 1.1 would read as booleans (``on``, ``yes``) are taken as the names
    they are.
    """
    for path, node in _walk(root, (), set()):
        if node.tag in _NOT_DECIMAL and _NOT_DECIMAL[node.tag].match(node.value):
            raise ConfigError(
                f"{_where(name, Location.of(node), path)}: {node.value!r} is not a plain "
                "decimal number (YAML 1.1 reads it in base 8, 16, 2 or 60): write it in "
                "decimal, or in quotes if it is text"
            )
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            if key.tag == _BOOL_TAG and key.style is None:
                key.tag = _STR_TAG  # a key is a name: `on:` means "on", never true
            location = Location.of(key)
            if (earlier := first_line.get((key.tag, key.value))) is not None:
                where = _where(name, location, (*path, key.value))
                raise ConfigError(f"{where}: key given twice (first at line {earlier}); keep one")
            first_line[key.tag, key.value] = location.line


def _plain_hint(node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return ""
    kind = _PLAIN_KINDS.get(node.tag)
    if kind is None:
        return ""
    return f"YAML reads the unquoted {node.value!r} as {kind}; write it in quotes if it is text"


def _syntax_error(name: str, text: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    where = _where(name, Location.of(mark) if mark else None, _path_at_failure(text))
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context}, line {exc.context_mark.line + 1})" if exc.context_mark else ""
    return ConfigError(f"{where}: YAML syntax error: {problem}{context}")


def _reader_error(name: str, text: str, exc: yaml.YAMLError) -> ConfigError:
    position = getattr(exc, "position", None)
    if position is None:
        return ConfigError(f"{name}: cannot read the file as YAML: {type(exc).__name__}")
    line = text.count("\n", 0, position) + 1
    location = Location(line, position - text.rfind("\n", 0, position))
    return ConfigError(
        f"{_where(name, location, ())}: YAML syntax error: a control character "
        f"(code {ord(text[position]):#x}) is not allowed in YAML; remove it"
    )


@dataclass(slots=True)
class _Frame:
    """Parser position inside one mapping (current key) or sequence (current index)."""

    in_mapping: bool
    is_key: bool = False  # a collection used as a mapping key (rare, but legal YAML)
    key: str | int = -1
    awaiting_key: bool = True


def _path_at_failure(text: str) -> KeyPath:
    """The key path being read when the YAML parser stopped, found by replaying events."""
    frames: list[_Frame] = []
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            top = frames[-1] if frames else None
            if isinstance(event, yaml.CollectionEndEvent):
                if not frames.pop().is_key and frames:
                    frames[-1].awaiting_key = True
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            is_key = top is not None and top.in_mapping and top.awaiting_key
            if top is not None and is_key:
                top.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                top.awaiting_key = False
            elif top is not None and top.in_mapping:
                top.awaiting_key = True
            elif top is not None:
                top.key = int(top.key) + 1
            if isinstance(event, yaml.CollectionStartEvent):
                if top is not None and top.in_mapping:
                    top.awaiting_key = False
                mapping = isinstance(event, yaml.MappingStartEvent)
                frames.append(_Frame(in_mapping=mapping, is_key=is_key))
    except yaml.YAMLError:
        pass
    return tuple(
        frame.key
        for frame in frames
        if (frame.in_mapping and not frame.awaiting_key)
        or (not frame.in_mapping and int(frame.key) >= 0)
    )
