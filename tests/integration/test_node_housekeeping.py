"""Housekeeping on a real node (the sandbox's SSH server and OpenSSH, each in front of the
pueue stand-in): ended tasks leave the queue, running ones stay; a case's folder goes with
everything in it, a symbolic link is removed as a link and never followed; the free space
is read where the cases go."""

from __future__ import annotations

import os
from pathlib import Path

from mqi_es.adapters.ssh import node_files
from mqi_es.core.outcome import Ok, RemoteFailure
from mqi_es.core.reactions import Removed
from mqi_es.core.remote import Seen
from tests.integration.test_remote_host_pueue import (
    Node,
    added,
    in_state,
    node,
    observe_until,
    openssh,
    pueue_host,
    run,
    sandbox,
)

__all__ = ["node", "openssh", "sandbox"]


def test_ended_tasks_are_removed_and_a_running_one_is_kept(node: Node) -> None:
    host = pueue_host(node.ssh, "true")

    async def scenario() -> tuple[object, object, set[int]]:
        first = await added(host, "c1", slot="gpu0")
        second = await added(host, "c2", slot="gpu1")
        done = [await observe_until(host, in_state(t, "ended"), "ended") for t in (first, second)]
        keeper = pueue_host(node.ssh, "sleep 30")  # the same node, another remote command
        running_id = await added(keeper, "c3", slot="gpu0")
        running = await observe_until(keeper, in_state(running_id, "running"), "running")
        await keeper.close()
        removed = await host.remove_tasks([*done, running])
        again = await host.remove_tasks(done)  # gone already: pueue refuses them all
        seen = await host.observe()
        assert isinstance(seen, Seen)
        return removed, again, set(seen.snapshot.tasks)

    removed, again, left = run(host, scenario)
    # the stand-in answers as pueue does (message_handler/remove.rs): the two ended tasks
    # removed, the running one refused, on one answer
    assert isinstance(removed, Removed) and sorted(removed.task_ids) == [0, 1]
    assert isinstance(again, RemoteFailure) and "The command failed for tasks" in again.stderr
    assert left == {2}  # the running task


def test_a_case_folder_is_removed_with_all_it_holds_and_a_link_in_it_is_not_followed(
    node: Node, tmp_path: Path
) -> None:
    case = node.home / "mqi_cases" / "patient 7"
    (case / "attempt-1" / "output").mkdir(parents=True)
    (case / "attempt-1" / "output" / "RD.dcm").write_bytes(b"dose")
    (case / "attempt-2.part-0123456789ab").mkdir()  # an interrupted upload
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("not ours")
    os.symlink(precious, case / "attempt-1" / "link")
    host = pueue_host(node.ssh)

    outcome = run(host, lambda: host.remove_folder("~/mqi_cases/patient 7"))

    assert isinstance(outcome, Ok), outcome
    assert not case.exists()
    assert (precious / "keep.txt").read_text() == "not ours"
    again = pueue_host(node.ssh)
    assert isinstance(run(again, lambda: again.remove_folder("~/mqi_cases/patient 7")), Ok)


def test_a_folder_that_is_a_link_or_the_home_itself_is_refused(node: Node, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (node.home / "mqi_cases").mkdir(exist_ok=True)
    os.symlink(elsewhere, node.home / "mqi_cases" / "linked")
    host = pueue_host(node.ssh)

    async def scenario() -> tuple[object, object]:
        return (
            await host.remove_folder("~/mqi_cases/linked"),
            await host.remove_folder("~"),
        )

    linked, home = run(host, scenario)
    assert isinstance(linked, RemoteFailure) and "symbolic link" in linked.stderr
    assert isinstance(home, RemoteFailure)
    assert elsewhere.is_dir() and (node.home / "mqi_cases").is_dir()


def test_the_free_space_is_read_where_the_cases_go_even_before_that_folder_exists(
    node: Node,
) -> None:
    host = pueue_host(node.ssh)

    async def scenario() -> object:
        return await node_files.free_bytes(host.connection, "~/not/there/yet")

    free = run(host, scenario)
    expected = os.statvfs(node.home)
    assert isinstance(free, int)
    assert abs(free - expected.f_bavail * expected.f_frsize) < 512 * 2**20  # others write too
