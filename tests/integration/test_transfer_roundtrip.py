"""upload_dir / download_results against a real OpenSSH sshd (its home is a local folder)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer import (
    MANIFEST,
    NoMatches,
    TransferFailed,
    Transferred,
    TransferRefused,
    download_results,
    upload_dir,
)
from tests.fixtures.sshd import Sshd, descendants, ssh_target

T = TypeVar("T")
WEIRD = "Pat 'O\"Brien' $(id) `x`; *é"


def on_node(server: Sshd, act: Callable[[HostConnection], Coroutine[Any, Any, T]]) -> T:
    async def scenario() -> T:
        async with HostConnection(ssh_target(server)) as node:
            return await act(node)

    return asyncio.run(scenario())


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under `root`, by relative path."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


def make_case(root: Path) -> Path:
    case = root / WEIRD
    for relpath, size in {
        "RP1.2.840.dcm": 100_000,
        "delivery 1/PlanInfo.txt": 300,
        "délivery 'ß' \"2\"/layer $(x) `y`;*.ptn": 600_000,
        "empty.mgn": 0,
        "nested/a/b/c/deep.bin": 1024,
    }.items():
        path = case / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (case / "empty folder").mkdir()
    return case


def test_upload_then_download_round_trip_keeps_names_sizes_and_folders(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = make_case(tmp_path)
    results = tmp_path / "results" / "attempt 1"

    async def act(node: HostConnection) -> tuple[object, object]:
        up = await upload_dir(node, case, f"~/cases/{WEIRD}")
        down = await download_results(
            node, f"~/cases/{WEIRD}", ["**/*.ptn", "*.dcm", "nested/**"], results
        )
        return up, down

    up, down = on_node(sshd, act)

    remote = sshd.home / "cases" / WEIRD
    assert isinstance(up, Transferred)
    assert (up.files, up.bytes, up.reused) == (5, 701_324, False)
    assert {k: v for k, v in tree(remote).items() if k != MANIFEST} == tree(case)
    assert isinstance(down, Transferred)
    assert (down.files, down.bytes) == (3, 701_024)
    wanted = ["RP1.2.840.dcm", "délivery 'ß' \"2\"/layer $(x) `y`;*.ptn", "nested/a/b/c/deep.bin"]
    assert {k: v for k, v in tree(results).items() if v is not None and k != MANIFEST} == {
        k: (case / k).read_bytes() for k in wanted
    }
    assert results.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (sshd.home / "cases").iterdir()) == [WEIRD]
    assert sorted(p.name for p in results.parent.iterdir()) == ["attempt 1"]


def test_progress_counts_bytes_up_to_the_total(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    seen: list[tuple[int, int]] = []

    on_node(sshd, lambda node: upload_dir(node, case, "~/progress", progress=_record(seen)))

    assert seen[0] == (0, 701_324)
    assert seen[-1] == (701_324, 701_324)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def _record(seen: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: seen.append((done, total))


def test_uploading_a_complete_case_again_reuses_it(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)

    async def act(node: HostConnection) -> tuple[object, object]:
        return await upload_dir(node, case, "~/twice/c"), await upload_dir(node, case, "~/twice/c")

    first, second = on_node(sshd, act)

    assert isinstance(first, Transferred) and not first.reused
    assert isinstance(second, Transferred) and second.reused
    assert (second.files, second.bytes) == (first.files, first.bytes)
    assert [p.name for p in (sshd.home / "twice").iterdir()] == ["c"]


def test_partial_uploads_of_this_and_every_earlier_attempt_are_removed(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = make_case(tmp_path)
    folder = sshd.home / "cases" / "c"
    for leftover in ("attempt-1.part-0123456789ab", "attempt-2.part-ba9876543210"):
        (folder / leftover / "half").mkdir(parents=True)
        (folder / leftover / "half" / "RP.dcm").write_bytes(b"half a file")
    (folder / "attempt-1").mkdir()  # a complete earlier attempt is not a partial copy
    (folder / "notes.part-of-plan").write_text("not ours")  # nor is a look-alike name

    outcome = on_node(sshd, lambda node: upload_dir(node, case, "~/cases/c/attempt-2"))

    assert isinstance(outcome, Transferred)
    assert sorted(p.name for p in folder.iterdir()) == [
        "attempt-1", "attempt-2", "notes.part-of-plan",
    ]  # fmt: skip


def test_existing_folder_with_other_content_is_not_overwritten(sshd: Sshd, tmp_path: Path) -> None:
    first, second = make_case(tmp_path / "one"), make_case(tmp_path / "two")
    os.utime(second / "RP1.2.840.dcm", ns=(0, 10**18))  # same names and sizes, newer file

    async def act(node: HostConnection) -> object:
        await upload_dir(node, first, "~/clash/c")
        return await upload_dir(node, second, "~/clash/c")

    outcome = on_node(sshd, act)

    assert isinstance(outcome, TransferFailed)
    assert "exists with other content" in outcome.reason
    assert (sshd.home / "clash" / "c" / "RP1.2.840.dcm").read_bytes() == (
        first / "RP1.2.840.dcm"
    ).read_bytes()


def test_complete_upload_changed_on_the_node_is_not_reused(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)

    async def act(node: HostConnection) -> object:
        await upload_dir(node, case, "~/changed/c")
        (sshd.home / "changed" / "c" / "nested" / "a" / "b" / "c" / "deep.bin").unlink()
        return await upload_dir(node, case, "~/changed/c")

    outcome = on_node(sshd, act)

    assert isinstance(outcome, TransferFailed)
    assert outcome.reason.endswith("was uploaded, but nested/a/b/c/deep.bin changed since")


def test_existing_folder_without_manifest_is_not_taken_as_complete(
    sshd: Sshd, tmp_path: Path
) -> None:
    case = make_case(tmp_path)
    (sshd.home / "foreign" / "c").mkdir(parents=True)

    outcome = on_node(sshd, lambda node: upload_dir(node, case, "~/foreign/c"))

    assert isinstance(outcome, TransferFailed)
    assert "not a complete upload" in outcome.reason


def test_relative_and_absolute_remote_paths(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    absolute = tmp_path / "elsewhere" / "c"

    async def act(node: HostConnection) -> tuple[object, object]:
        return await upload_dir(node, case, "plain/c"), await upload_dir(node, case, str(absolute))

    relative_outcome, absolute_outcome = on_node(sshd, act)

    assert isinstance(relative_outcome, Transferred)
    assert isinstance(absolute_outcome, Transferred)
    assert (sshd.home / "plain" / "c" / MANIFEST).is_file()
    assert (absolute / MANIFEST).is_file()


def test_link_inside_the_case_arrives_as_a_plain_file(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (case / "plan.dcm").symlink_to("RP1.2.840.dcm")
    (case / "same delivery").symlink_to("delivery 1")

    outcome = on_node(sshd, lambda node: upload_dir(node, case, "~/links/c"))

    remote = sshd.home / "links" / "c"
    assert isinstance(outcome, Transferred)
    assert not (remote / "plan.dcm").is_symlink()
    assert (remote / "plan.dcm").read_bytes() == (case / "RP1.2.840.dcm").read_bytes()
    assert (remote / "same delivery" / "PlanInfo.txt").read_bytes() == (
        case / "delivery 1" / "PlanInfo.txt"
    ).read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("escape", lambda p: p.symlink_to("/etc/passwd"), "escape is a symbolic link to outside"),
        ("up", lambda p: p.symlink_to("../../.."), "up is a symbolic link to outside the case"),
        ("broken", lambda p: p.symlink_to("missing.dcm"), "broken is a broken symbolic link"),
        ("loop", lambda p: p.symlink_to("."), "loop links to a folder that contains it"),
        ("fifo", lambda p: os.mkfifo(p), "fifo is neither a regular file nor a folder"),
    ],
)
def test_case_content_that_must_not_leave_is_refused_before_sending(
    sshd: Sshd, tmp_path: Path, name: str, make: Callable[[Path], None], message: str
) -> None:
    case = make_case(tmp_path)
    make(case / "delivery 1" / name)

    with pytest.raises(TransferRefused, match=message.replace("(", r"\(")) as refused:
        on_node(sshd, lambda node: upload_dir(node, case, f"~/refused-{name}/c"))

    assert str(refused.value).startswith(f"delivery 1/{name} ")
    assert not (sshd.home / f"refused-{name}").exists()


def test_file_name_that_is_not_utf8_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (case / os.fsdecode(b"RD\xff.dcm")).write_bytes(b"dose")

    with pytest.raises(TransferRefused, match=r"^RD\\xff.dcm has a name that is not UTF-8$"):
        on_node(sshd, lambda node: upload_dir(node, case, "~/not-utf8/c"))


def test_a_case_file_named_like_the_manifest_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (case / MANIFEST).write_text("{}")

    with pytest.raises(TransferRefused, match="reserved for the transfer manifest"):
        on_node(sshd, lambda node: upload_dir(node, case, "~/reserved/c"))


def test_files_in_flight_are_bounded_by_parallel(sshd: Sshd, tmp_path: Path) -> None:
    case = tmp_path / "many"
    case.mkdir()
    for index in range(12):
        (case / f"f{index:02d}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    most = [0]

    def count_open_part_files(_done: int, _total: int) -> None:
        most[0] = max(most[0], _open_part_files(sshd))

    outcome = on_node(
        sshd,
        lambda node: upload_dir(
            node, case, "~/bounded", parallel=3, progress=count_open_part_files
        ),
    )

    assert isinstance(outcome, Transferred)
    assert 2 <= most[0] <= 3


def _open_part_files(server: Sshd) -> int:
    """Files under a ``.part-`` folder that the node's sftp-server processes hold open."""
    count = 0
    for pid in descendants(server.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "sftp-server":
                continue
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        count += sum(".part-" in link for link in links)
    return count


def test_remote_refusal_is_a_transfer_failure(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (sshd.home / "blocker").write_text("a file where a folder should be")

    outcome = on_node(sshd, lambda node: upload_dir(node, case, "~/blocker/c"))

    assert isinstance(outcome, TransferFailed)
    assert outcome.reason.startswith("node1: ")


def test_full_remote_disk_is_a_transfer_failure_naming_the_free_space(
    sshd: Sshd, tmp_path: Path
) -> None:
    small = tmp_path / "small disk"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        case = make_case(tmp_path)
        (case / "big.raw").write_bytes(os.urandom(3 * 1024 * 1024))

        outcome = on_node(sshd, lambda node: upload_dir(node, case, str(small / "c")))

        assert isinstance(outcome, TransferFailed)
        assert "bytes free on the node's file system" in outcome.reason
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", small], check=True)


def test_download_without_matching_files_says_so(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)

    async def act(node: HostConnection) -> object:
        await upload_dir(node, case, "~/nomatch/c")
        return await download_results(node, "~/nomatch/c", ["**/*.mhd"], tmp_path / "r")

    assert on_node(sshd, act) == NoMatches(("**/*.mhd",))
    assert not (tmp_path / "r").exists()


def test_download_again_reuses_the_complete_local_copy(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    local = tmp_path / "r"

    async def act(node: HostConnection) -> tuple[object, object]:
        await upload_dir(node, case, "~/again/c")
        first = await download_results(node, "~/again/c", ["**"], local)
        return first, await download_results(node, "~/again/c", ["**"], local)

    first, second = on_node(sshd, act)

    assert isinstance(first, Transferred) and not first.reused
    assert isinstance(second, Transferred) and second.reused
    assert second.files == first.files == 5  # the upload's manifest is not a result


def test_download_into_a_foreign_local_folder_fails(sshd: Sshd, tmp_path: Path) -> None:
    case = make_case(tmp_path)
    local = tmp_path / "r"
    local.mkdir()

    async def act(node: HostConnection) -> object:
        await upload_dir(node, case, "~/foreign-local/c")
        return await download_results(node, "~/foreign-local/c", ["**"], local)

    outcome = on_node(sshd, act)

    assert isinstance(outcome, TransferFailed)
    assert "not a complete download" in outcome.reason
