"""PueueHost against real SSH: the sandbox node's asyncssh server and OpenSSH's sshd, each in
front of the pueue stand-in. Real files, processes and sockets on 127.0.0.1; every wait is a
bounded loop with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqi_es.adapters.pueue.commands import (
    DAEMON_DOWN_REASON,
    build_group_add,
    build_parallel,
)
from mqi_es.adapters.pueue.host import PueueHost
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.adapters.ssh.transfer import MANIFEST
from mqi_es.config.schema import HostConfig
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown
from mqi_es.core.reactions import Fetched, NothingToFetch, Unsendable, Unwritable, Uploaded
from mqi_es.core.remote import Blindness, LogTails, RemoteTask, Seen, StatusSnapshot, Unseen
from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import NodeFactory
from tests.fixtures.sshd import Sshd

T = TypeVar("T")

AWKWARD = "Doe^Jane 'O\"Brien' $(touch pwned) `touch pwned`; é 日本"
RESULT_GLOBS = ("out/*.dcm",)
WAIT_SECONDS = 20.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Node:
    """A GPU node under test: where SSH answers, and the stand-in pueue behind it."""

    ssh: Sshd | ThreadedSandboxNode  # host, port, user, key_file, known_hosts
    pueue: ThreadedSandboxNode  # daemon and fault controls
    home: Path  # the remote ~, for commands and SFTP alike


@pytest.fixture
def sandbox(sandbox_node_factory: NodeFactory) -> Node:
    node = sandbox_node_factory()
    return Node(node, node, node.home)


@pytest.fixture
def openssh(sshd_factory: Callable[..., Sshd], tmp_path: Path) -> Iterator[Node]:
    """OpenSSH in front of the stand-in. The stand-in's daemon lives under sshd's home, so
    ``~`` is one folder for commands, SFTP and pueue; its client is first on the PATH."""
    on_path = tmp_path / "remote-bin"
    server = sshd_factory(extra_path=[on_path])
    standin = ThreadedSandboxNode(server.root).start()
    try:
        on_path.symlink_to(standin.bin_dir)
        yield Node(server, standin, server.home)
    finally:
        standin.stop()


@pytest.fixture(params=["sandbox", "openssh"])
def node(request: pytest.FixtureRequest) -> Node:
    """Each test of the queue runs against both SSH servers."""
    found: Node = request.getfixturevalue(request.param)
    return found


def config(ssh: Sshd | ThreadedSandboxNode, remote_command: str, **settings: Any) -> HostConfig:
    values: dict[str, Any] = {
        "name": "node1",
        "host": ssh.host,
        "port": ssh.port,
        "user": ssh.user,
        "key_file": ssh.key_file,
        "known_hosts": ssh.known_hosts,
        "remote_command": remote_command,
        "groups": ("gpu0", "gpu1"),
        "connect_timeout_seconds": 5.0,
        "command_timeout_seconds": 10.0,
        **settings,
    }
    return HostConfig(**values)


def pueue_host(
    ssh: Sshd | ThreadedSandboxNode,
    remote_command: str = "sleep 60",
    *,
    monotonic: Callable[[], float] = time.monotonic,
    **settings: Any,
) -> PueueHost:
    host = config(ssh, remote_command, **settings)
    # No user ssh config: the developer's ~/.ssh/config must not change what is tested.
    target = dataclasses.replace(ssh_target(host), ssh_config=())
    connection = HostConnection(target)
    return PueueHost(host, connection, results_globs=RESULT_GLOBS, monotonic=monotonic)


def run(host: PueueHost, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``scenario`` on a fresh event loop, closing the host's connection afterwards."""

    async def closing() -> T:
        try:
            return await scenario()
        finally:
            await host.close()

    return asyncio.run(closing())


