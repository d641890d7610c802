"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against
`mqi demo --keep`: refused without the token, the overview and the cases page show the
demo's cases, a case page shows its history, and a page follows a change without being
reloaded."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_es.config.loader import load_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MQI = str(Path(sys.executable).with_name("mqi"))
# No connection anywhere but the page's own server (the machine's network is closed).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


class Demo:
    def __init__(self, folder: Path) -> None:
        self.out = folder / "demo.out"
        self._file = self.out.open("wb")
        self.process = subprocess.Popen([MQI, "demo", "--keep"], cwd=folder, stdout=self._file,
                                        stderr=subprocess.STDOUT)  # fmt: skip

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the demo never said {pattern!r}:\n{self.text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._file.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_the_dashboard_shows_the_demo_and_follows_it(demo: Demo) -> None:
    from playwright.sync_api import expect, sync_playwright

    found = demo.wait_for(r"The dashboard: (http://127\.0\.0\.1:\d+/) \(its token: (\S+)\)")
    url, token = found[1], Path(found[2]).read_text().strip()
    config = load_config(Path(shlex.split(demo.wait_for(r"export MQI_CONFIG=(.+)")[1])[0])).config
    incoming = config.scanner.watch_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            refused = page.goto(url + "cases")
            assert refused is not None and refused.status == 401
            assert page.request.get(url + "api/status").status == 401
            wrong = {"Authorization": "Bearer wrong"}
            assert page.request.get(url + "api/status", headers=wrong).status == 401

            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_url(url + "cases")
            for case_id in ("DEMO001_prostate", "DEMO002_head-neck", "DEMO003_lung"):
                expect(page.locator(f'tr[data-case="{case_id}"]')).to_be_visible()
            expect(page.locator('tr[data-case="DEMO003_lung"]')).to_contain_text("timeout")

            page.goto(url)
            expect(page.locator('td[data-state="completed"]')).to_have_text("1")
            expect(page.locator('td[data-state="failed"]')).to_have_text("2")

            page.goto(url + "cases/DEMO003_lung")
            timeline = page.locator("#timeline")
            for event in ("Detected", "SubmissionStarted", "TaskStarted", "KillRequested",
                          "Failed"):  # fmt: skip
                expect(timeline).to_contain_text(event)

            page.goto(url + "cases")
            page.evaluate("window.notReloaded = true")
            shutil.copytree(incoming / "DEMO001_prostate", incoming / ".DEMO004_copy.part")
            (incoming / ".DEMO004_copy.part").rename(incoming / "DEMO004_copy")
            arrived = page.locator('tr[data-case="DEMO004_copy"]')
            expect(arrived).to_be_visible(timeout=60_000)
            expect(arrived).to_contain_text("completed", timeout=60_000)
            assert page.evaluate("window.notReloaded") is True  # updated in place
        finally:
            browser.close()
    assert demo.stop() in (0, 130), demo.text()
