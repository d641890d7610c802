"""Transfers when the connection is cut or the node is down: Unknown, then a clean retry."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer import MANIFEST, Transferred, download_results, upload_dir
from mqi_es.core.outcome import Unknown
from tests.fixtures.sshd import Sshd, ssh_target

MIB = 1024 * 1024


def big_case(root: Path) -> Path:
    case = root / "case 1"
    (case / "delivery").mkdir(parents=True)
    (case / "CT.raw").write_bytes(os.urandom(48 * MIB))
    for index in range(5):
        (case / "delivery" / f"layer{index}.ptn").write_bytes(os.urandom(4096))
    return case


def cutter(server: Sshd, after: int) -> tuple[list[int], Callable[[int, int], None]]:
    """A progress callback that kills the node's sessions once `after` bytes moved."""
    cuts: list[int] = []

    def progress(done: int, _total: int) -> None:
        if done >= after and not cuts:
            cuts.append(server.kill_sessions())

    return cuts, progress


def test_upload_cut_midway_is_unknown_and_the_retry_completes(
    private_sshd: Sshd, tmp_path: Path
) -> None:
    case = big_case(tmp_path)
    cuts, cut_at_8_mib = cutter(private_sshd, 8 * MIB)
    remote = private_sshd.home / "cases" / "case 1"

    async def scenario() -> tuple[object, list[str], object]:
        async with HostConnection(ssh_target(private_sshd), rand=lambda: 0.0) as node:
            cut = await upload_dir(node, case, "~/cases/case 1", progress=cut_at_8_mib)
            left_behind = sorted(p.name for p in remote.parent.iterdir())
            return cut, left_behind, await upload_dir(node, case, "~/cases/case 1")

    cut, left_behind, retried = asyncio.run(scenario())

    assert cuts and cuts[0] > 0
    assert isinstance(cut, Unknown)
    assert "connection lost" in cut.reason
    assert len(left_behind) == 1 and left_behind[0].startswith("case 1.part-")
    assert isinstance(retried, Transferred) and not retried.reused
    assert sorted(p.name for p in remote.parent.iterdir()) == ["case 1"]
    assert (remote / "CT.raw").read_bytes() == (case / "CT.raw").read_bytes()
    assert (remote / MANIFEST).is_file()


def test_download_cut_midway_is_unknown_and_leaves_nothing_locally(
    private_sshd: Sshd, tmp_path: Path
) -> None:
    results = private_sshd.home / "job" / "out"
    results.mkdir(parents=True)
    (results / "dose.raw").write_bytes(os.urandom(48 * MIB))
    (results / "RTDOSE.dcm").write_bytes(os.urandom(100_000))
    cuts, cut_at_8_mib = cutter(private_sshd, 8 * MIB)
    local = tmp_path / "results" / "case 1"

    async def scenario() -> tuple[object, list[str], object]:
        async with HostConnection(ssh_target(private_sshd), rand=lambda: 0.0) as node:
            cut = await download_results(node, "~/job", ["**"], local, progress=cut_at_8_mib)
            left_behind = sorted(p.name for p in local.parent.iterdir())
            return cut, left_behind, await download_results(node, "~/job", ["**"], local)

    cut, left_behind, retried = asyncio.run(scenario())

    assert cuts and cuts[0] > 0
    assert isinstance(cut, Unknown)
    assert left_behind == []
    assert isinstance(retried, Transferred)
    assert (local / "out" / "dose.raw").read_bytes() == (results / "dose.raw").read_bytes()


def test_transfers_to_a_stopped_node_are_unknown(private_sshd: Sshd, tmp_path: Path) -> None:
    case = big_case(tmp_path)
    private_sshd.stop()

    async def scenario() -> tuple[object, object]:
        async with HostConnection(ssh_target(private_sshd)) as node:
            up = await upload_dir(node, case, "~/c")
            down = await download_results(node, "~/c", ["**"], tmp_path / "r")
            return up, down

    up, down = asyncio.run(scenario())

    assert up == Unknown("node1 unreachable: connection refused")
    assert isinstance(down, Unknown)
    assert not (tmp_path / "r").exists()