async def observe_until(
    host: PueueHost, probe: Callable[[StatusSnapshot], T | None], what: str
) -> T:
    """Observe until ``probe`` finds something in a snapshot; fail after WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    last: object = None
    while loop.time() < deadline:
        last = await host.observe()
        if isinstance(last, Seen) and (found := probe(last.snapshot)):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not observed within {WAIT_SECONDS} s; last: {last}")


def in_state(task_id: int, state: str) -> Callable[[StatusSnapshot], RemoteTask | None]:
    def probe(snapshot: StatusSnapshot) -> RemoteTask | None:
        task = snapshot.tasks.get(task_id)
        return task if task is not None and task.state == state else None

    return probe


async def added(host: PueueHost, case_id: str, *, slot: str = "gpu0") -> int:
    outcome = await host.submit(
        slot=slot, label=task_label(case_id, 1), remote_dir="~", case_id=case_id, attempt=1
    )
    assert isinstance(outcome, Ok), outcome
    return int(outcome.stdout)


def write_case(folder: Path) -> bytes:
    """A case folder with nested files and awkward names; returns the plan's bytes."""
    plan = os.urandom(300_000)
    (folder / "plan" / "beam '1'").mkdir(parents=True)
    (folder / "plan" / "RP 1.dcm").write_bytes(plan)
    (folder / "plan" / "beam '1'" / "layer $(x).ptn").write_bytes(b"\x00" * 1000)
    (folder / "moqui_tps.in").write_text("GPUID 0\nSimulationType perBeam\n")
    return plan


# --------------------------------------------------------------------------- the queue


def test_a_case_with_an_awkward_name_is_uploaded_run_and_its_result_fetched(
    node: Node, tmp_path: Path
) -> None:
    case = tmp_path / "incoming" / AWKWARD
    plan = write_case(case)
    remote_dir = f"~/mqi cases/{AWKWARD}/attempt-1"
    label = task_label(AWKWARD, 1)
    results = tmp_path / "results" / AWKWARD / "attempt-1"
    # The result: the plan followed by the case id, written where the task was started.
    host = pueue_host(
        node.ssh,
        "cd {case_dir} && mkdir -p out && cat 'plan/RP 1.dcm' > out/dose.dcm"
        " && printf %s {case_id} >> out/dose.dcm",
    )

    async def scenario() -> tuple[object, object, RemoteTask, list[RemoteTask], object]:
        uploaded = await host.upload(case, remote_dir)
        outcome = await host.submit(
            slot="gpu1", label=label, remote_dir=remote_dir, case_id=AWKWARD, attempt=1
        )
        assert isinstance(outcome, Ok), outcome
        task = await observe_until(host, in_state(int(outcome.stdout), "ended"), "the task done")
        seen = await host.observe()
        assert isinstance(seen, Seen)
        fetched = await host.fetch(remote_dir, results)
        return uploaded, outcome, task, seen.snapshot.tasks_with_label(label), fetched

    uploaded, outcome, task, labelled, fetched = run(host, scenario)

    plan_bytes = len(plan) + 1000 + len((case / "moqui_tps.in").read_bytes())
    assert isinstance(uploaded, Uploaded) and (uploaded.files, uploaded.bytes) == (3, plan_bytes)
    assert (task.result, task.slot, task.label) == ("succeeded", "gpu1", label)
    assert labelled == [task] and outcome == Ok(str(task.id))
    assert task.created_at is not None and task.created_at.utcoffset() is not None
    expected = plan + AWKWARD.encode()
    assert isinstance(fetched, Fetched)
    assert (fetched.files, fetched.bytes, fetched.results_dir) == (1, len(expected), str(results))
    digest = hashlib.sha256(expected).hexdigest()
    assert fetched.digests == (("out/dose.dcm", len(expected), digest),)
    assert fetched.manifest_sha256 == hashlib.sha256((results / MANIFEST).read_bytes()).hexdigest()
    assert uploaded.digests == tuple(
        sorted((str(p.relative_to(case)), p.stat().st_size,
                hashlib.sha256(p.read_bytes()).hexdigest()) for p in case.rglob("*") if p.is_file())
    )  # fmt: skip
    assert (results / "out" / "dose.dcm").read_bytes() == expected
    assert sorted(p.name for p in results.iterdir()) == [MANIFEST, "out"]
    assert not list(node.home.rglob("pwned")) and not list(tmp_path.rglob("pwned"))


