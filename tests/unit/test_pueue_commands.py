"""Building the command lines sent to a node, checked by running them for real.

A local ``sh -c`` (or ``bash -c``) stands in for the remote login shell. On its PATH, a
fake ``pueue`` records the argv and environment it receives and, for ``add``, runs the
task command through ``sh -c`` as pueue does; the task command calls ``record-argv``,
which records its own argv. Both levels must receive exactly the intended values.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_es.adapters.pueue.commands import (
    build_add,
    build_group_add,
    build_kill,
    build_log,
    build_observe,
    build_parallel,
    build_remove,
    build_start_group,
    build_status,
    build_version,
    gpu_index,
)
from mqi_es.core.errors import ConfigError
from mqi_es.core.ids import task_label
from mqi_es.core.shell import (
    remote_path,
    split_home,
)
from mqi_es.core.task_command import RemoteCommandTemplate, TaskEnvironment

SHELL_BOOKKEEPING = {"PWD", "OLDPWD", "SHLVL", "_"}  # set by the shells themselves
NASTY = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned #",
    "x\ntouch pwned",
    "' ; touch pwned ; '",
    "*",
    "~",
    "-rf",
    "\\",
    "$HOME",
    "${HOME}",
    "a\tb\rc",
    "{case_id}",
    "if",
    "A=b",
    "é 日本 🚑",
]


@dataclass(frozen=True)
class FakeNode:
    root: Path
    home: Path
    records: Path
    login_env: dict[str, str]

    def run(self, command: str, *, shell: str = "sh") -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` as the node's login shell would, after clearing old records."""
        for record in self.records.iterdir():
            record.unlink()
        return subprocess.run(
            [shell, "-c", command],
            env=self.login_env,
            cwd=self.root,
            capture_output=True,
            timeout=60,
            check=False,
        )

    def argv(self, who: str) -> list[str]:
        return (self.records / f"{who}.argv").read_bytes().decode().split("\0")[:-1]

    def env(self, who: str) -> dict[str, str]:
        entries = (self.records / f"{who}.env").read_bytes().decode().split("\0")[:-1]
        return dict(entry.split("=", 1) for entry in entries)


def write_script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> FakeNode:
    root = tmp_path_factory.mktemp("node")
    home, bin_dir, records = root / "home dir", root / "bin", root / "records"
    for directory in (home, bin_dir, records, home / "bin"):
        directory.mkdir()
    rec = shlex.quote(str(records))
    write_script(
        bin_dir / "pueue",
        f"""printf '%s\\0' "$@" > {rec}/pueue.argv
env -0 > {rec}/pueue.env
if [ "$1" = add ]; then
    for task_command; do :; done
    exec sh -c "$task_command"
fi
""",
    )
    write_script(
        bin_dir / "record-argv",
        f"printf '%s\\0' \"$@\" > {rec}/task.argv\nenv -0 > {rec}/task.env\n",
    )
    (home / "bin" / "pueue").symlink_to(bin_dir / "pueue")
    login_env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "USER": "clinic",
        "XDG_RUNTIME_DIR": str(root / "run"),
        "SSH_CONNECTION": "10.0.0.5 51234 10.0.0.9 22",
        "SSH_CLIENT": "10.0.0.5 51234 22",
        "SSH_AUTH_SOCK": "/tmp/ssh-XXXX/agent.1",
        "LC_ALL": "C",
        "PATIENT_NAME": "Doe^Jane",
    }
    return FakeNode(root, home, records, login_env)


def task_template() -> RemoteCommandTemplate:
    return RemoteCommandTemplate(
        "record-argv {case_dir} {case_id} {attempt} {group} {gpu_index} {label}"
        " --input={case_dir}/moqui_tps.in"
    )


def trailing_digits(group: str) -> str:
    stripped = group.rstrip("0123456789")
    return group[len(stripped) :]


def check_add_round_trip(
    node: FakeNode, *, case_dir: str, expanded_dir: str, case_id: str, attempt: int, group: str
) -> None:
    label = task_label(case_id, attempt)
    task_command = task_template().render(
        case_dir=case_dir,
        case_id=case_id,
        attempt=attempt,
        slot=group,
        gpu_index=gpu_index(group),
        label=label,
    )
    command = build_add(group=group, label=label, working_dir=case_dir, task_command=task_command)

    done = node.run(command)

    assert done.returncode == 0, done.stderr
    assert node.argv("pueue") == [
        "add",
        "--print-task-id",
        f"--group={group}",
        f"--label={label}",
        f"--working-directory={expanded_dir}",
        "--",
        task_command,
    ]
    assert node.argv("task") == [
        expanded_dir,
        case_id,
        str(attempt),
        group,
        trailing_digits(group),
        label,
        f"--input={expanded_dir}/moqui_tps.in",
    ]
    assert not (node.root / "pwned").exists()


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1)


