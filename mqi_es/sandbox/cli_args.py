"""Command-line parsing of the stand-in client, with clap's rules and messages.

Only the subcommands and options this project uses exist; anything else is rejected the way
clap rejects an unknown argument (message on stderr, exit status 2), never silently ignored.
Rules kept from clap: ``--long value``, ``--long=value``, ``-s value``, ``-svalue``,
clustered short flags (``-jp``), ``--`` ends the options, and for ``add`` everything from the
first word of the command on belongs to the command (``trailing_var_arg``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Parser = Callable[[str], Any]


class UsageError(Exception):
    """Raised when the command line is invalid; ``render()`` gives clap's message."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage

    def render(self) -> str:
        usage = f"Usage: {self.usage}\n\n" if self.usage else ""
        return f"error: {self}\n\n{usage}For more information, try '--help'.\n"


class HelpRequested(Exception):
    """Raised for ``-h``/``--help``; the argument is the text to print."""


class VersionRequested(Exception):
    """Raised for ``-V``/``--version``."""


def usize(text: str) -> int:
    """Rust's ``usize::from_str`` with its error messages."""
    if text == "":
        raise ValueError("cannot parse integer from empty string")
    digits = text.removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("invalid digit found in string")
    value = int(digits)
    if value >= 2**64:
        raise ValueError("number too large to fit in target type")
    return value


def color_choice(text: str) -> str:
    if text not in ("auto", "never", "always"):
        raise ValueError("possible values: auto, never, always")
    return text


@dataclass(frozen=True, slots=True)
class Flag:
    long: str
    short: str | None
    help: str

    @property
    def key(self) -> str:
        return self.long.replace("-", "_")

    @property
    def display(self) -> str:
        return f"--{self.long}"


@dataclass(frozen=True, slots=True)
class Option:
    long: str
    short: str | None
    value_name: str
    help: str
    parse: Parser = str

    @property
    def key(self) -> str:
        return self.long.replace("-", "_")

    @property
    def display(self) -> str:
        return f"--{self.long} <{self.value_name}>"


@dataclass(frozen=True, slots=True)
class Positional:
    name: str
    help: str
    parse: Parser = str
    many: bool = False
    required: bool = False

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def display(self) -> str:
        text = f"<{self.name}>" if self.required else f"[{self.name}]"
        return text + ("..." if self.many else "")


Argument = Flag | Option


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    about: str
    arguments: tuple[Argument, ...] = ()
    positionals: tuple[Positional, ...] = ()
    subcommands: tuple[Command, ...] = ()
    trailing: bool = False
    conflicts: tuple[tuple[str, str], ...] = ()

    def usage(self, path: tuple[str, ...]) -> str:
        words = [*path, "[OPTIONS]"]
        words += [positional.display for positional in self.positionals]
        if self.subcommands:
            words.append("[COMMAND]")
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class Parsed:
    """The chosen subcommand (``("group", "add")``) and the values of every level."""

    path: tuple[str, ...]
    values: dict[str, Any]


_GROUP = Option("group", "g", "GROUP", "Only this group")
_IDS = Positional("TASK_IDS", "Task ids", usize, many=True)

