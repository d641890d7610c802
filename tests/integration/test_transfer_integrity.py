"""What reaches the node is byte for byte what was read here, and what comes back is byte for
byte the node's: against a real OpenSSH sshd (its home is a local folder, so a test can
change files on either side while they travel)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer import (
    MANIFEST,
    TransferFailed,
    Transferred,
    TransferRefused,
    download_results,
    upload_dir,
)
from mqi_es.adapters.ssh.transfer.case_reader import CaseFile, CaseReader, OpenCaseFile
from mqi_es.core.outcome import Unknown
from tests.fixtures.sshd import Sshd, ssh_target

T = TypeVar("T")
MIB = 1024 * 1024


def on_node(server: Sshd, act: Callable[[HostConnection], Coroutine[Any, Any, T]]) -> T:
    async def scenario() -> T:
        async with HostConnection(ssh_target(server)) as node:
            return await act(node)

    return asyncio.run(scenario())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def case_with(root: Path, files: dict[str, int]) -> Path:
    case = root / "case"
    for relpath, size in files.items():
        (case / relpath).parent.mkdir(parents=True, exist_ok=True)
        (case / relpath).write_bytes(os.urandom(size))
    return case


def nothing_published(server: Sshd, folder: str) -> bool:
    parent = server.home / "integrity"
    return not (parent / folder).exists() and not any(
        p.name.startswith(f"{folder}.part-") for p in parent.iterdir()
    )


def test_upload_records_the_sha256_of_every_file_as_it_was_read(sshd: Sshd, tmp_path) -> None:
    case = case_with(tmp_path, {"CT.raw": 3 * MIB, "plan/RP.dcm": 5000, "back\\slash.txt": 10})

    moved = on_node(sshd, lambda node: upload_dir(node, case, f"~/integrity/{tmp_path.name}"))

    assert isinstance(moved, Transferred)
    assert moved.digests == tuple(
        sorted((rel, (case / rel).stat().st_size, sha256(case / rel))
               for rel in ("CT.raw", "plan/RP.dcm", "back\\slash.txt"))
    )  # fmt: skip
    manifest = sshd.home / "integrity" / tmp_path.name / MANIFEST
    assert moved.manifest_sha256 == sha256(manifest)
    for relpath, _, digest in moved.digests:
        assert sha256(sshd.home / "integrity" / tmp_path.name / relpath) == digest


def test_a_large_file_modified_while_it_uploads_is_refused_and_nothing_is_published(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = case_with(tmp_path, {"CT.raw": 64 * MIB, "RP.dcm": 1000})
    ct = case / "CT.raw"
    edits: list[int] = []

    def edit_midway(done: int, total: int) -> None:
        if done > total // 4 and not edits:  # another machine rewrites the middle of it
            with ct.open("r+b") as file:
                file.seek(40 * MIB)
                file.write(b"\xff" * 4096)
            edits.append(done)

    async def act(node: HostConnection) -> object:
        try:
            return await upload_dir(
                node, case, f"~/integrity/{tmp_path.name}", parallel=1, progress=edit_midway
            )
        except TransferRefused as refused:
            return refused

    outcome = on_node(sshd, act)

    assert edits, f"the edit never happened: {outcome!r}"
    assert isinstance(outcome, TransferRefused)
    assert str(outcome) == "CT.raw changed while it was being sent"
    assert nothing_published(sshd, tmp_path.name)


def test_a_file_swapped_for_a_link_after_the_scan_is_refused(sshd: Sshd, tmp_path) -> None:
    case = case_with(tmp_path, {"a.dcm": 2000, "b.dcm": 2000})
    (tmp_path / "elsewhere.dcm").write_bytes(b"another patient's plan")
    swapped: list[bool] = []

    def swap_b_after_a(done: int, total: int) -> None:
        if done >= 2000 and not swapped:  # a.dcm is sent; b.dcm becomes a link out of the case
            (case / "b.dcm").unlink()
            (case / "b.dcm").symlink_to(tmp_path / "elsewhere.dcm")
            swapped.append(True)

    async def act(node: HostConnection) -> object:
        try:
            return await upload_dir(
                node, case, f"~/integrity/{tmp_path.name}", parallel=1, progress=swap_b_after_a
            )
        except TransferRefused as refused:
            return refused

    outcome = on_node(sshd, act)

    assert swapped and isinstance(outcome, TransferRefused)
    assert str(outcome) == "b.dcm was replaced by a symbolic link after it was checked"
    assert nothing_published(sshd, tmp_path.name)


def test_a_copy_that_differs_on_the_node_is_refused_before_it_is_published(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = case_with(tmp_path, {"a.dcm": 3000, "sub/b.dcm": 3000})
    corrupted: list[Path] = []

    def corrupt_on_the_node(done: int, total: int) -> None:
        if done == total and not corrupted:  # every byte written: flip one on the node
            (copy,) = (sshd.home / "integrity").glob(f"{tmp_path.name}.part-*/sub/b.dcm")
            data = bytearray(copy.read_bytes())
            data[100] ^= 0xFF
            copy.write_bytes(bytes(data))
            corrupted.append(copy)

    async def act(node: HostConnection) -> object:
        try:
            return await upload_dir(
                node, case, f"~/integrity/{tmp_path.name}", progress=corrupt_on_the_node
            )
        except TransferRefused as refused:
            return refused

    outcome = on_node(sshd, act)

    assert corrupted and isinstance(outcome, TransferRefused)
    assert "1 file(s) differ on the node from what was read here (first: sub/b.dcm)" in str(outcome)
    assert nothing_published(sshd, tmp_path.name)


def test_a_case_that_no_longer_matches_its_registration_is_not_published(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = case_with(tmp_path, {"a.dcm": 3000})

    async def act(node: HostConnection) -> object:
        try:
            return await upload_dir(
                node,
                case,
                f"~/integrity/{tmp_path.name}",
                still_registered=lambda: "its content changed",
            )
        except TransferRefused as refused:
            return refused

    outcome = on_node(sshd, act)

    assert str(outcome) == "its content changed"
    assert nothing_published(sshd, tmp_path.name)


def test_a_complete_upload_is_reused_only_after_its_digests_check_out(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = case_with(tmp_path, {"a.dcm": 3000, "b.dcm": 3000})

    async def act(node: HostConnection) -> tuple[object, object, object]:
        first = await upload_dir(node, case, f"~/integrity/{tmp_path.name}")
        again = await upload_dir(node, case, f"~/integrity/{tmp_path.name}")
        copy = (
            sshd.home / "integrity" / tmp_path.name / "b.dcm"
        )  # same size, one byte changed on the node
        data = bytearray(copy.read_bytes())
        data[0] ^= 1
        copy.write_bytes(bytes(data))
        return first, again, await upload_dir(node, case, f"~/integrity/{tmp_path.name}")

    first, again, tampered = on_node(sshd, act)

    assert isinstance(again, Transferred) and again.reused
    assert isinstance(first, Transferred) and again.digests == first.digests
    assert again.manifest_sha256 == first.manifest_sha256
    assert isinstance(tampered, TransferFailed)
    assert "changed since: 1 file(s) differ on the node" in tampered.reason


def test_download_checks_every_result_against_the_nodes_digest(sshd: Sshd, tmp_path) -> None:
    remote = sshd.home / "integrity" / tmp_path.name
    (remote / "output").mkdir(parents=True)
    (remote / "output" / "RD 1.dcm").write_bytes(os.urandom(2 * MIB))
    (remote / "output" / "odd\nname.raw").write_bytes(b"raw dose")
    results = tmp_path / "results" / "attempt-1"

    source = f"~/integrity/{tmp_path.name}"
    moved = on_node(sshd, lambda node: download_results(node, source, ["output/*"], results))

    assert isinstance(moved, Transferred)
    sent = (remote / "output").iterdir()
    assert moved.digests == tuple(
        sorted((f"output/{p.name}", p.stat().st_size, sha256(p)) for p in sent)
    )
    assert moved.manifest_sha256 == sha256(results / MANIFEST)


def test_a_result_that_arrives_different_from_the_nodes_is_fetched_again(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote = sshd.home / "integrity" / tmp_path.name / "output"
    remote.mkdir(parents=True)
    (remote / "RD.dcm").write_bytes(os.urandom(MIB))
    results = tmp_path / "results" / "attempt-1"
    spoiled: list[bool] = []

    def spoil_the_local_copy(done: int, total: int) -> None:
        if done == total and not spoiled:
            (copy,) = results.parent.glob("attempt-1.part-*/output/RD.dcm")
            with copy.open("r+b") as file:
                file.write(b"\x00")
            spoiled.append(True)

    source = f"~/integrity/{tmp_path.name}"
    left: list[list[Path]] = []

    async def act(node: HostConnection) -> tuple[object, object]:
        first = await download_results(
            node, source, ["output/*"], results, progress=spoil_the_local_copy
        )
        left.append(list(results.parent.iterdir()))  # nothing published, no part left
        return first, await download_results(node, source, ["output/*"], results)

    first, second = on_node(sshd, act)

    assert spoiled and isinstance(first, Unknown)
    assert "1 result file(s) arrived different from the node's copy (first: output/RD.dcm)" in (
        first.reason
    )
    assert left == [[]]
    assert isinstance(second, Transferred) and sha256(results / "output" / "RD.dcm") == sha256(
        remote / "RD.dcm"
    )


def test_a_local_copy_altered_since_its_download_is_not_taken_as_complete(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote = sshd.home / "integrity" / tmp_path.name / "output"
    remote.mkdir(parents=True)
    (remote / "RD.dcm").write_bytes(os.urandom(5000))
    results = tmp_path / "results" / "attempt-1"

    async def act(node: HostConnection) -> object:
        await download_results(node, f"~/integrity/{tmp_path.name}", ["output/*"], results)
        with (results / "output" / "RD.dcm").open("r+b") as file:
            file.write(b"\x00")  # same size, other bytes
        return await download_results(node, f"~/integrity/{tmp_path.name}", ["output/*"], results)

    outcome = on_node(sshd, act)

    assert isinstance(outcome, TransferFailed) and outcome.local
    assert "exists but is not a complete download" in outcome.reason


@pytest.mark.parametrize("name", ["new\nline.dcm", "tab\there.dcm"])
def test_a_case_file_with_a_control_character_in_its_name_is_refused(
    sshd: Sshd, tmp_path: Path, name: str
) -> None:
    case = case_with(tmp_path, {name: 10})

    with pytest.raises(TransferRefused, match="has a control character in its name"):
        on_node(sshd, lambda node: upload_dir(node, case, f"~/integrity/{tmp_path.name}"))


def files_open_under(folder: Path) -> list[str]:
    """What this process holds open inside ``folder`` (other tests' descriptors may come
    and go meanwhile, so counting all of them would not tell)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [t for t in targets if t.startswith(f"{folder}{os.sep}")]