def test_a_task_that_exits_2_is_seen_failed_and_its_log_tail_is_readable(node: Node) -> None:
    host = pueue_host(node.ssh, "echo simulation of {case_id} broke; exit 2")

    async def scenario() -> tuple[RemoteTask, object]:
        task_id = await added(host, "case-7")
        task = await observe_until(host, in_state(task_id, "ended"), "the task done")
        gone = dataclasses.replace(task, id=task_id + 1)
        not_ours = dataclasses.replace(task, label="someone-else")
        return task, [await host.log_tails(asked, lines=50) for asked in
                      ([task, gone], [not_ours])]  # fmt: skip

    task, (tails, of_another_label) = run(host, scenario)

    assert (task.result, task.exit_code) == ("failed", 2)
    assert tails == LogTails({task.id: "simulation of case-7 broke"})  # none of a gone task
    assert of_another_label == LogTails({})  # the id now names a task that is not ours


def test_the_tails_of_running_tasks_come_in_one_command_as_they_grow(node: Node) -> None:
    """What progress reading needs: a running task's output so far, all tasks at once."""
    host = pueue_host(node.ssh, "echo 'Generating particles for (3 of 10 batches)'; sleep 30")

    async def scenario() -> tuple[list[RemoteTask], object]:
        ids = [await added(host, f"case-{n}", slot=f"gpu{n}") for n in (0, 1)]
        running = [
            await observe_until(host, in_state(i, "running"), f"task {i} running") for i in ids
        ]
        await asyncio.sleep(0.5)  # the echo has landed in the log
        sent, send = [], host.connection.run

        async def counted(command: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(command)
            return await send(command, *args, **kwargs)

        host.connection.run = counted  # type: ignore[method-assign]
        tails = await host.log_tails(running, lines=5)
        assert len(sent) == 1, sent
        return running, tails

    running, tails = run(host, scenario)

    assert isinstance(tails, LogTails)
    assert tails.by_task == {t.id: "Generating particles for (3 of 10 batches)" for t in running}


def test_the_simulation_sees_its_task_env_and_what_it_copies_from_the_node(
    sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    """Real OpenSSH whose login shell sets LD_LIBRARY_PATH (as a module load would), and
    the stand-in running the task with the environment of its `pueue add`, as pueue does."""
    on_path = tmp_path / "remote-bin"
    server = sshd_factory(
        extra_path=[on_path], bashrc="export LD_LIBRARY_PATH=/opt/moqui/lib:/usr/local/cuda/lib64\n"
    )
    standin = ThreadedSandboxNode(server.root, groups=("gpu0", "gpu3")).start()
    try:
        on_path.symlink_to(standin.bin_dir)
        host = pueue_host(
            server, "env > task-env.txt", groups=("gpu0", "gpu3"),
            task_env={"CUDA_HOME": "/usr/local/cuda-12", "CUDA_VISIBLE_DEVICES": "{gpu_index}",
                      "MQI_CASE": "{case_id} #{attempt}"},
            task_env_from_node=["LD_LIBRARY_PATH", "NOT_SET_ON_THE_NODE"],
        )  # fmt: skip

        async def scenario() -> RemoteTask:
            task_id = await added(host, "case 1", slot="gpu3")
            return await observe_until(host, in_state(task_id, "ended"), "the task's end")

        done = run(host, scenario)
    finally:
        standin.stop()
    assert done.result == "succeeded"
    lines = (server.home / "task-env.txt").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in lines if "=" in line)
    assert seen["CUDA_HOME"] == "/usr/local/cuda-12"
    assert seen["CUDA_VISIBLE_DEVICES"] == "3"  # the GPU of the slot: group gpu3
    assert seen["MQI_CASE"] == "case 1 #1"
    assert seen["LD_LIBRARY_PATH"] == "/opt/moqui/lib:/usr/local/cuda/lib64"
    assert "NOT_SET_ON_THE_NODE" not in seen  # absent on the node: absent in the task
    assert seen["PUEUE_GROUP"] == "gpu3"


def test_a_killed_running_task_is_observed_killed(node: Node) -> None:
    host = pueue_host(node.ssh)

    async def scenario() -> tuple[object, RemoteTask]:
        task_id = await added(host, "case-k")
        running = await observe_until(host, in_state(task_id, "running"), "the task running")
        killed = await host.cancel(running)
        return killed, await observe_until(host, in_state(task_id, "ended"), "the task done")

    killed, task = run(host, scenario)

    assert isinstance(killed, Ok)
    assert task.result == "killed"


def test_a_cancelled_waiting_task_is_removed_and_one_that_started_since_is_not(
    node: Node,
) -> None:
    """A cancel removes a task seen waiting; pueue refuses to remove one that has started
    meanwhile (a later snapshot shows it running, and the next cancel kills it)."""
    host = pueue_host(node.ssh)

    async def scenario() -> tuple[object, object, StatusSnapshot, int]:
        first = await added(host, "case-r")
        second = await added(host, "case-w")  # gpu0 runs one task at a time
        running = await observe_until(host, in_state(first, "running"), "the first running")
        waiting = await observe_until(host, in_state(second, "waiting"), "the second waiting")
        stale = dataclasses.replace(running, state="waiting")  # as seen before it started
        refused = await host.cancel(stale)
        removed = await host.cancel(waiting)
        seen = await host.observe()
        assert isinstance(seen, Seen)
        return refused, removed, seen.snapshot, first

    refused, removed, snapshot, running = run(host, scenario)

    assert isinstance(removed, Ok)
    assert isinstance(refused, RemoteFailure)
    assert f"The command failed for tasks: {running}" in refused.stderr
    assert list(snapshot.tasks) == [running] and snapshot.tasks[running].state == "running"


def test_a_group_paused_by_a_pueue_restart_runs_again_once_resumed(node: Node) -> None:
    host = pueue_host(node.ssh)

    async def scenario() -> tuple[StatusSnapshot, object, RemoteTask]:
        first = await added(host, "case-1")
        second = await added(host, "case-2")
        await observe_until(host, in_state(first, "running"), "the first task running")
        await asyncio.to_thread(node.pueue.restart_pueue_daemon)
        seen = await host.observe()
        assert isinstance(seen, Seen)
        resumed = await host.release("gpu0")
        task = await observe_until(host, in_state(second, "running"), "the second task running")
        return seen.snapshot, resumed, task

    after_restart, resumed, task = run(host, scenario)

    assert not after_restart.slots["gpu0"].open  # pueue paused the group
    assert [(t.state, t.result) for t in after_restart.tasks_in_slot("gpu0")] == [
        ("ended", "killed"),
        ("held", None),
    ]
    assert isinstance(resumed, Ok)
    assert task.label == task_label("case-2", 1)


def test_every_poll_carries_the_groups_so_a_missing_one_shows_until_it_is_created(
    node: Node,
) -> None:
    """pueue 3.1 to 3.3 have no `pueue group --json`: the group map of `status --json` is
    the one source, read by every poll (no extra query)."""
    host = pueue_host(node.ssh)

    async def scenario() -> tuple[StatusSnapshot, StatusSnapshot, int]:
        before = await host.observe()
        for command in (build_group_add("gpu7", 1), build_parallel("gpu7", 2)):
            assert isinstance(await host.connection.run(command), Ok)
        after = await host.observe()
        assert isinstance(before, Seen) and isinstance(after, Seen)
        assert host.last_state is not None
        return before.snapshot, after.snapshot, host.last_state.groups["gpu7"].parallel_tasks

    before, after, parallel = run(host, scenario)

    assert "gpu7" not in before.slots and "gpu0" in before.slots
    assert after.slots["gpu7"].open and parallel == 2


def test_a_poll_reads_the_nodes_clock_in_the_same_round_trip(node: Node) -> None:
    host = pueue_host(node.ssh)
    before = datetime.now(UTC)
    seen = run(host, host.observe)
    after = datetime.now(UTC)

    assert isinstance(seen, Seen) and seen.node_time is not None and seen.skew is not None
    assert before - timedelta(seconds=1) <= seen.node_time <= after + timedelta(seconds=1)
    assert abs(seen.skew) < 1.0  # one machine: the same clock, within the round trip
    assert 0 < seen.rtt < WAIT_SECONDS


def test_a_pueue_older_than_3_is_incompatible_and_is_given_no_task(sandbox: Node) -> None:
    """A node whose pueue cannot tell its tasks apart (no creation times before 3.0)."""
    old = sandbox.home / "old-pueue"
    old.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "pueue 2.1.0"; exit 0; fi\nexec pueue "$@"\n'
    )
    old.chmod(0o755)
    host = pueue_host(sandbox.ssh, pueue="~/old-pueue")

    async def scenario() -> tuple[object, object, StatusSnapshot]:
        observed = await host.observe()
        added = await host.submit(slot="gpu0", label="l", remote_dir="~", case_id="c", attempt=1)
        plain = await pueue_host(sandbox.ssh).observe()
        assert isinstance(plain, Seen)
        return observed, added, plain.snapshot

    observed, added, snapshot = run(host, scenario)

    assert isinstance(observed, Unseen) and observed.kind is Blindness.INCOMPATIBLE
    assert "pueue 2.1.0 is older than 3.0" in observed.reason
    assert isinstance(added, Unknown) and "cannot be used" in added.reason
    assert snapshot.tasks == {}  # nothing was sent