@settings(max_examples=150)
@given(
    case_id=names,
    directory=names,
    attempt=st.integers(min_value=0, max_value=10**6),
    group=names.filter(lambda g: not g.startswith("-")),
    under_home=st.booleans(),
)
def test_any_case_name_reaches_pueue_and_the_task_as_exactly_one_argument(
    node: FakeNode, case_id: str, directory: str, attempt: int, group: str, under_home: bool
) -> None:
    if under_home:
        case_dir, expanded = f"~/cases/{directory}", f"{node.home}/cases/{directory}"
    else:
        case_dir = expanded = f"{node.root}/abs cases/{directory}"

    check_add_round_trip(
        node,
        case_dir=case_dir,
        expanded_dir=expanded,
        case_id=case_id,
        attempt=attempt,
        group=group,
    )


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("value", NASTY)
def test_nasty_values_survive_both_levels_under_dash_and_bash(
    node: FakeNode, shell: str, value: str
) -> None:
    label = task_label(value, 1)
    task_command = task_template().render(
        case_dir=f"~/{value}",
        case_id=value,
        attempt=1,
        slot=f"gpu{value}",
        gpu_index=gpu_index(f"gpu{value}"),
        label=label,
    )
    command = build_add(group="gpu1", label=label, working_dir="/srv", task_command=task_command)

    done = node.run(command, shell=shell)

    assert done.returncode == 0, done.stderr
    assert node.argv("pueue")[3:] == [
        "--label=" + label,
        "--working-directory=/srv",
        "--",
        task_command,
    ]
    assert node.argv("task")[:4] == [f"{node.home}/{value}", value, "1", f"gpu{value}"]
    assert not (node.root / "pwned").exists()


def test_ssh_session_variables_reach_neither_pueue_nor_the_task(node: FakeNode) -> None:
    check_add_round_trip(
        node,
        case_dir="~/c",
        expanded_dir=f"{node.home}/c",
        case_id="c",
        attempt=1,
        group="gpu0",
    )

    for who in ("pueue", "task"):
        env = node.env(who)
        assert set(env) - SHELL_BOOKKEEPING == {"HOME", "PATH", "USER", "XDG_RUNTIME_DIR", "LANG"}
        assert env["HOME"] == str(node.home)
        assert env["PATH"] == node.login_env["PATH"]
        assert env["XDG_RUNTIME_DIR"] == node.login_env["XDG_RUNTIME_DIR"]
        assert env["LANG"] == "C.UTF-8"


def test_extra_task_environment_is_set_exactly(node: FakeNode) -> None:
    extra = {"CUDA_CACHE_DISABLE": "1", "ODD": "a 'b' $c `d` \n e"}
    command = build_add(
        group="gpu0", label="l", working_dir="~", task_command="record-argv", env=extra
    )

    done = node.run(command)

    assert done.returncode == 0, done.stderr
    env = node.env("task")
    assert {name: env[name] for name in extra} == extra
    assert node.argv("pueue")[4] == f"--working-directory={node.home}"


def test_variables_copied_from_the_node_reach_the_task_only_when_set_there(
    node: FakeNode,
) -> None:
    command = build_add(
        group="gpu0", label="l", working_dir="~", task_command="record-argv",
        env_from_node=["XDG_RUNTIME_DIR", "NOT_SET_HERE"],
    )  # fmt: skip

    done = node.run(command)

    assert done.returncode == 0, done.stderr
    env = node.env("task")
    assert env["XDG_RUNTIME_DIR"] == node.login_env["XDG_RUNTIME_DIR"]
    assert "NOT_SET_HERE" not in env


