"""The task a case runs on a node: the command template and the task's environment.

Both are trusted operator configuration (``remote_command``, ``task_env``) checked once,
when the configuration loads, and rendered per case attempt with every value quoted. Any
backend runs its tasks through them. Pure.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from mqi_es.core.errors import ConfigError
from mqi_es.core.shell import checked_env_name, quote, remote_path

# {group} is the older name of {slot}, kept so that configurations written for it still work.
_PLACEHOLDERS = ("case_dir", "case_id", "attempt", "slot", "group", "gpu_index", "label")


@dataclass(frozen=True, slots=True)
class RemoteCommandTemplate:
    """``hpc.remote_command``: the task command, with placeholders for case values.

    The text is trusted operator configuration; each substituted value is quoted, so
    placeholders must stand where a quoted word means what it says: not inside quotes,
    backticks, ``${...}``, ``$((...))``, comments or here-documents, and not after a
    backslash or ``$``. Write literal braces as ``{{`` and ``}}``.

    :raises ConfigError: empty or malformed text, an unknown placeholder, a format spec
        or conversion, or a placeholder where quoting cannot protect it.
    """

    text: str
    _pieces: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pieces", _template_pieces(self.text))

    def render(
        self, *, case_dir: str, case_id: str, attempt: int, slot: str, gpu_index: str, label: str
    ) -> str:
        """The task command for one case attempt (a ``sh -c`` script).

        :raises ValueError: a negative attempt, or a NUL character in a value.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ValueError("attempt must be a non-negative integer")
        values = {
            "case_dir": remote_path(case_dir),
            "case_id": quote(case_id),
            "attempt": quote(str(attempt)),
            "slot": quote(slot),
            "group": quote(slot),
            "gpu_index": quote(gpu_index),
            "label": quote(label),
        }
        return "".join(literal + (values[name] if name else "") for literal, name in self._pieces)


# Given to every task from the node's own environment (or by us: LANG): not the task's to
# change. A backend may reserve more (see its adapter).
RESERVED_TASK_ENV = frozenset(
    {"HOME", "PATH", "USER", "LOGNAME", "LANG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
     "XDG_DATA_HOME"}
)  # fmt: skip
_ENV_PLACEHOLDERS = ("case_id", "attempt", "slot", "group", "gpu_index", "label")