def test_every_task_added_before_taken_at_is_in_the_snapshot(sandbox: Node) -> None:
    readings: list[float] = []

    def monotonic() -> float:
        # A task lands on the node just as the clock is read (first for taken_at).
        if not readings:
            added = sandbox.pueue.pueue("add", "--label", "at the reading", "--", "true")
            assert added.returncode == 0
        readings.append(time.monotonic())
        return readings[-1]

    host = pueue_host(sandbox.ssh, monotonic=monotonic)

    seen = run(host, host.observe)

    assert isinstance(seen, Seen) and readings[0] == seen.taken_at
    assert [task.id for task in seen.snapshot.tasks_with_label("at the reading")] == [0]


def test_a_case_that_must_not_go_is_refused_and_a_node_refusing_it_is_a_remote_failure(
    sandbox: Node, tmp_path: Path
) -> None:
    linked = tmp_path / "linked case"
    linked.mkdir()
    (tmp_path / "elsewhere.dcm").write_bytes(b"another patient")
    (linked / "CT.dcm").symlink_to(tmp_path / "elsewhere.dcm")
    plain = tmp_path / "plain case"
    write_case(plain)
    (sandbox.home / "blocked").write_text("a file where the case folder's parent should be")
    host = pueue_host(sandbox.ssh)

    async def scenario() -> list[object]:
        return [
            await host.upload(linked, "~/cases/linked"),
            await host.upload(tmp_path / "vanished case", "~/cases/vanished"),
            await host.upload(plain, "~/blocked/plain"),
        ]

    linked_out, vanished, blocked = run(host, scenario)

    assert linked_out == Unsendable("CT.dcm is a symbolic link to outside the case")
    assert vanished == Unsendable("the case folder cannot be read: No such file or directory")
    assert isinstance(blocked, RemoteFailure) and blocked.exit_status == 1
    assert blocked.stderr.startswith("node1: upload: ")