def test_the_observe_query_prints_the_nodes_clock_then_pueues_version_then_its_status(
    node: FakeNode,
) -> None:
    done = node.run(build_observe())

    assert done.returncode == 0, done.stderr
    clock, *_ = done.stdout.decode().splitlines()
    assert clock.startswith("mqi-clock ") and float(clock.split()[1]) > 1.7e9
    assert node.argv("pueue") == ["status", "--json"]  # the last of the pueue commands


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (build_status(), ["status", "--json"]),  # never -g: pueue < 3.4 ignored it
        (build_kill(7), ["kill", "7"]),
        (build_remove(7), ["remove", "7"]),
        (build_start_group("gpu 1"), ["start", "--group=gpu 1"]),
        (build_log(3), ["log", "--json", "--lines=50", "3"]),
        (build_log(3, 0, lines=5), ["log", "--json", "--lines=5", "3", "0"]),
        (build_group_add("gpu2", 1), ["group", "add", "--parallel=1", "gpu2"]),
        (build_parallel("gpu2", 2), ["parallel", "--group=gpu2", "2"]),
        (build_status(pueue="~/bin/pueue"), ["status", "--json"]),
    ],
)
def test_every_pueue_command_passes_exactly_these_arguments(
    node: FakeNode, command: str, argv: list[str]
) -> None:
    done = node.run(command)

    assert done.returncode == 0, done.stderr
    assert node.argv("pueue") == argv
    # HostConnection.run adds the one remote `timeout`: the builders must not add another.
    assert command.startswith("env -i ")


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("base", "parts", "word"),
    [
        ("~", (), '"$HOME"'),
        ("~/", (), '"$HOME"'),
        ("~/mqi cases", ("case 1",), "\"$HOME\"/'mqi cases/case 1'"),
        ("~/mqi/", ("a", "b"), "\"$HOME\"/'mqi/a/b'"),
        ("~", ("x",), "\"$HOME\"/'x'"),
        ("relative", ("x",), "\"$HOME\"/'relative/x'"),
        ("/srv/mqi", ("it's",), "'/srv/mqi/it'\\''s'"),
        ("/", ("x",), "'/x'"),
        ("/", (), "'/'"),
    ],
)
def test_remote_paths_keep_home_expandable_and_quote_the_rest(
    base: str, parts: tuple[str, ...], word: str
) -> None:
    assert remote_path(base, *parts) == word


@pytest.mark.parametrize("value", NASTY)
def test_a_remote_path_expands_to_exactly_the_intended_path(node: FakeNode, value: str) -> None:
    done = node.run(f"record-argv {remote_path('~/base', value)} --dir={remote_path('~')}")

    assert done.returncode == 0, done.stderr
    assert node.argv("task") == [f"{node.home}/base/{value}", f"--dir={node.home}"]


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("~", (True, "")),
        ("~/", (True, "")),
        ("~/mqi cases/x", (True, "mqi cases/x")),
        ("~//x", (True, "x")),
        ("rel/x", (True, "rel/x")),
        ("/srv/x", (False, "/srv/x")),
    ],
)
def test_split_home_gives_the_plain_path_for_sftp(path: str, split: tuple[bool, str]) -> None:
    assert split_home(path) == split


@pytest.mark.parametrize("path", ["", "~bob/x", "~bob"])
def test_empty_and_other_users_home_paths_are_config_errors(path: str) -> None:
    with pytest.raises(ConfigError):
        remote_path(path)


def test_empty_path_parts_and_nul_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        remote_path("~/a", "")
    with pytest.raises(ValueError, match="NUL"):
        remote_path("~/a", "b\0c")


# -------------------------------------------------------------- template


