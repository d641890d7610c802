"""`mqi web` through Starlette's test client: the token on every page and API call but
/healthz, the API as the CLI's --json, paging, the login cookie, `/metrics` as Prometheus
parses it."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from typer.testing import CliRunner

from cli.context import load_context
from cli.main import app as mqi_app
from cli.web.app import SECURITY_HEADERS, create_app
from cli.web.auth import COOKIE, SESSION_SECONDS, Gate, web_token
from cli.web.data import Dashboard
from cli.web.server import web_server
from mqi_es.core.errors import ConfigError
from mqi_es.core.states import FailureCategory
from tests.fixtures.receivers import free_port

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "incoming").mkdir()
    (tmp_path / "mqi.yaml").write_text(
        "scanner:\n  watch_path: incoming\n"
        "database:\n  path: var/events.sqlite\n  views_path: var/views.sqlite\n"
        "web:\n  token_file: web-token.txt\n"
    )
    (tmp_path / "web-token.txt").write_text(TOKEN + "\n")
    context = load_context(str(tmp_path / "mqi.yaml"))
    ledger = context.ledger
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    ledger.register_slot("n1", "gpu0", actor="daemon")
    for i in range(120):
        ledger.detect_case(f"patient-{i:03d}", file_count=2, total_bytes=10, fingerprint="f",
                           actor="daemon")  # fmt: skip
    ledger.start_submission("patient-007", host="n1", slot="gpu0", remote_base_dir="~",
                            actor="daemon")  # fmt: skip
    ledger.record_enqueued("patient-007", attempt=1, task_id=1, created_at=NOW, actor="daemon")
    ledger.fail_case(
        "patient-007", category=FailureCategory.CASE_FAILURE, actor="daemon",
        reason="task 1 exited 2", exit_code=2, log_tail="dose grid <b>broke</b>",
    )  # fmt: skip
    context.catch_up()
    return tmp_path


def client(site: Path, **kwargs) -> TestClient:
    context = load_context(str(site / "mqi.yaml"))
    return TestClient(create_app(Dashboard(context), TOKEN), **kwargs)


def authorized(site: Path) -> TestClient:
    return client(site, headers={"Authorization": f"Bearer {TOKEN}"})


def cli_json(site: Path, *args: str):
    result = CliRunner().invoke(mqi_app, ["--config", str(site / "mqi.yaml"), *args, "--json"])
    assert result.exit_code in (0, 3), result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    "path", ["/", "/cases", "/cases/patient-001", "/slots", "/alarms", "/api/status",
             "/api/cases", "/api/cases/patient-001", "/api/cases/patient-001/history",
             "/api/slots", "/api/alarms", "/metrics"],
)  # fmt: skip
def test_every_page_and_api_call_needs_the_token(site, path):
    anonymous = client(site)
    assert anonymous.get(path, follow_redirects=False).status_code == 401
    wrong = anonymous.get(path, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    forging = client(site)
    forging.cookies.set(COOKIE, TOKEN)  # the token is not the session
    assert forging.get(path).status_code == 401
    assert authorized(site).get(path).status_code == 200


def test_a_refused_page_shows_the_login_form_and_the_api_says_why(site):
    page = client(site).get("/cases")
    assert page.status_code == 401 and 'name="token"' in page.text
    api = client(site).get("/api/status")
    assert api.json() == {"error": "the token is needed"}
    assert api.headers["www-authenticate"].startswith("Bearer")


def test_healthz_needs_no_token_and_says_503_while_no_daemon_runs(site):
    answer = client(site).get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {"healthy": False, "detail": "no daemon runs"}


def test_the_login_form_sets_an_http_only_strict_cookie_that_is_not_the_token(site):
    browser = client(site)
    assert browser.post("/login", data={"token": "guess", "next": "/"}).status_code == 401
    logged_in = browser.post("/login", data={"token": TOKEN, "next": "/cases?state=failed"},
                             follow_redirects=False)  # fmt: skip
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == "/cases?state=failed"
    cookie = logged_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert browser.get("/cases").status_code == 200  # the cookie is kept by the client
    browser.post("/logout")
    assert browser.get("/cases").status_code == 401


@pytest.mark.parametrize("where", ["//evil.example/x", "https://evil.example/", "\\\\evil", ""])
def test_after_login_only_a_path_of_this_site(site, where):
    answer = client(site).post("/login", data={"token": TOKEN, "next": where},
                               follow_redirects=False)  # fmt: skip
    assert answer.headers["location"] == "/"


def test_every_answer_carries_the_security_headers(site):
    for answer in (client(site).get("/"), authorized(site).get("/api/status")):
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value


def test_the_api_answers_as_the_clis_json(site):
    api = authorized(site)
    status = api.get("/api/status").json()
    assert status == cli_json(site, "status")
    assert status["cases"]["waiting"] == 119 and status["cases"]["failed"] == 1
    assert api.get("/api/slots").json() == cli_json(site, "gpus")
    assert api.get("/api/alarms").json() == cli_json(site, "alarms")
    history = api.get("/api/cases/patient-007/history").json()
    assert history == cli_json(site, "history", "patient-007")
    case = api.get("/api/cases/patient-007").json()
    by_cli = {c["case_id"]: c for c in cli_json(site, "cases")}
    assert case == by_cli["patient-007"]
    assert api.get("/api/cases/nobody").status_code == 404
    assert api.get("/api/cases/nobody/history").status_code == 404


def test_cases_come_newest_first_in_pages_filtered_by_state_and_searched_by_id(site):
    api = authorized(site)
    first = api.get("/api/cases").json()
    assert first["total"] == 120 and len(first["cases"]) == 50
    assert [c["case_id"] for c in first["cases"][:2]] == ["patient-119", "patient-118"]
    second = api.get(f"/api/cases?before={first['next_before']}").json()
    third = api.get(f"/api/cases?before={second['next_before']}").json()
    assert len(second["cases"]) == 50 and len(third["cases"]) == 20
    assert third["next_before"] is None and third["cases"][-1]["case_id"] == "patient-000"
    every = [c["case_id"] for page in (first, second, third) for c in page["cases"]]
    assert len(set(every)) == 120
    failed = api.get("/api/cases?state=failed").json()
    assert [c["case_id"] for c in failed["cases"]] == ["patient-007"]
    found = api.get("/api/cases?q=atient-11").json()  # a substring, not a pattern
    assert found["total"] == 10
    assert api.get("/api/cases?q=%25").json()["total"] == 0  # no LIKE wildcards


def test_pages_show_the_cases_and_escape_what_they_show(site):
    api = authorized(site)
    overview = api.get("/").text
    assert 'data-state="waiting">119<' in overview and 'data-state="failed">1<' in overview
    page = api.get("/cases?state=failed").text
    assert "patient-007" in page and "patient-008" not in page
    story = api.get("/cases/patient-007").text
    assert "CaseFailed" in story or "Failed" in story
    assert "dose grid &lt;b&gt;broke&lt;/b&gt;" in story and "<b>broke</b>" not in story
    fragment = api.get("/cases/patient-007?fragment=1").text
    assert "<html" not in fragment and "task 1 exited 2" in fragment
    assert "No case named" in api.get("/cases/nobody").text


def test_metrics_parse_with_prometheus_own_parser(site):
    text = authorized(site).get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    cases = {s.labels["state"]: s.value for s in families["mqi_cases"].samples}
    assert cases["waiting"] == 119 and cases["failed"] == 1 and cases["running"] == 0
    for name in (
        "mqi_open_alarms", "mqi_notifications_due", "mqi_last_cycle_timestamp_seconds",
        "mqi_transitions", "mqi_attempts", "mqi_cycle_duration_seconds",
        "mqi_poll_duration_seconds", "mqi_poll_failures", "mqi_transferred_bytes",
    ):  # fmt: skip
        assert name in families, name


def test_a_made_token_is_owner_only_and_kept(tmp_path):
    first = web_token(None, tmp_path)
    assert web_token(None, tmp_path) == first and len(first) >= 40
    assert stat.S_IMODE((tmp_path / "web.token").stat().st_mode) == 0o600
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        web_token(tmp_path / "empty", tmp_path)


def test_no_address_beyond_loopback_without_a_token_file_and_no_port_taken_twice(tmp_path):
    (tmp_path / "mqi.yaml").write_text("database:\n  path: var/events.sqlite\n")
    context = load_context(str(tmp_path / "mqi.yaml"))
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0 is reachable from other machines"):
        web_server(context, "0.0.0.0", 8080)
    port = free_port()
    server = web_server(context, "127.0.0.1", port)
    try:
        assert server.config.host == "127.0.0.1"
        assert os.path.exists(tmp_path / "var" / "web.token")
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            web_server(context, "127.0.0.1", port)  # before any work: not a sys.exit later
    finally:
        server.bound.close()


def test_a_short_token_file_is_refused(tmp_path):
    (tmp_path / "weak").write_text("letmein\n")
    with pytest.raises(ConfigError, match="at least 16"):
        web_token(tmp_path / "weak", tmp_path)


def test_a_login_expires_and_a_forged_or_old_cookie_is_refused():
    now = [1_000_000.0]
    gate = Gate(TOKEN, clock=lambda: now[0])
    cookie = gate.session()
    assert gate.admits(None, cookie)
    now[0] += SESSION_SECONDS + 1
    assert not gate.admits(None, cookie)  # a working day later: log in again
    issued, _, signature = gate.session().partition(".")
    assert not gate.admits(None, f"{int(issued) + 3600}.{signature}")  # its time moved
    rotated = Gate("another-token-of-the-same-site", clock=lambda: now[0])
    assert not rotated.admits(None, gate.session())  # a rotated token ends every session


def test_a_page_size_is_bounded_whatever_is_asked(site):
    api = authorized(site)
    assert len(api.get("/api/cases?limit=-2").json()["cases"]) == 1
    assert len(api.get("/api/cases?limit=100000").json()["cases"]) == 120  # at most 500
    assert api.get(f"/api/cases?before={10**30}").status_code == 200
