"""msgspec validation errors retold in the terms of the file, at the line concerned."""

from __future__ import annotations

import difflib
import re

import msgspec.inspect as mi

from mqi_es.config.schema import PATTERN_HELP, ConfigFile
from mqi_es.config.yaml_source import KeyPath, YamlDocument
from mqi_es.core.errors import ConfigError

_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]")
_TYPE_WORDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping (key: value)",
    "null": "nothing (null)",
    "path": "a path",
    "date": "a date",
    "datetime": "a date and time",
}
_PATTERN_WORDS = {repr(pattern): words for pattern, words in PATTERN_HELP.items()}
_FILE_SCHEMA = mi.type_info(ConfigFile)


def explain(doc: YamlDocument, error: str) -> ConfigError:
    """One message, at the right line, for the text of a msgspec ``ValidationError``.

    msgspec says e.g. ``Expected `int` <= 65535 - at `$.hosts[0].port```: the path is
    looked up in the file, and the wording is put in the file's terms (YAML, keys).
    """
    head, at, where = error.rpartition(" - at ")
    message, where = (head, where) if at else (error, "")
    path = _parse_path(where[where.find("$") :])
    if where.startswith("`key` in "):
        return doc.odd_key_error(path)
    if found := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        return doc.error((*path, found[1]), _unknown_key(path, found[1]), at_key=True)
    if found := re.fullmatch(r"Object missing required field `(.+)`", message):
        return doc.error(path, f"missing required key {found[1]!r}", at_key=True)
    if found := re.fullmatch(r"Invalid (?:enum )?value (.+)", message):
        return doc.error(path, f"{found[1]} is not one of: {', '.join(_allowed_values(path))}")
    if found := re.fullmatch(r"Expected `str` matching regex (.+)", message):
        wanted = _PATTERN_WORDS.get(found[1], f"text matching {found[1]}")
        return doc.error(path, f"expected {wanted}")
    text = re.sub(r"`([\w |]+)`", _type_words, message)
    text = text[:1].lower() + text[1:]
    if re.match(r"Expected `(str|path)( \| null)?`, got", message) and (
        hint := doc.value_hint(path)
    ):
        text += f": {hint}"
    return doc.error(path, text)


def _type_words(names: re.Match[str]) -> str:
    """``str | null`` -> ``text or nothing (null)``."""
    return " or ".join(_TYPE_WORDS.get(name, name) for name in names[1].split(" | "))


def _allowed_values(path: KeyPath) -> list[str]:
    schema = _schema_at(path)
    if isinstance(schema, mi.LiteralType):
        return sorted(map(str, schema.values))
    parent = _schema_at(path[:-1])
    if isinstance(parent, mi.StructType) and path and parent.tag_field == path[-1]:
        return [str(parent.tag)]
    return []


def _parse_path(text: str) -> KeyPath:
    """``$.hosts[0].port`` -> ``("hosts", 0, "port")`` (stops at a dict key ``[...]``)."""
    steps: list[str | int] = []
    for step in _STEP.finditer(text):
        steps.append(step[1] if step[1] is not None else int(step[2]))
    return tuple(steps)


def _unknown_key(path: KeyPath, key: str) -> str:
    if path == ("hpc",) and key == "groups":
        return "unknown key 'groups': the single-host hpc form takes its groups from pueue.groups"
    schema = _schema_at(path)
    names = [field.name for field in getattr(schema, "fields", ())]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(names)}"
    return f"unknown key {key!r} ({hint})"


def _schema_at(path: KeyPath) -> mi.Type | None:
    """The type the file schema expects at ``path`` (unions reduced to their main member)."""
    node: mi.Type | None = _unwrap(_FILE_SCHEMA)
    for step in path:
        if isinstance(step, int) and isinstance(node, mi.VarTupleType):
            node = _unwrap(node.item_type)
        elif isinstance(step, str) and isinstance(node, mi.StructType):
            node = next((_unwrap(f.type) for f in node.fields if f.name == step), None)
        else:
            return None
    return node


def _unwrap(node: mi.Type) -> mi.Type:
    while isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.UnionType):
        members = [t for t in node.types if not isinstance(t, mi.NoneType)]
        return _unwrap(members[0]) if len(members) == 1 else node
    return node