def test_results_missing_on_the_node_are_nothing_to_fetch(sandbox: Node, tmp_path: Path) -> None:
    (sandbox.home / "case" / "out").mkdir(parents=True)
    (sandbox.home / "case" / "out" / "dose.txt").write_text("not a result")
    host = pueue_host(sandbox.ssh)

    fetched = run(host, lambda: host.fetch("~/case", tmp_path / "results"))

    assert fetched == NothingToFetch(RESULT_GLOBS)
    assert not (tmp_path / "results").exists()


def test_results_that_cannot_be_written_here_are_fetched_again_later(
    sandbox: Node, tmp_path: Path
) -> None:
    (sandbox.home / "case" / "out").mkdir(parents=True)
    (sandbox.home / "case" / "out" / "dose.dcm").write_text("dose")
    (tmp_path / "results").write_text("a file where the results folder should be")
    host = pueue_host(sandbox.ssh)

    fetched = run(host, lambda: host.fetch("~/case", tmp_path / "results" / "case-1"))

    assert isinstance(fetched, Unwritable)  # not a failure of the case: the node has them
    assert fetched.reason.startswith("results cannot be written here: node1: download: local")


def test_from_config_reaches_the_node_with_the_configured_settings(tmp_path: Path) -> None:
    host = HostConfig(
        name="gpu-a",
        host="10.0.0.9",
        port=2222,
        user="clinic",
        key_file=tmp_path / "id",
        known_hosts=tmp_path / "known",
        trust_on_first_use=True,
        remote_command="run {case_dir}",
        groups=("gpu0",),
        connect_timeout_seconds=3.0,
        command_timeout_seconds=7.0,
        keepalive_interval_seconds=2.0,
        reconnect_backoff_cap_seconds=90.0,
    )

    remote = PueueHost.from_config(host, results_globs=RESULT_GLOBS)

    target = remote.connection.target
    assert remote.name == target.name == "gpu-a"
    assert (target.host, target.port, target.user) == ("10.0.0.9", 2222, "clinic")
    assert (target.key_file, target.known_hosts) == (tmp_path / "id", tmp_path / "known")
    assert target.trust_on_first_use
    assert (target.connect_timeout, target.login_timeout, target.command_timeout) == (3, 3, 7)
    assert (target.keepalive_interval, target.backoff_cap) == (2.0, 90.0)