@dataclass(frozen=True, slots=True)
class TaskEnvironment:
    """A host's ``task_env`` (values may use ``{gpu_index}``, ``{slot}``, ``{case_id}``,
    ``{attempt}``, ``{label}``) and ``task_env_from_node`` (names copied from the node
    user's SSH environment). Each value is passed as one quoted word.

    :raises ConfigError: a name that is invalid or reserved, or a malformed value.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    from_node: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (*self.values, *self.from_node):
            checked_env_name(name)
            if name in RESERVED_TASK_ENV:
                raise ConfigError(
                    f"task environment: {name} is set for every task already (by the node or "
                    "by the queue) and cannot be changed here"
                )
        both = set(self.values) & set(self.from_node)
        if both:
            raise ConfigError(
                f"task environment: {', '.join(sorted(both))} given in both task_env and "
                "task_env_from_node"
            )
        for name, value in self.values.items():
            self._pieces(name, value)

    def render(
        self, *, case_id: str, attempt: int, slot: str, gpu_index: str, label: str
    ) -> dict[str, str]:
        """The explicit variables of one case attempt."""
        known = {
            "case_id": case_id, "attempt": str(attempt), "slot": slot, "group": slot,
            "gpu_index": gpu_index, "label": label,
        }  # fmt: skip
        return {
            name: "".join(literal + (known[slot] if slot else "") for literal, slot in
                          self._pieces(name, value))
            for name, value in self.values.items()
        }  # fmt: skip

    @staticmethod
    def _pieces(name: str, value: str) -> list[tuple[str, str | None]]:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ConfigError(
                f"task_env.{name} is malformed ({exc}); write literal braces as {{{{ and }}}}"
            ) from None
        pieces: list[tuple[str, str | None]] = []
        for literal, placeholder, spec, conversion in parsed:
            if placeholder is not None and placeholder not in _ENV_PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in _ENV_PLACEHOLDERS)
                raise ConfigError(
                    f"task_env.{name}: unknown placeholder {{{placeholder}}}; known: {known}"
                )
            if spec or conversion:
                raise ConfigError(f"task_env.{name}: placeholder {{{placeholder}}} takes no format")
            pieces.append((literal, placeholder))
        return pieces


def _template_pieces(text: str) -> tuple[tuple[str, str | None], ...]:
    if not text.strip():
        raise ConfigError("remote_command must not be empty")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(
            f"remote_command is malformed ({exc}); write literal braces as {{{{ and }}}}"
        ) from None
    pieces: list[tuple[str, str | None]] = []
    context = _ShellContext()
    for literal, name, spec, conversion in parsed:
        context.feed(literal)
        if name is not None:
            if name not in _PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in _PLACEHOLDERS)
                raise ConfigError(f"remote_command: unknown placeholder {{{name}}}; known: {known}")
            if spec or conversion:
                raise ConfigError(f"remote_command: placeholder {{{name}}} takes no format")
            if problem := context.unsafe_spot():
                raise ConfigError(
                    f"remote_command: placeholder {{{name}}} {problem}; values are quoted "
                    "for you, so write placeholders bare"
                )
            context.word()
        pieces.append((literal, name))
    if problem := context.unfinished():
        raise ConfigError(f"remote_command {problem}")
    return tuple(pieces)


# Contexts where a quoted value would not be one plain word; elsewhere ("top", "cmd" for
# $(...), "paren" for a subshell) it is.
_WHERE = {
    "sq": "is inside single quotes",
    "dq": "is inside double quotes",
    "bq": "is inside backticks",
    "ansi": "is inside $'...'",
    "param": "is inside ${...}",
    "arith": "is inside $((...))",
    "aparen": "is inside $((...))",
}
_WORD_BREAK = frozenset(" \t\n;&|()")


class _ShellContext:
    """Follows the POSIX shell's quoting state through the template's literal text.

    It tracks only what decides whether a quoted word stays one word. Constructs it does
    not follow (``case`` patterns, here-document bodies) make every later placeholder
    unsafe rather than guessed at.
    """

    def __init__(self) -> None:
        self.stack: list[str] = ["top"]
        self.escaped = False
        self.comment = False
        self.opaque: str | None = None
        self.prev = ""

    def unsafe_spot(self) -> str | None:
        if self.opaque:
            return f"follows {self.opaque}, which this check does not follow"
        if self.comment:
            return "is inside a comment"
        if self.escaped:
            return "follows a backslash"
        if self.prev == "$":
            return "follows '$'"
        return _WHERE.get(self.stack[-1])

    def word(self) -> None:
        """A placeholder's value was put here: a quoted word, which ends in a quote."""
        self.prev = "'"

    def unfinished(self) -> str | None:
        if self.escaped:
            return "ends with a backslash"
        if len(self.stack) > 1:
            return f"ends inside an unterminated quote, substitution or subshell ({self.stack[-1]})"
        return None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            i = self._step(text, i)
            self.prev = text[i - 1]

    def _step(self, text: str, i: int) -> int:
        """Consume the token at ``i``; return the index after it."""
        c, top = text[i], self.stack[-1]
        if self.comment:
            self.comment = c != "\n"
            return i + 1
        if self.escaped:
            self.escaped = False
            return i + 1
        if top == "sq":
            if c == "'":
                self.stack.pop()
            return i + 1
        if c == "\\":
            self.escaped = True
            return i + 1
        if top in ("ansi", "bq"):
            if c == ("'" if top == "ansi" else "`"):
                self.stack.pop()
            return i + 1
        if c == "$":
            return self._dollar(text, i)
        if top == "dq":
            if c == '"':
                self.stack.pop()
            elif c == "`":
                self.stack.append("bq")
            return i + 1
        if top in ("arith", "aparen"):
            return self._arith(text, i)
        if top == "param" and c == "}":
            self.stack.pop()
            return i + 1
        return self._code(text, i)

    def _dollar(self, text: str, i: int) -> int:
        top = self.stack[-1]
        if text.startswith("$((", i):
            self.stack.append("arith")
            return i + 3
        if text.startswith("$(", i):
            self.stack.append("cmd")
            return i + 2
        if text.startswith("${", i):
            self.stack.append("param")
            return i + 2
        if text.startswith("$'", i) and top != "dq":
            self.stack.append("ansi")
            return i + 2
        return i + 1

    def _arith(self, text: str, i: int) -> int:
        c = text[i]
        if c == "(":
            self.stack.append("aparen")
        elif c == ")" and self.stack[-1] == "aparen":
            self.stack.pop()
        elif text.startswith("))", i):
            self.stack.pop()
            return i + 2
        return i + 1

    def _code(self, text: str, i: int) -> int:
        """A character in code (or in ``${...}``, whose word quotes like code)."""
        c, top = text[i], self.stack[-1]
        at_word_start = self.prev == "" or self.prev in _WORD_BREAK
        if c == "'":
            self.stack.append("sq")
        elif c == '"':
            self.stack.append("dq")
        elif c == "`":
            self.stack.append("bq")
        elif top == "param":
            pass
        elif c == "(":
            self.stack.append("paren")
        elif c == ")" and top in ("cmd", "paren"):
            self.stack.pop()
        elif c == "#" and at_word_start:
            self.comment = True
        elif text.startswith("<<<", i):
            return i + 3
        elif text.startswith("<<", i):
            self.opaque = self.opaque or "a here-document (<<)"
            return i + 2
        elif at_word_start and text.startswith("case", i) and text[i + 4 : i + 5].isspace():
            self.opaque = self.opaque or "a case statement"
        return i + 1