ADD = Command(
    "add",
    "Enqueue a task for execution.",
    (
        Option("working-directory", "w", "WORKING_DIRECTORY", "Working directory of the task"),
        Option("group", "g", "GROUP", "Assign the task to a group"),
        Option("label", "l", "LABEL", "Add some information for yourself"),
        Flag("print-task-id", "p", "Only print the task id"),
    ),
    (Positional("COMMAND", "The command to be added", many=True, required=True),),
    trailing=True,
)
STATUS = Command(
    "status",
    "Display the current status of all tasks.",
    (Flag("json", "j", "Print the current state as json"), _GROUP),
)
KILL = Command(
    "kill",
    "Kill specific running tasks or whole task groups.",
    (_GROUP, Flag("all", "a", "Kill all running tasks across all groups")),
    (_IDS,),
    conflicts=(("group", "all"),),
)
REMOVE = Command(
    "remove",
    "Remove tasks from the list. Running or paused tasks need to be killed first.",
    positionals=(
        Positional("TASK_IDS", "The task ids to be removed", usize, many=True, required=True),
    ),
)
START = Command(
    "start",
    "Resume operation of specific tasks or groups of tasks.",
    (_GROUP, Flag("all", "a", "Resume all groups")),
    (_IDS,),
    conflicts=(("group", "all"),),
)
GROUP_ADD = Command(
    "add",
    "Add a group.",
    (Option("parallel", "p", "PARALLEL", "Parallel tasks of the group", usize),),
    (Positional("NAME", "Name of the group", required=True),),
)
GROUP = Command(
    "group",
    "Use this to add groups. By default, this will simply display all known groups.",
    (Flag("json", "j", "Print the list of groups as json"),),
    subcommands=(GROUP_ADD,),
)
PARALLEL = Command(
    "parallel",
    "Set the amount of allowed parallel tasks.",
    (_GROUP,),
    (Positional("PARALLEL_TASKS", "The amount of allowed parallel tasks", usize),),
)
LOG = Command(
    "log",
    "Display the log output of finished tasks.",
    (
        Flag("json", "j", "Print the resulting tasks and output as json"),
        Option("lines", "l", "LINES", "Only print the last X lines of each task's output", usize),
        Flag("full", "f", "Show the whole output"),
    ),
    (_IDS,),
    conflicts=(("lines", "full"),),
)
CLEAN = Command(
    "clean",
    "Remove all finished tasks from the list.",
    (Flag("successful-only", "s", "Only clean tasks that finished successfully"), _GROUP),
)
RESET = Command(
    "reset",
    "Kill all tasks, clean up afterwards and reset everything.",
    (Flag("force", "f", "Don't ask for any confirmation"),),
)
PUEUE = Command(
    "pueue",
    "Interact with the Pueue daemon (MQI sandbox stand-in)",
    (
        Flag("verbose", "v", "Verbose mode"),
        Option("color", None, "COLOR", "Colorize the output", color_choice),
    ),
    subcommands=(ADD, STATUS, KILL, REMOVE, START, GROUP, PARALLEL, LOG, CLEAN, RESET),
)


def parse(argv: Sequence[str]) -> Parsed:
    """Parse ``pueue``'s arguments; no subcommand means ``status``, as in pueue.

    :raises UsageError: for anything clap would reject.
    :raises HelpRequested: for ``-h``/``--help``.
    :raises VersionRequested: for ``-V``/``--version``.
    """
    parsed = _parse(PUEUE, list(argv), ("pueue",))
    if parsed.path == ("pueue",):
        return Parsed(("status",), _defaults(STATUS) | parsed.values)
    return Parsed(parsed.path[1:], parsed.values)


def parse_request(argv: Sequence[str]) -> dict[str, Any]:
    """The daemon request for a command line: ``{"cmd": "group add", "name": ..., ...}``.

    For ``add`` the client still has to add what only it knows (environment, folder).
    """
    parsed = parse(argv)
    return {"cmd": " ".join(parsed.path), **parsed.values}


def _parse(command: Command, args: list[str], path: tuple[str, ...]) -> Parsed:
    values = _defaults(command)
    seen: set[str] = set()
    words: list[str] = []
    index = 0
    options_ended = False
    while index < len(args):
        arg = args[index]
        index += 1
        if options_ended or (command.trailing and words):
            words.append(arg)
        elif arg == "--":
            options_ended = True
        elif arg.startswith("--"):
            index = _long(command, path, arg, args, index, values, seen)
        elif arg.startswith("-") and arg != "-":
            index = _shorts(command, path, arg, args, index, values, seen)
        elif command.subcommands and not command.positionals:
            sub = next((c for c in command.subcommands if c.name == arg), None)
            if sub is None:
                raise UsageError(f"unrecognized subcommand '{arg}'", command.usage(path))
            inner = _parse(sub, args[index:], (*path, sub.name))
            return Parsed(inner.path, values | inner.values)
        else:
            words.append(arg)
    _assign_positionals(command, path, words, values)
    for first, second in command.conflicts:
        if first in seen and second in seen:
            raise UsageError(
                f"the argument '{_find(command, first).display}' cannot be used with "
                f"'{_find(command, second).display}'",
                command.usage(path),
            )
    return Parsed(path, values)


