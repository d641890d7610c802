"""The intake against a real watch folder, real files and real time, with inotify and polling.

Every scenario runs in both watcher modes. Waits are bounded by deadlines; negative checks
("never registered", "reported once") wait for a later fact, such as a sentinel case being
registered, rather than for a fixed time wherever one exists.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mqi_es.adapters.watch.case_dir import Fingerprint
from mqi_es.adapters.watch.case_names import show_name
from mqi_es.adapters.watch.intake import Intake
from mqi_es.adapters.watch.reports import Arrival
from mqi_es.core.errors import ConfigError

Q = 0.3  # quiescence, seconds
POLL_MS = 100
RESCAN = 0.3
MODES = ["inotify", "polling"]


class RecordingSink:
    """Records reports the way the application does: a report makes the name known."""

    def __init__(self) -> None:
        self.ready: list[Arrival] = []
        self.ready_at: dict[str, float] = {}
        self.refused: list[tuple[str, str]] = []
        self.held: list[tuple[str, str]] = []
        self.known: set[str] = set()
        self.failures_to_inject = 0

    def is_known(self, key: str) -> bool:
        return key in self.known

    def case_ready(self, arrival: Arrival) -> None:
        if self.failures_to_inject:
            self.failures_to_inject -= 1
            raise OSError("database is locked")
        self.ready.append(arrival)
        self.ready_at[arrival.case_id] = time.monotonic()
        self.known.add(arrival.case_id)

    def case_refused(self, raw_name_repr: str, reason: str) -> None:
        self.refused.append((raw_name_repr, reason))
        self.known.add(raw_name_repr)

    def case_held(self, name: str, reason: str, found: Fingerprint) -> None:
        assert found.problems or found.file_count == 0 or found.marker_present is False
        self.held.append((name, reason))

    def ready_ids(self) -> list[str]:
        return [a.case_id for a in self.ready]


@contextlib.asynccontextmanager
async def running(
    root: Path, sink: RecordingSink, mode: str, **options: object
) -> AsyncIterator[asyncio.Task[None]]:
    settings: dict[str, object] = {"quiescence": Q, "rescan_interval": RESCAN, **options}
    intake = Intake(
        root,
        force_polling=mode == "polling",
        poll_delay_ms=POLL_MS,
        is_known=sink.is_known,
        sink=sink,
        **settings,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(intake.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


def make_case(root: Path, name: str, files: int = 1, payload: bytes = b"dicom") -> Path:
    case = root / name
    case.mkdir()
    for i in range(files):
        (case / f"f{i}.dcm").write_bytes(payload)
    return case


async def registered(sink: RecordingSink, case_id: str, timeout: float = 10.0) -> Arrival:
    await eventually(lambda: case_id in sink.ready_ids(), timeout)
    return next(a for a in sink.ready if a.case_id == case_id)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    return folder


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def intake_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# --- arrivals ------------------------------------------------------------------------------


def test_a_slow_copy_is_registered_once_after_its_last_write(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            case = root / "P001"
            case.mkdir()
            for i in range(5):  # pauses well within the quiet period
                (case / f"CT{i}.dcm").write_bytes(b"x" * 1000)
                await asyncio.sleep(Q * 0.4)
            with (case / "CT4.dcm").open("ab") as growing:
                growing.write(b"y" * 500)
            last_write = time.monotonic()

            arrival = await registered(sink, "P001")

        assert sink.ready_ids() == ["P001"]
        assert (arrival.file_count, arrival.total_bytes) == (5, 5500)
        assert sink.ready_at["P001"] - last_write >= Q

    asyncio.run(scenario())


def test_a_case_renamed_into_place_is_registered_whole(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            staging = root.parent / "staging" / "P002"
            (staging / "beam1").mkdir(parents=True)
            for i in range(10):
                (staging / "beam1" / f"layer{i}.ptn").write_bytes(b"p" * 10)
            staging.rename(root / "P002")

            inner = root / ".incoming-P003"  # staged inside the folder under a hidden name
            inner.mkdir()
            (inner / "RP.dcm").write_bytes(b"plan")
            inner.rename(root / "P003")

            arrival = await registered(sink, "P002")
            await registered(sink, "P003")

        assert (arrival.file_count, arrival.total_bytes) == (10, 100)
        assert sorted(sink.ready_ids()) == ["P002", "P003"]
        assert sink.refused == [] and sink.held == []

    asyncio.run(scenario())


def test_a_nested_tree_created_fast_is_registered_with_all_its_files(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            await asyncio.sleep(0.1)  # the watcher is armed: this is a live arrival
            for beam in range(4):
                deep = root / "P004" / "study" / f"beam{beam}" / "logs"
                deep.mkdir(parents=True)
                for layer in range(5):
                    (deep / f"layer{layer}.mgn").write_bytes(b"m")
            arrival = await registered(sink, "P004")

        assert arrival.file_count == 20
        assert arrival.path == root / "P004"

    asyncio.run(scenario())


def test_a_thousand_cases_arriving_at_once_are_each_registered_once(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            await asyncio.sleep(0.1)
            for i in range(1000):
                make_case(root, f"C{i:04d}")
            await eventually(lambda: len(sink.ready) >= 1000, timeout=30.0)
            await registered(sink, make_case(root, "sentinel").name)

        counts = collections.Counter(sink.ready_ids())
        assert len(counts) == 1001
        assert set(counts.values()) == {1}

    asyncio.run(scenario())


def test_cases_that_arrived_while_down_are_found_at_start_up(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        sink.known.add("OLD")  # registered in an earlier run
        for name in ("OLD", "NEW1", "NEW2"):
            make_case(root, name)
        async with running(root, sink, mode):
            await registered(sink, "NEW1")
            await registered(sink, "NEW2")
            await registered(sink, make_case(root, "sentinel").name)

        assert sorted(sink.ready_ids()) == ["NEW1", "NEW2", "sentinel"]

    asyncio.run(scenario())


def test_ten_restarts_never_register_a_case_twice(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        make_case(root, "P100")
        for restart in range(10):
            async with running(root, sink, mode):
                await registered(sink, make_case(root, f"R{restart}").name)
                if restart == 0:
                    await registered(sink, "P100")
                # Stopped while this one is settling: registered after the next start.
                make_case(root, f"S{restart}")

        async with running(root, sink, mode):
            await registered(sink, "S9")

        counts = collections.Counter(sink.ready_ids())
        assert counts["P100"] == 1
        assert set(counts.values()) == {1}
        assert len(counts) == 21

    asyncio.run(scenario())


def test_a_failing_sink_is_retried_until_the_arrival_is_recorded(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        sink.failures_to_inject = 2
        async with running(root, sink, mode):
            make_case(root, "P200")
            await registered(sink, "P200")

        assert sink.ready_ids() == ["P200"]

    asyncio.run(scenario())


# --- refusals, holds and things that are not cases ------------------------------------------

HOSTILE = {
    b"-rf": "name starts with '-'",
    b"a\nb": "name contains a control character (U+000A)",
    b"a\x1b[2Jb": "name contains a control character (U+001B)",
    b"bad\xff\xfe": "name is not valid UTF-8",
    b"x" * 129: "name is longer than 128 characters (129)",
    b"a..b": "name contains '..'",
    b"a\\b": "name contains a path separator ('\\\\')",
    b" lead": "name starts or ends with whitespace",
    "\u202egnp.exe".encode(): "name contains a non-printable character (U+202E)",
}


def test_hostile_names_are_refused_once_even_across_a_restart(
    root: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqi_es.adapters.watch")

    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            await asyncio.sleep(0.1)  # live arrivals: undecodable names upset the watcher
            for raw in HOSTILE:
                case = os.path.join(os.fsencode(root), raw)
                os.mkdir(case)
                with open(os.path.join(case, b"RP.dcm"), "wb") as f:
                    f.write(b"plan")
            await eventually(lambda: len(sink.refused) >= len(HOSTILE))
            await asyncio.sleep(2 * RESCAN)  # rescans see them again
            await registered(sink, make_case(root, "sentinel").name)
        async with running(root, sink, mode):
            await registered(sink, make_case(root, "sentinel2").name)

        assert sorted(sink.refused) == sorted((show_name(n), r) for n, r in HOSTILE.items())
        assert sink.ready_ids() == ["sentinel", "sentinel2"]
        for raw in HOSTILE:
            assert len(intake_lines(caplog, f"refused case directory '{show_name(raw)}'")) == 1
        for record in caplog.records:  # nothing raw reaches the log
            assert record.getMessage().isprintable()

    asyncio.run(scenario())


def test_temporary_files_hold_a_case_until_renamed(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            case = make_case(root, "P300", files=2)
            (case / "sub").mkdir()
            (case / "sub" / "CT9.dcm.part").write_bytes(b"half")
            await eventually(lambda: sink.held != [])
            await asyncio.sleep(2 * Q)  # held cases are looked at again every Q here
            assert sink.ready == []

            (case / "sub" / "CT9.dcm.part").rename(case / "sub" / "CT9.dcm")
            arrival = await registered(sink, "P300")

        assert sink.held == [("P300", "temporary files present")]
        assert arrival.file_count == 3

    asyncio.run(scenario())


def test_an_empty_directory_is_not_a_case_until_it_holds_files(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            (root / "P400" / "empty-sub").mkdir(parents=True)
            await eventually(lambda: sink.held != [])
            await asyncio.sleep(2 * Q)
            assert sink.ready == []

            (root / "P400" / "empty-sub" / "RP.dcm").write_bytes(b"plan")
            arrival = await registered(sink, "P400")

        assert sink.held == [("P400", "no files")]
        assert arrival.file_count == 1

    asyncio.run(scenario())


def test_a_directory_deleted_before_it_was_stable_leaves_nothing_behind(
    root: Path, mode: str
) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode):
            ghost = make_case(root, "GHOST", files=3)
            await asyncio.sleep(Q / 3)
            shutil.rmtree(ghost)
            # Created after the ghost, so registered after the ghost's window had passed.
            await registered(sink, make_case(root, "sentinel").name)

        assert sink.ready_ids() == ["sentinel"]
        assert sink.held == [] and sink.refused == []

    asyncio.run(scenario())


def test_a_symlink_leaving_the_case_holds_it(root: Path, mode: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        secret = tmp_path / "elsewhere.txt"
        secret.write_text("not part of any case")
        sink = RecordingSink()
        async with running(root, sink, mode):
            case = make_case(root, "P500")
            (case / "link.dcm").symlink_to(secret)
            await eventually(lambda: sink.held != [])
            await asyncio.sleep(2 * Q)  # held cases are looked at again every Q here

        assert sink.held == [("P500", "symlink points outside the case")]
        assert sink.ready == []

    asyncio.run(scenario())


def test_a_plain_file_or_a_symlink_is_ignored_with_one_log_line(
    root: Path, mode: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="mqi_es.adapters.watch")

    async def scenario() -> None:
        sink = RecordingSink()
        (root / "stray.dcm").write_bytes(b"not in a case")
        elsewhere = make_case(tmp_path, "elsewhere")
        (root / "linked").symlink_to(elsewhere)
        async with running(root, sink, mode):
            await registered(sink, make_case(root, "sentinel").name)
            await asyncio.sleep(2 * RESCAN)

        assert sink.ready_ids() == ["sentinel"]
        assert sink.refused == [] and sink.held == []
        assert sorted(intake_lines(caplog, "ignoring")) == [
            "ignoring 'linked' in the watch folder: a symlink; a case must be a real directory",
            "ignoring 'stray.dcm' in the watch folder: not a directory",
        ]

    asyncio.run(scenario())


def test_in_ready_marker_mode_a_case_waits_for_its_marker(root: Path, mode: str) -> None:
    async def scenario() -> None:
        sink = RecordingSink()
        async with running(root, sink, mode, ready_marker="_CASE_READY"):
            case = make_case(root, "P600", files=2)
            await eventually(lambda: sink.held != [])
            assert sink.ready == []

            (case / "_CASE_READY").write_bytes(b"")
            arrival = await registered(sink, "P600")

        assert sink.held == [("P600", "waiting for ready marker '_CASE_READY'")]
        assert arrival.file_count == 2  # the marker is not data

    asyncio.run(scenario())


# --- the watch folder itself ---------------------------------------------------------------


def test_a_watch_folder_deleted_and_recreated_is_watched_again(
    root: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqi_es.adapters.watch")

    async def scenario() -> None:
        sink = RecordingSink()
        # A long rescan interval: only the root checks can bring the new folder into view.
        async with running(root, sink, mode, rescan_interval=60.0):
            await registered(sink, make_case(root, "BEFORE").name)

            shutil.rmtree(root)  # replaced at once, as a sync tool or an operator would
            root.mkdir()
            await asyncio.sleep(0.3)
            make_case(root, "AFTER")
            await registered(sink, "AFTER")

            shutil.rmtree(root)  # missing for a while: said once, then retried
            await asyncio.sleep(1.0)
            root.mkdir()
            make_case(root, "LATER")
            await registered(sink, "LATER")

        assert sink.ready_ids() == ["BEFORE", "AFTER", "LATER"]
        assert len(intake_lines(caplog, "does not exist; retrying")) == 1
        assert len(intake_lines(caplog, "is back; watching it again")) == 1

    asyncio.run(scenario())


def test_a_missing_watch_folder_at_start_up_is_a_configuration_error(
    tmp_path: Path, mode: str
) -> None:
    async def scenario(path: Path) -> None:
        async with running(path, RecordingSink(), mode) as task:
            await task

    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"watch folder {missing} does not exist"):
        asyncio.run(scenario(missing))

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(ConfigError, match=f"watch folder {not_a_folder} is not a directory"):
        asyncio.run(scenario(not_a_folder))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quiescence": 0}, "quiescence must be positive"),
        ({"rescan_interval": -1}, "rescan interval must be positive"),
        ({"poll_delay_ms": 0}, "poll delay must be positive"),
        ({"ready_marker": "../READY"}, "ready marker '../READY' is not a plain file name"),
        ({"ready_marker": ".."}, "ready marker '..' is not a plain file name"),
        ({"ready_marker": "READY\n"}, "ready marker 'READY\\\\u000a' is not a plain file name"),
    ],
)
def test_unusable_options_are_configuration_errors(
    root: Path, options: dict[str, object], message: str
) -> None:
    settings: dict[str, object] = {"quiescence": Q, **options}
    sink = RecordingSink()
    with pytest.raises(ConfigError, match=message):
        Intake(root, is_known=sink.is_known, sink=sink, **settings)  # type: ignore[arg-type]
