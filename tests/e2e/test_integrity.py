"""`mqi run` end to end: what runs on the node is what was registered, byte for byte; a case
held at upload time is released once fixed; names that look the same are one case."""

from __future__ import annotations

import hashlib
import os
import time
import unicodedata
from pathlib import Path

import pytest

from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import (
    DaemonProcess,
    all_ended,
    cases,
    mqi_json,
    remote_labels,
    wait_for,
)

MIB = 1024 * 1024


@pytest.fixture
def site(tmp_path: Path, sandbox_node):
    return write_config(tmp_path / "site", sandbox_node), sandbox_node


def events(config: Path, case_id: str) -> list[dict]:
    return [e for e in mqi_json(config, "history", case_id) if e["subject"] == f"case {case_id}"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_large_file_changed_while_it_uploads_is_held_then_sent_once_as_it_is_now(site):
    config, node = site
    incoming = config.parent / "incoming"
    case = drop_case(incoming, "big-ct", SUCCEEDS)
    ct = case / "CT.raw"
    with ct.open("wb") as file:
        for _ in range(256):
            file.write(os.urandom(MIB))
    daemon = DaemonProcess(config)
    try:
        remote = node.home / "mqi_cases" / "big-ct"

        def upload_under_way() -> bool:
            parts = list(remote.glob("attempt-1.part-*/CT.raw")) if remote.exists() else []
            return any(p.stat().st_size > 0 for p in parts)

        wait_for(upload_under_way, timeout=60, daemon=daemon, interval=0.01)
        node.freeze_ssh()  # hold the upload where it is while the file changes under it
        with ct.open("r+b") as file:
            file.seek(200 * MIB)
            file.write(b"a later export of the same CT" * 1000)
        node.thaw_ssh()
        found = wait_for(all_ended(config, ["big-ct"]), timeout=120, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert found["big-ct"]["state"] == "completed"
    trail = events(config, "big-ct")
    names = [e["event"] for e in trail]
    held = next(e for e in trail if e["event"] == "HeldBack")
    assert "changed" in held["reason"], held
    assert names.index("HeldBack") < names.index("Restabilized") < names.index("Uploaded")
    assert names.count("Uploaded") == 1 and names.count("TaskEnqueued") == 1
    (uploaded,) = (e for e in trail if e["event"] == "Uploaded")
    digests = {path: digest for path, _, digest in uploaded["details"]["digests"]}
    assert digests["CT.raw"] == sha256(ct)  # what is recorded is the file as it is now
    sent = remote / f"attempt-{uploaded['details']['attempt']}" / "CT.raw"
    assert sha256(sent) == sha256(ct)  # and so is what ran
    assert len(remote_labels(node)) == 1


def test_a_case_held_at_upload_time_is_released_once_the_problem_is_gone(site):
    config, node = site
    incoming = config.parent / "incoming"
    for group in ("gpu0", "gpu1"):  # someone else's work holds both GPUs meanwhile
        added = node.pueue("add", "--print-task-id", "--group", group, "--", "sleep 600")
        assert added.returncode == 0
    daemon = DaemonProcess(config)
    try:
        case = drop_case(incoming, "later-fifo", SUCCEEDS)
        wait_for(lambda: cases(config).get("later-fifo"), timeout=30, daemon=daemon)
        os.mkfifo(case / "beam1" / "stream")  # after registration, before the upload
        for task_id in ("0", "1"):
            assert node.pueue("kill", task_id).returncode == 0
        held = wait_for(
            lambda: (c := cases(config)["later-fifo"])["state"] == "held" and c,
            timeout=30, daemon=daemon,
        )  # fmt: skip
        assert "special file" in held["reason"] or "neither a regular file" in held["reason"]
        time.sleep(2)  # held it stays while the FIFO is there
        assert cases(config)["later-fifo"]["state"] == "held"
        (case / "beam1" / "stream").unlink()
        found = wait_for(all_ended(config, ["later-fifo"]), timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert found["later-fifo"]["state"] == "completed"
    names = [e["event"] for e in events(config, "later-fifo")]
    assert names.count("HeldBack") == 1 and names.count("Restabilized") == 1


def test_two_folders_whose_names_differ_only_by_normalisation_are_one_case(site):
    config, node = site
    incoming = config.parent / "incoming"
    composed = unicodedata.normalize("NFC", "Müller plan")
    decomposed = unicodedata.normalize("NFD", "Müller plan")
    assert composed != decomposed
    daemon = DaemonProcess(config)
    try:
        drop_case(incoming, composed, SUCCEEDS)
        wait_for(all_ended(config, [composed]), timeout=60, daemon=daemon)
        drop_case(incoming, decomposed, SUCCEEDS)

        def refused():
            status = mqi_json(config, "status")
            return [r for r in status["refused_folders"] if r["name_repr"] == decomposed]

        (refusal,) = wait_for(refused, timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert f"differs from that of case {composed!r} only in Unicode form" in refusal["reason"]
    assert list(cases(config)) == [composed]
    assert len(remote_labels(node)) == 1
