"""`mqi demo` as a newcomer runs it: a real process, then nothing of it left running."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

MQI = str(Path(sys.executable).with_name("mqi"))


def processes_of(folder: Path) -> list[str]:
    """Command lines of the live processes that name ``folder`` or run inside it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(cmdline)
    return found


def start_demo(folder: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    output = folder / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "MQI_CONFIG"} | {"COLUMNS": "200"}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [MQI, "demo", *args], cwd=folder, stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    return process, output


def test_the_demo_ends_three_cases_as_expected_and_leaves_nothing_running(tmp_path: Path):
    process, output = start_demo(tmp_path)
    code = process.wait(timeout=90)
    text = output.read_text()
    assert code == 0, text
    for expected in (
        "DEMO001_prostate   completed                      as expected",
        "DEMO002_head-neck  failed (case_failure, exit 2)  as expected",
        "DEMO003_lung       failed (timeout)               as expected",
        "demo passed",
    ):
        assert expected in text, text
    assert "History of case DEMO003_lung" in text and "KillRequested" in text
    (root,) = (tmp_path / "var").glob("demo-*")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    dose = root / "var/results/DEMO001_prostate/attempt-1/output/RD_beam1.dcm"
    assert dose.read_text().startswith("RT Dose, beam 1, for ")
    assert stat.S_IMODE(dose.stat().st_mode) & 0o077 == 0
    assert processes_of(tmp_path) == []


def test_ctrl_c_stops_the_daemon_and_the_node(tmp_path: Path):
    process, output = start_demo(tmp_path)
    deadline = time.monotonic() + 60
    while "DEMO003_lung       running on" not in output.read_text():
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)
    assert any("mqi_es.sandbox.pueued" in line for line in processes_of(tmp_path))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, output.read_text()
    assert "interrupted: the daemon and the sandbox node are stopped" in output.read_text()
    assert processes_of(tmp_path) == []


def test_keep_leaves_a_daemon_that_other_commands_reach_until_ctrl_c(tmp_path: Path):
    process, output = start_demo(tmp_path, "--keep")
    deadline = time.monotonic() + 60
    while "Stop everything with Ctrl-C here." not in output.read_text():
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)
    (export,) = [x for x in output.read_text().splitlines() if "export MQI_CONFIG=" in x]
    env = {**os.environ, "MQI_CONFIG": export.split("=", 1)[1]}
    status = subprocess.run(
        [MQI, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert '"daemon": "pid ' in status.stdout and '"failed": 2' in status.stdout, status
    retry = subprocess.run(
        [MQI, "retry", "DEMO002_head-neck"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "a new attempt will be made" in retry.stdout, retry
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, output.read_text()
    assert processes_of(tmp_path) == []