def _long(
    command: Command,
    path: tuple[str, ...],
    token: str,
    tokens: list[str],
    index: int,
    values: dict[str, Any],
    seen: set[str],
) -> int:
    name, has_inline, inline = token[2:].partition("=")
    argument = next((a for a in command.arguments if a.long == name), None)
    if argument is None:
        _special(command, path, name)
        raise UsageError(f"unexpected argument '{token}' found", command.usage(path))
    if isinstance(argument, Flag):
        if has_inline:
            raise UsageError(
                f"unexpected value '{inline}' for '{argument.display}' found; "
                "no more were expected",
                command.usage(path),
            )
        values[argument.key] = True
    else:
        if not has_inline:
            if index >= len(tokens):
                raise _missing_value(argument)
            inline = tokens[index]
            index += 1
        values[argument.key] = _convert(argument, inline)
    seen.add(argument.key)
    return index


def _shorts(
    command: Command,
    path: tuple[str, ...],
    token: str,
    tokens: list[str],
    index: int,
    values: dict[str, Any],
    seen: set[str],
) -> int:
    position = 1
    while position < len(token):
        letter = token[position]
        argument = next((a for a in command.arguments if a.short == letter), None)
        if argument is None:
            _special(command, path, {"h": "help", "V": "version"}.get(letter, ""))
            raise UsageError(f"unexpected argument '-{letter}' found", command.usage(path))
        seen.add(argument.key)
        if isinstance(argument, Flag):
            values[argument.key] = True
            position += 1
            continue
        value = token[position + 1 :].removeprefix("=")
        if not value:
            if index >= len(tokens):
                raise _missing_value(argument)
            value = tokens[index]
            index += 1
        values[argument.key] = _convert(argument, value)
        break
    return index


def _special(command: Command, path: tuple[str, ...], name: str) -> None:
    if name == "help":
        raise HelpRequested(_help(command, path))
    if name == "version" and command is PUEUE:
        raise VersionRequested


def _assign_positionals(
    command: Command, path: tuple[str, ...], words: list[str], values: dict[str, Any]
) -> None:
    remaining = list(words)
    for positional in command.positionals:
        taken = remaining if positional.many else remaining[:1]
        remaining = [] if positional.many else remaining[1:]
        if positional.required and not taken:
            raise UsageError(
                f"the following required arguments were not provided:\n  {positional.display}",
                command.usage(path),
            )
        converted = [_convert(positional, word) for word in taken]
        if positional.many:
            values[positional.key] = converted
        elif converted:
            values[positional.key] = converted[0]
    if remaining:
        raise UsageError(f"unexpected argument '{remaining[0]}' found", command.usage(path))


def _convert(argument: Option | Positional, text: str) -> Any:
    try:
        return argument.parse(text)
    except ValueError as error:
        raise UsageError(f"invalid value '{text}' for '{argument.display}': {error}") from None


def _missing_value(option: Option) -> UsageError:
    return UsageError(f"a value is required for '{option.display}' but none was supplied")


def _defaults(command: Command) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for argument in command.arguments:
        values[argument.key] = False if isinstance(argument, Flag) else None
    for positional in command.positionals:
        values[positional.key] = [] if positional.many else None
    return values


def _find(command: Command, key: str) -> Argument:
    return next(a for a in command.arguments if a.key == key)


def _help(command: Command, path: tuple[str, ...]) -> str:
    lines = [command.about, "", f"Usage: {command.usage(path)}"]
    if command.subcommands:
        lines += ["", "Commands:"]
        lines += [f"  {sub.name:<12}{sub.about}" for sub in command.subcommands]
    if command.positionals:
        lines += ["", "Arguments:"]
        lines += [f"  {p.display:<28}{p.help}" for p in command.positionals]
    lines += ["", "Options:"]
    for argument in command.arguments:
        short = f"-{argument.short}, " if argument.short else "    "
        lines.append(f"  {short + argument.display:<28}{argument.help}")
    lines.append(f"  {'-h, --help':<28}Print help")
    return "\n".join(lines) + "\n"