@pytest.mark.parametrize(
    "template",
    [
        "record-argv {case_id}",
        "record-argv --id={case_id} {case_id}'-suffix' # a comment",
        'record-argv "$(printf %s {case_id})"',
        "X={case_id} sh -c 'record-argv \"$X\"'",
        "echo unused | record-argv {case_id}",
        "(cd / && record-argv {case_id})",
        "true $((1 + 2)) && record-argv {case_id}",
        "record-argv {{literal}} {case_id}",
    ],
)
def test_placeholders_in_plain_word_positions_receive_the_exact_value(
    node: FakeNode, template: str
) -> None:
    value = "a b'c\"$(touch pwned)`touch pwned`;*\\ é"
    rendered = RemoteCommandTemplate(template).render(
        case_dir="~", case_id=value, attempt=1, slot="gpu0", gpu_index="0", label="l"
    )

    done = node.run(rendered)

    assert done.returncode == 0, done.stderr
    received = node.argv("task")
    assert value in received or f"--id={value}" in received
    assert not (node.root / "pwned").exists()
    if "{{literal}}" in template:
        assert received == ["{literal}", value]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("run {case}", "unknown placeholder {case}"),
        ("run {}", "unknown placeholder {}"),
        ("run {0}", "unknown placeholder {0}"),
        ("run {case_dir.name}", "unknown placeholder"),
        ("run {case_dir[0]}", "unknown placeholder"),
        ("run {case_dir!r}", "takes no format"),
        ("run {case_dir:>9}", "takes no format"),
        ("run {case_dir", "malformed"),
        ("run }", "malformed"),
        ("run '{case_dir}'", "single quotes"),
        ('run "{case_dir}"', "double quotes"),
        ('run "$HOME/{case_dir}"', "double quotes"),
        ("run `echo {case_id}`", "backticks"),
        ("run $(({attempt} + 1))", "$((...))"),
        ("run ${{X:-{case_id}}}", "${...}"),
        ("run $'{case_id}'", "$'...'"),
        ("run ${case_id}", "follows '$'"),
        ("run \\{case_id}", "backslash"),
        ("run # {case_id}", "comment"),
        ("run #\n# it's {case_id}", "comment"),
        ("cat <<EOF\n{case_id}\nEOF", "here-document"),
        ("case x in x) run {case_id};; esac", "case statement"),
        ("run 'unterminated", "unterminated"),
        ("run $(echo", "unterminated"),
        ("run trailing\\", "backslash"),
    ],
)
def test_templates_where_quoting_cannot_protect_a_value_are_config_errors(
    template: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match="remote_command") as error:
        RemoteCommandTemplate(template)

    assert problem in str(error.value)


@pytest.mark.parametrize(
    "template", ["run <<< {case_id}", "run $(case_tool {case_id})", "x=$((1)) {case_id}"]
)
def test_here_strings_and_look_alike_words_are_accepted(template: str) -> None:
    assert RemoteCommandTemplate(template).text == template


def test_a_comment_after_a_value_does_not_hide_a_later_quote() -> None:
    # The value ends a word, so `#` after it does not start a comment: the `"` opens quotes.
    with pytest.raises(ConfigError, match="double quotes"):
        RemoteCommandTemplate('run {case_id}#" {label}"')


@pytest.mark.parametrize(
    ("group", "index"), [("gpu2", "2"), ("gpu12", "12"), ("gpu", ""), ("g1a", ""), ("7", "7")]
)
def test_gpu_index_is_the_trailing_digits_of_the_group(group: str, index: str) -> None:
    assert gpu_index(group) == index


def test_a_nul_character_in_a_case_value_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        task_template().render(
            case_dir="~/c", case_id="a\0b", attempt=1, slot="g", gpu_index="", label="l"
        )


# --------------------------------------------------------- argument checks


@pytest.mark.parametrize("build", [build_kill, build_remove])
@pytest.mark.parametrize("task_id", [-1, True, 1.0, "3"])
def test_kill_and_remove_need_a_task_id_because_without_one_pueue_kills_the_whole_group(
    build: object, task_id: object
) -> None:
    with pytest.raises(ValueError):
        build(task_id)  # type: ignore[operator]


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_log(1, lines=0),
        lambda: build_log(),
        lambda: build_group_add("gpu0", 0),
        lambda: build_parallel("gpu0", 0),
        lambda: build_add(group="g", label="", working_dir="~", task_command="x"),
        lambda: build_add(group="g", label="l", working_dir="~", task_command=""),
    ],
)
def test_out_of_range_numbers_and_empty_values_are_value_errors(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_start_group("-a"),
        lambda: build_parallel("", 1),
        lambda: build_status(pueue=""),
        lambda: build_add(
            group="g", label="l", working_dir="~", task_command="x", env={"A-B": "1"}
        ),
        lambda: build_add(group="g", label="l", working_dir="~bob", task_command="x"),
    ],
)
def test_bad_configured_values_are_config_errors(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_the_version_query_runs_pueue_in_the_minimal_environment():
    assert build_version().endswith(" 'pueue' --version")
    assert build_version().startswith("env -i ")


def test_the_slot_is_given_as_slot_and_as_group_its_first_name(node: FakeNode) -> None:
    rendered = RemoteCommandTemplate("record-argv {slot} {group} {gpu_index}").render(
        case_dir="~", case_id="c", attempt=1, slot="gpu3", gpu_index="3", label="l"
    )
    env = TaskEnvironment({"A": "{slot}", "B": "{group}"}).render(
        case_id="c", attempt=1, slot="gpu3", gpu_index="3", label="l"
    )

    assert node.run(rendered).returncode == 0
    assert node.argv("task") == ["gpu3", "gpu3", "3"]
    assert env == {"A": "gpu3", "B": "gpu3"}