# --------------------------------------------------------------------------- faults


def test_a_stopped_sshd_is_unseen_at_once_and_nothing_is_a_failure(private_sshd: Sshd) -> None:
    private_sshd.stop()
    host = pueue_host(private_sshd)

    async def scenario() -> list[object]:
        return [
            await host.observe(),
            await host.submit(slot="gpu0", label="l", remote_dir="~", case_id="c", attempt=1),
        ]

    observed, add = run(host, scenario)

    assert observed == Unseen("node1 unreachable: connection refused", Blindness.UNREACHABLE)
    assert isinstance(add, Unknown)


def test_a_frozen_sshd_is_unseen_after_the_connect_timeout(private_sshd: Sshd) -> None:
    private_sshd.freeze()
    host = pueue_host(private_sshd, connect_timeout_seconds=0.5)

    assert run(host, host.observe) == Unseen("node1 unreachable: timed out")


def test_a_node_freezing_under_the_open_connection_is_unseen(openssh: Node) -> None:
    host = pueue_host(openssh.ssh, keepalive_interval_seconds=0.3, command_timeout_seconds=1.0)

    async def scenario() -> tuple[object, object]:
        before = await host.observe()
        assert isinstance(openssh.ssh, Sshd)
        openssh.ssh.freeze()
        return before, await host.observe()

    before, frozen = run(host, scenario)

    assert isinstance(before, Seen)
    assert isinstance(frozen, Unseen)


def test_a_stopped_pueue_daemon_is_an_outage_never_a_failure(sandbox: Node) -> None:
    host = pueue_host(sandbox.ssh)
    task_zero = RemoteTask(0, "l", "gpu0", "running", None, None, None, None, None)

    async def scenario() -> list[object]:
        await asyncio.to_thread(sandbox.pueue.stop_pueue_daemon)
        outcomes = [
            await host.observe(),
            await host.submit(slot="gpu0", label="l", remote_dir="~", case_id="c", attempt=1),
            await host.cancel(task_zero),
            await host.release("gpu0"),
            await host.log_tails([task_zero], lines=5),
        ]
        await asyncio.to_thread(sandbox.pueue.start_pueue_daemon)
        return [*outcomes, await host.observe()]

    *down, back = run(host, scenario)

    assert down[0] == Unseen(DAEMON_DOWN_REASON, Blindness.QUEUE_DOWN)
    assert all(outcome == Unknown(DAEMON_DOWN_REASON) for outcome in down[1:])
    assert isinstance(back, Seen)


