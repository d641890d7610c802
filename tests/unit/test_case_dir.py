"""Case directories: names, fingerprints and the stability gate (pure core, real files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqi_es.adapters.watch.case_dir import (
    Fingerprint,
    Problem,
    ProblemKind,
    fingerprint,
    verify_unchanged,
)
from mqi_es.adapters.watch.case_names import (
    Accepted,
    NameRefused,
    is_temporary_name,
    show_name,
    validate_case_name,
)
from mqi_es.adapters.watch.stability import GONE, Held, NotYet, StabilityGate, Stable, Vanished

Q = 10.0  # quiescence used by the gate tests


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_pure_core_loads_no_watcher() -> None:
    probe = (
        "import sys, mqi_es.adapters.watch.case_dir; "
        "print(sorted({'watchfiles', 'asyncio'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class TestCaseNames:
    @pytest.mark.parametrize(
        "name", ["case_001", "P123-20240501", "Müller_2024", "plan v2", "a.b", "x" * 128, b"c1"]
    )
    def test_ordinary_names_are_accepted_as_case_ids(self, name: str | bytes) -> None:
        expected = name.decode() if isinstance(name, bytes) else name
        assert validate_case_name(name) == Accepted(expected)

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("", "name is empty"),
            ("x" * 129, "name is longer than 128 characters (129)"),
            ("a/b", "name contains a path separator ('/')"),
            ("a\\b", "name contains a path separator ('\\\\')"),
            ("..", "name contains '..'"),
            ("a..b", "name contains '..'"),
            (".hidden", "name starts with '.'"),
            ("-rf", "name starts with '-'"),
            ("a\nb", "name contains a control character (U+000A)"),
            ("a\x00b", "name contains a control character (U+0000)"),
            ("a\x1b[2Jb", "name contains a control character (U+001B)"),
            ("a\x85b", "name contains a control character (U+0085)"),
            ("\u202egnp.exe", "name contains a non-printable character (U+202E)"),
            ("a\u2028b", "name contains a non-printable character (U+2028)"),
            (" case", "name starts or ends with whitespace"),
            ("case ", "name starts or ends with whitespace"),
            ("plan\u00a0v2", "name contains a non-printable character (U+00A0)"),
            ("\ue000case", "name contains a non-printable character (U+E000)"),
            (b"bad\xff\xfe", "name is not valid UTF-8"),
            (os.fsdecode(b"bad\xff"), "name is not valid UTF-8"),
        ],
    )
    def test_unsafe_names_are_refused_with_a_specific_reason(
        self, name: str | bytes, reason: str
    ) -> None:
        verdict = validate_case_name(name)
        assert isinstance(verdict, NameRefused)
        assert verdict.reason == reason
        assert verdict.shown == show_name(name)

    def test_a_refused_name_is_shown_escaped_never_raw(self) -> None:
        assert show_name(b"bad\xff") == "bad\\xff"
        assert show_name(os.fsdecode(b"bad\xff")) == "bad\\xff"
        assert show_name("a\x1b[2Jb\n") == "a\\u001b[2Jb\\u000a"
        assert show_name("\u202eevil") == "\\u202eevil"
        assert show_name("back\\slash") == "back\\\\slash"
        assert show_name(b"\x85") != show_name("\x85")  # a raw byte is not a character
        assert show_name("Müller 2024") == "Müller 2024"

    @given(st.binary(min_size=1, max_size=40))
    def test_shown_names_are_printable(self, raw: bytes) -> None:
        assert show_name(raw).isprintable()

    @given(st.binary(max_size=12), st.binary(max_size=12))
    def test_distinct_names_are_shown_distinctly(self, one: bytes, other: bytes) -> None:
        if one != other:
            assert show_name(one) != show_name(other)

    @given(st.binary(min_size=1, max_size=200))
    def test_accepted_names_obey_every_rule(self, raw: bytes) -> None:
        verdict = validate_case_name(raw)
        if isinstance(verdict, Accepted):
            name = verdict.case_id
            assert name.encode() == raw
            assert 0 < len(name) <= 128
            assert "/" not in name and "\\" not in name and ".." not in name
            assert name[0] not in ".-" and name == name.strip()
            assert name.isprintable()
            assert show_name(raw) == name

    @given(st.binary(min_size=0, max_size=140))
    def test_the_printable_form_of_a_refused_name_is_never_a_case_id(self, raw: bytes) -> None:
        # So registered case ids and recorded refusals can share one "is it known?" lookup.
        verdict = validate_case_name(raw)
        if isinstance(verdict, NameRefused):
            assert isinstance(validate_case_name(verdict.shown), NameRefused)

    @pytest.mark.parametrize(
        ("name", "temporary"),
        [
            ("a.part", True),
            ("a.PART", True),
            ("a.tmp", True),
            ("a.filepart", True),
            ("a~", True),
            (".a", True),
            ("RP1.dcm", False),
            ("partial", False),
            ("tmp", False),
        ],
    )
    def test_temporary_names_are_recognised(self, name: str, temporary: bool) -> None:
        assert is_temporary_name(name) is temporary


class TestFingerprint:
    def test_counts_every_file_of_the_tree_but_not_directories(self, tmp_path: Path) -> None:
        write(tmp_path / "RP1.dcm", b"plan")
        write(tmp_path / "log" / "d1" / "PlanInfo.txt", b"12345")
        (tmp_path / "empty" / "deeper").mkdir(parents=True)

        fp = fingerprint(tmp_path)

        assert [e[0] for e in fp.entries] == ["RP1.dcm", "log/d1/PlanInfo.txt"]
        assert (fp.file_count, fp.total_bytes) == (2, 9)
        assert fp.problems == ()
        assert len(fp.digest) == 32

    def test_an_empty_directory_has_no_files(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        fp = fingerprint(tmp_path)
        assert (fp.file_count, fp.total_bytes, fp.entries) == (0, 0, ())

    def test_the_digest_follows_sizes_times_and_names(self, tmp_path: Path) -> None:
        data = write(tmp_path / "a" / "data.bin", b"0123")
        first = fingerprint(tmp_path)
        assert fingerprint(tmp_path).digest == first.digest

        os.utime(data, ns=(1, first.entries[0][2] + 1))
        touched = fingerprint(tmp_path)
        data.write_bytes(b"01234")
        grown = fingerprint(tmp_path)
        data.rename(data.with_name("other.bin"))
        renamed = fingerprint(tmp_path)

        digests = {first.digest, touched.digest, grown.digest, renamed.digest}
        assert len(digests) == 4

    def test_temporary_names_anywhere_are_problems(self, tmp_path: Path) -> None:
        write(tmp_path / "RP1.dcm")
        write(tmp_path / "a" / "CT1.dcm.part")
        write(tmp_path / "a" / "b" / "notes~")
        write(tmp_path / ".DS_Store")
        write(tmp_path / "x.tmp" / "inner.dcm")

        fp = fingerprint(tmp_path)

        assert fp.problems == tuple(
            Problem(ProblemKind.TEMPORARY_NAME, p)
            for p in [".DS_Store", "a/CT1.dcm.part", "a/b/notes~", "x.tmp"]
        )
        assert fp.file_count == 5  # still files: a change to them must change the digest

    def test_a_symlink_leaving_the_case_is_reported_and_not_followed(self, tmp_path: Path) -> None:
        outside = write(tmp_path / "outside.dat", b"secret data")
        case = tmp_path / "case"
        write(case / "RP1.dcm", b"plan")
        (case / "sub").mkdir()
        (case / "sub" / "link").symlink_to(outside)
        (case / "up").symlink_to("../outside.dat")

        fp = fingerprint(case)

        assert fp.problems == (
            Problem(ProblemKind.SYMLINK_OUTSIDE, "sub/link"),
            Problem(ProblemKind.SYMLINK_OUTSIDE, "up"),
        )
        assert (fp.file_count, fp.total_bytes) == (1, 4)

    def test_a_symlink_to_a_file_inside_counts_as_that_file(self, tmp_path: Path) -> None:
        write(tmp_path / "data" / "RP1.dcm", b"plan")
        (tmp_path / "alias.dcm").symlink_to("data/RP1.dcm")

        fp = fingerprint(tmp_path)

        assert fp.problems == ()
        assert [(e[0], e[1]) for e in fp.entries] == [("alias.dcm", 4), ("data/RP1.dcm", 4)]

    def test_broken_and_directory_symlinks_are_problems(self, tmp_path: Path) -> None:
        write(tmp_path / "d" / "f")
        (tmp_path / "dangling").symlink_to("missing")
        (tmp_path / "loop").symlink_to(".")
        (tmp_path / "d" / "again").symlink_to("../d")

        fp = fingerprint(tmp_path)

        assert fp.problems == (
            Problem(ProblemKind.SYMLINK_BROKEN, "dangling"),
            Problem(ProblemKind.SYMLINK_TO_DIRECTORY, "d/again"),
            Problem(ProblemKind.SYMLINK_TO_DIRECTORY, "loop"),
        )

    def test_a_fifo_is_reported_without_being_opened(self, tmp_path: Path) -> None:
        write(tmp_path / "RP1.dcm")
        os.mkfifo(tmp_path / "pipe")  # opening it for reading would block forever

        fp = fingerprint(tmp_path)

        assert fp.problems == (Problem(ProblemKind.SPECIAL_FILE, "pipe"),)
        assert fp.file_count == 1

    def test_file_names_that_are_not_utf8_are_fingerprinted_and_hold_the_case(
        self, tmp_path: Path
    ) -> None:
        write(Path(os.fsdecode(os.fsencode(tmp_path) + b"/scan\xff.dcm")), b"abc")
        fp = fingerprint(tmp_path)
        assert (fp.file_count, fp.total_bytes) == (1, 3)
        assert show_name(fp.entries[0][0]) == "scan\\xff.dcm"
        assert [p.kind for p in fp.problems] == [ProblemKind.UNSAFE_NAME]  # an upload refuses it

    def test_a_file_name_with_a_control_character_holds_the_case(self, tmp_path: Path) -> None:
        write(tmp_path / "sub" / "new\nline.dcm", b"abc")
        assert fingerprint(tmp_path).problems == (
            Problem(ProblemKind.UNSAFE_NAME, "sub/new\nline.dcm"),
        )

    def test_the_ready_marker_is_left_out_of_the_data(self, tmp_path: Path) -> None:
        write(tmp_path / "RP1.dcm", b"plan")
        before = fingerprint(tmp_path, ready_marker="_CASE_READY")
        write(tmp_path / "_CASE_READY", b"")
        write(tmp_path / "sub" / "_CASE_READY", b"!")  # only the top-level marker counts

        after = fingerprint(tmp_path, ready_marker="_CASE_READY")

        assert not before.marker_present and after.marker_present
        assert after.file_count == 2
        assert "_CASE_READY" not in [e[0] for e in after.entries]

    def test_a_dot_named_marker_is_not_a_temporary_file(self, tmp_path: Path) -> None:
        write(tmp_path / "RP1.dcm")
        write(tmp_path / ".ready")
        fp = fingerprint(tmp_path, ready_marker=".ready")
        assert fp.marker_present and fp.problems == ()

    def test_a_missing_or_non_directory_path_is_an_error(self, tmp_path: Path) -> None:
        write(tmp_path / "file")
        (tmp_path / "dirlink").symlink_to(tmp_path)
        with pytest.raises(FileNotFoundError):
            fingerprint(tmp_path / "missing")
        with pytest.raises(NotADirectoryError):
            fingerprint(tmp_path / "file")
        with pytest.raises(NotADirectoryError):
            fingerprint(tmp_path / "dirlink")

    def test_verify_unchanged_detects_a_case_edited_after_registration(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path / "RP1.dcm", b"plan")
        registered = fingerprint(tmp_path, ready_marker="_CASE_READY").digest
        write(tmp_path / "_CASE_READY")
        assert verify_unchanged(tmp_path, registered, ready_marker="_CASE_READY")

        write(tmp_path / "late.dcm")
        assert not verify_unchanged(tmp_path, registered, ready_marker="_CASE_READY")

        with pytest.raises(FileNotFoundError):
            verify_unchanged(tmp_path / "gone", registered)


# --- the stability gate --------------------------------------------------------------------


def fake_fingerprint(
    label: str, *, files: int = 1, problems: tuple[Problem, ...] = ()
) -> Fingerprint:
    entries = tuple((f"{label}/{i}", 10, i) for i in range(files))
    return Fingerprint(
        entries=entries,
        file_count=files,
        total_bytes=10 * files,
        digest=f"digest-{label}-{files}",
        problems=problems,
        marker_present=False,
    )


CLEAN = fake_fingerprint("a")
GROWN = fake_fingerprint("a", files=2)
COPYING = fake_fingerprint("a", problems=(Problem(ProblemKind.TEMPORARY_NAME, "b.part"),))
OUTSIDE = fake_fingerprint("a", problems=(Problem(ProblemKind.SYMLINK_OUTSIDE, "ln"),))
EMPTY = fake_fingerprint("e", files=0)


def with_marker(fp: Fingerprint) -> Fingerprint:
    return Fingerprint(fp.entries, fp.file_count, fp.total_bytes, fp.digest, fp.problems, True)


class TestStabilityGate:
    gate = StabilityGate(Q)

    def test_a_first_observation_is_never_enough(self) -> None:
        state, verdict = self.gate.observe(None, 100.0, CLEAN)
        assert verdict == NotYet(100.0 + Q)
        assert state is not None and state.since == 100.0

    def test_the_same_fingerprint_over_a_full_window_is_stable(self) -> None:
        state, _ = self.gate.observe(None, 100.0, CLEAN)
        state, verdict = self.gate.observe(state, 100.0 + Q / 2, CLEAN)
        assert verdict == NotYet(100.0 + Q)
        _, verdict = self.gate.observe(state, 100.0 + Q, CLEAN)
        assert verdict == Stable(CLEAN)

    def test_a_changed_fingerprint_restarts_the_window(self) -> None:
        state, _ = self.gate.observe(None, 100.0, CLEAN)
        state, verdict = self.gate.observe(state, 109.0, GROWN)
        assert verdict == NotYet(109.0 + Q)
        _, verdict = self.gate.observe(state, 100.0 + Q, GROWN)
        assert verdict == NotYet(109.0 + Q)

    def test_a_change_signal_restarts_the_window_even_if_the_fingerprint_did_not_move(
        self,
    ) -> None:
        state, _ = self.gate.observe(None, 100.0, CLEAN)
        state, verdict = self.gate.observe(state, 115.0, CLEAN, last_change=108.0)
        assert verdict == NotYet(108.0 + Q)
        _, verdict = self.gate.observe(state, 118.0, CLEAN, last_change=108.0)
        assert verdict == Stable(CLEAN)

    def test_quiet_is_verified_only_up_to_the_start_of_the_scan(self) -> None:
        state, _ = self.gate.observe(None, 100.0, CLEAN)
        _, verdict = self.gate.observe(state, 100.0 + Q + 1, CLEAN, scan_began=100.0 + Q - 1)
        assert isinstance(verdict, NotYet)

    def test_a_vanished_candidate_leaves_no_state(self) -> None:
        state, _ = self.gate.observe(None, 100.0, CLEAN)
        assert self.gate.observe(state, 101.0, GONE) == (None, Vanished())

    @pytest.mark.parametrize(
        ("seen", "reason"),
        [
            (COPYING, "temporary files present"),
            (OUTSIDE, "symlink points outside the case"),
            (EMPTY, "no files"),
        ],
    )
    def test_a_quiet_but_unusable_candidate_is_held(self, seen: Fingerprint, reason: str) -> None:
        state, verdict = self.gate.observe(None, 100.0, seen)
        assert isinstance(verdict, NotYet)  # nothing is said while a copy may still be moving
        _, verdict = self.gate.observe(state, 100.0 + Q, seen)
        assert verdict == Held(reason, seen)

    def test_the_most_serious_problem_names_the_hold(self) -> None:
        both = fake_fingerprint("a", problems=(*OUTSIDE.problems, *COPYING.problems))
        state, _ = self.gate.observe(None, 0.0, both)
        _, verdict = self.gate.observe(state, Q, both)
        assert verdict == Held("symlink points outside the case", both)

    def test_in_marker_mode_a_case_waits_for_its_marker(self) -> None:
        gate = StabilityGate(Q, ready_marker="_CASE_READY")
        state, _ = gate.observe(None, 0.0, CLEAN)
        state, verdict = gate.observe(state, Q, CLEAN)
        assert verdict == Held("waiting for ready marker '_CASE_READY'", CLEAN)

        # The marker is not data: its arrival does not restart a window that is already full.
        _, verdict = gate.observe(state, Q + 1, with_marker(CLEAN))
        assert verdict == Stable(with_marker(CLEAN))

    def test_in_marker_mode_the_marker_alone_does_not_make_a_moving_case_stable(self) -> None:
        gate = StabilityGate(Q, ready_marker="_CASE_READY")
        state, _ = gate.observe(None, 0.0, with_marker(CLEAN))
        state, verdict = gate.observe(state, Q - 1, with_marker(GROWN))
        assert verdict == NotYet(Q - 1 + Q)

    @pytest.mark.parametrize("quiescence", [0.0, -1.0, float("nan")])
    def test_the_quiet_period_must_be_positive(self, quiescence: float) -> None:
        with pytest.raises(ValueError, match="quiescence"):
            StabilityGate(quiescence)


# One step of a random history: time advance, what the scan saw, how long the scan took, and
# whether a watch event fired just before it.
POOL = [CLEAN, GROWN, COPYING, EMPTY, with_marker(CLEAN), with_marker(GROWN), GONE]
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.5 * Q),
        st.sampled_from(POOL),
        st.sampled_from([0.0, 0.0, 0.1 * Q, 0.6 * Q]),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@given(steps, st.sampled_from([None, "_CASE_READY"]))
def test_random_histories_never_judge_a_moving_or_unusable_case_stable(
    history: list[tuple[float, Fingerprint, float, bool]], ready_marker: str | None
) -> None:
    gate = StabilityGate(Q, ready_marker=ready_marker)
    state = None
    now = 0.0
    signals: list[float] = []
    seen_since_gone: list[tuple[float, Fingerprint]] = []  # (finished, fingerprint)
    for advance, seen, scan_time, signalled in history:
        now += advance
        began = now - scan_time
        if signalled:
            signals.append(began)
        state, verdict = gate.observe(
            state, now, seen, signals[-1] if signals else None, scan_began=began
        )
        if seen is GONE:
            assert (state, verdict) == (None, Vanished())
            seen_since_gone.clear()
            continue
        assert isinstance(seen, Fingerprint)
        window_start = began - Q
        earlier = seen_since_gone
        seen_since_gone = [*seen_since_gone, (now, seen)]
        if isinstance(verdict, NotYet):
            assert verdict.recheck_at > began
        if not isinstance(verdict, Stable):
            continue
        # Never stable while anything changed within the last window...
        assert all(fp.same_as(seen) for t, fp in earlier if t > window_start)
        assert all(t <= window_start for t in signals)
        # ...and the same fingerprint was already seen at the start of that window.
        before = [fp for t, fp in earlier if t <= window_start]
        assert before and before[-1].same_as(seen)
        # Never stable while unusable.
        assert seen.problems == () and seen.file_count >= 1
        assert ready_marker is None or seen.marker_present


@given(st.lists(st.floats(min_value=0.0, max_value=Q / 3), min_size=1, max_size=30))
def test_a_clean_case_observed_unchanged_over_a_full_window_is_stable(
    gaps: list[float],
) -> None:
    gate = StabilityGate(Q)
    state, _ = gate.observe(None, 0.0, CLEAN)
    now = 0.0
    for gap in gaps:
        now += gap
        state, _ = gate.observe(state, now, CLEAN)
    _, verdict = gate.observe(state, max(now, Q), CLEAN)
    assert verdict == Stable(CLEAN)