def test_a_refusal_amid_parallel_large_files_leaves_no_descriptor_open(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file is refused while the others are being opened in worker threads: the
    upload stops, and every descriptor those threads opened is closed all the same."""
    case = case_with(tmp_path, {"a-first/CT.raw": 3 * MIB} | {
        f"beam{i}/CT.raw": 3 * MIB for i in range(6)
    })  # fmt: skip
    opening = CaseReader.open

    def slow_open(reader: CaseReader, file: CaseFile) -> OpenCaseFile:
        if file.relpath == "a-first/CT.raw":
            raise TransferRefused("a-first/CT.raw was replaced by a symbolic link")
        opened = opening(reader, file)
        time.sleep(0.3)  # opened, not yet handed back, when the refusal stops the upload
        return opened

    monkeypatch.setattr(CaseReader, "open", slow_open)

    async def act(node: HostConnection) -> tuple[object, list[str]]:
        try:
            outcome: object = await upload_dir(
                node, case, f"~/integrity/{tmp_path.name}", parallel=4
            )
        except TransferRefused as refused:
            outcome = refused
        await asyncio.sleep(0.5)  # any thread still opening has finished by now
        return outcome, files_open_under(case)

    outcome, still_open = on_node(sshd, act)

    assert isinstance(outcome, TransferRefused) and "a-first/CT.raw" in str(outcome)
    assert still_open == []
    assert nothing_published(sshd, tmp_path.name)