def test_a_node_without_pueue_is_unseen_and_refuses_to_add(sandbox: Node) -> None:
    host = pueue_host(sandbox.ssh, pueue="no-such-pueue")

    async def scenario() -> list[object]:
        return [
            await host.observe(),
            await host.submit(slot="gpu0", label="l", remote_dir="~", case_id="c", attempt=1),
        ]

    observed, add = run(host, scenario)

    assert isinstance(observed, Unseen) and observed.reason.startswith("`pueue status` failed")
    assert observed.kind is Blindness.QUEUE_DOWN
    assert observed.reason.endswith("(exit 127)") and "no-such-pueue" in observed.reason
    assert isinstance(add, RemoteFailure) and add.exit_status == 127


@pytest.mark.parametrize("output", ["garbage", "truncated"])
def test_unreadable_status_output_is_unseen(sandbox: Node, output: Any) -> None:
    sandbox.pueue.set_fault(status_output=output)
    host = pueue_host(sandbox.ssh)

    observed = run(host, host.observe)

    assert isinstance(observed, Unseen) and observed.kind is Blindness.UNREADABLE
    assert "unreadable `pueue status --json` output" in observed.reason


def test_a_hung_pueue_is_unseen_once_the_node_stops_it(sandbox: Node) -> None:
    sandbox.pueue.set_fault(delay_seconds=30.0, delay_only_status=True)
    host = pueue_host(sandbox.ssh, command_timeout_seconds=0.5)

    observed = run(host, host.observe)

    assert observed == Unseen("node1: remote command timed out after 0.5 s")


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        # Killed by the OOM killer under a wrapper script, which then exits 137.
        ("sh -c 'kill -KILL $$'", "pueue was killed by signal 9 (exit status 137)"),
        # An add without --print-task-id answers in words: not an id, so not a refusal.
        ("echo 'New task added (id 3).'", "`pueue add --print-task-id` did not end with a task id"),
    ],
)
def test_an_add_that_gives_no_task_id_has_an_unknown_outcome(
    sandbox: Node, script: str, reason: str
) -> None:
    fake = sandbox.home / "bin" / "pueue"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o700)
    host = pueue_host(sandbox.ssh, pueue="~/bin/pueue")

    outcome = run(
        host,
        lambda: host.submit(slot="gpu0", label="l", remote_dir="~", case_id="c", attempt=1),
    )

    assert outcome == Unknown(reason)


def test_an_upload_cut_midway_is_unknown_and_the_retry_completes(
    sandbox: Node, tmp_path: Path
) -> None:
    case = tmp_path / AWKWARD
    case.mkdir()
    (case / "CT.raw").write_bytes(os.urandom(4 * MIB))
    host = pueue_host(sandbox.ssh)

    async def scenario() -> tuple[object, object]:
        await asyncio.to_thread(sandbox.pueue.cut_after, MIB)
        cut = await host.upload(case, "~/cases/c1")
        await asyncio.to_thread(sandbox.pueue.cut_after, None)
        return cut, await host.upload(case, "~/cases/c1")

    cut, retried = run(host, scenario)

    assert isinstance(cut, Unknown)
    assert isinstance(retried, Uploaded) and retried.bytes == 4 * MIB
    uploaded = sandbox.home / "cases" / "c1"
    assert sorted(p.name for p in uploaded.parent.iterdir()) == ["c1"]
    assert (uploaded / "CT.raw").read_bytes() == (case / "CT.raw").read_bytes()
