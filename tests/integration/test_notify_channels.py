"""The webhook and email channels against real receivers on loopback: what arrives, and what
each fault (refused, slow, rejected, down and back) turns into."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_es.adapters.notify import webhook
from mqi_es.adapters.notify.email import Email
from mqi_es.adapters.notify.webhook import Webhook
from mqi_es.core.notices import Delivered, Delivery, NotDelivered, Notice, NoticeKind
from tests.fixtures.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, SmtpReceiver

FAILED = Notice(
    kind=NoticeKind.CASE_FAILED,
    dedup_key="case_failed:case-0042",
    at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    reason="moqui exited with status 3",
    case_id="case-0042",
    state="failed",
    category="simulation",
    host="gpu1",
    log_tail="loading phantom\nbeam 1 of 2: 100%\nCUDA error: out of memory\n",
)
SENDER = "mqi@clinic.example"
TO = ("physicist@clinic.example",)


def send(channel: Webhook | Email, notice: Notice = FAILED) -> Delivery:
    return asyncio.run(channel.send(notice))


def token_file(folder: Path, token: str) -> Path:
    path = folder / "webhook.token"
    path.write_text(f"{token}\n")
    return path


# --- webhook -------------------------------------------------------------------------------


def test_webhook_posts_the_notice_as_json_with_the_bearer_token(
    http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    hook = Webhook(http_receiver.url, token_file=token_file(tmp_path, "s3cret-token"))

    assert send(hook) == Delivered("HTTP 204")

    [request] = http_receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/mqi")
    assert request.headers["Authorization"] == "Bearer s3cret-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "mqi-communicator"
    assert request.json == {
        "kind": "case_failed",
        "case_id": "case-0042",
        "state": "failed",
        "category": "simulation",
        "reason": "moqui exited with status 3",
        "host": "gpu1",
        "alarm_id": None,
        "at": "2025-03-04T05:06:07Z",
        "dedup_key": "case_failed:case-0042",
    }


def test_webhook_without_a_token_file_sends_no_authorization(http_receiver: HttpReceiver) -> None:
    http_receiver.status = 200

    assert send(Webhook(http_receiver.url)) == Delivered("HTTP 200")
    assert "Authorization" not in http_receiver.requests[0].headers


def test_webhook_reads_a_rotated_token_at_the_next_send(
    http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    path = token_file(tmp_path, "first")
    hook = Webhook(http_receiver.url, token_file=path)

    assert isinstance(send(hook), Delivered)
    path.write_text("  second\n")
    assert isinstance(send(hook), Delivered)

    first, second = http_receiver.wait_for(2)
    assert first.headers["Authorization"] == "Bearer first"
    assert second.headers["Authorization"] == "Bearer second"


@pytest.mark.parametrize("content", [None, "", " \n"], ids=["missing", "empty", "blank"])
def test_webhook_without_a_usable_token_sends_nothing(
    http_receiver: HttpReceiver, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "webhook.token"
    if content is not None:
        path.write_text(content)

    outcome = send(Webhook(http_receiver.url, token_file=path))

    assert isinstance(outcome, NotDelivered)
    assert str(path) in outcome.detail
    assert http_receiver.requests == []


def test_webhook_error_answer_is_not_delivered_with_its_first_line(
    http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    http_receiver.status = 500
    http_receiver.answer = b"internal error\nsee the receiver's log " + b"x" * 500
    hook = Webhook(http_receiver.url, token_file=token_file(tmp_path, "s3cret-token"))

    outcome = send(hook)

    assert isinstance(outcome, NotDelivered)
    assert outcome.detail.startswith("HTTP 500: internal error see the receiver's log x")
    assert len(outcome.detail) == len("HTTP 500: ") + webhook.ANSWER_CHARS
    assert "s3cret-token" not in outcome.detail
    assert len(http_receiver.requests) == 1


def test_webhook_receiver_down_then_back(http_receiver: HttpReceiver) -> None:
    hook = Webhook(http_receiver.url, timeout_seconds=2)
    http_receiver.stop()

    assert send(hook) == NotDelivered("connection refused")

    http_receiver.start()
    assert send(hook) == Delivered("HTTP 204")
    assert len(http_receiver.requests) == 1


def test_webhook_slow_receiver_times_out(http_receiver: HttpReceiver) -> None:
    http_receiver.delay = 3.0
    hook = Webhook(http_receiver.url, timeout_seconds=0.5)

    started = time.monotonic()
    outcome = send(hook)
    took = time.monotonic() - started

    assert outcome == NotDelivered("timed out after 0.5 s")
    assert took < 0.5 + 5  # a hang guard, not a performance assertion
    assert len(http_receiver.requests) == 1


def test_webhook_trickling_receiver_is_cut_off_by_the_whole_call_bound(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A byte every 0.2 s never trips the 0.5 s read timeout: only the overall bound ends it.
    monkeypatch.setattr(webhook, "GRACE_SECONDS", 1.0)
    http_receiver.trickle = 0.2
    hook = Webhook(http_receiver.url, timeout_seconds=0.5)

    started = time.monotonic()
    outcome = send(hook)
    took = time.monotonic() - started

    assert outcome == NotDelivered("timed out after 1.5 s")
    assert 1.5 <= took < 1.5 + 5


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_webhook_does_not_follow_a_redirect(http_receiver: HttpReceiver, status: int) -> None:
    http_receiver.status = status
    http_receiver.location = f"http://127.0.0.2:{http_receiver.port}/elsewhere"

    outcome = send(Webhook(http_receiver.url))

    assert isinstance(outcome, NotDelivered)
    assert outcome.detail.startswith(f"HTTP {status}")
    assert [r.path for r in http_receiver.requests] == ["/hooks/mqi"]


def test_webhook_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="http"):
        Webhook("file:///etc/passwd")


# --- email ---------------------------------------------------------------------------------


def plain_email(receiver: SmtpReceiver, **options: object) -> Email:
    settings: dict = {"timeout_seconds": 5, "starttls": False, "sender": SENDER, "to": TO}
    return Email(smtp_host=receiver.host, smtp_port=receiver.port, **(settings | options))


def tls_email(receiver: SmtpReceiver, password_file: Path, **options: object) -> Email:
    settings = {
        "starttls": True,
        "username": SMTP_USER,
        "password_file": password_file,
        "tls_context": receiver.client_context(),
    }
    return plain_email(receiver, **(settings | options))


def test_email_arrives_with_subject_body_and_dedup_key(smtp_receiver: SmtpReceiver) -> None:
    assert send(plain_email(smtp_receiver)) == Delivered("SMTP accepted for 1 recipient(s)")

    [mail] = smtp_receiver.wait_for(1)
    assert (mail.sender, mail.recipients) == (SENDER, list(TO))
    message = mail.message
    assert message["Subject"] == "MQI: case case-0042 failed (simulation)"
    assert message["From"] == SENDER
    assert message["To"] == TO[0]
    assert message["X-MQI-Dedup-Key"] == "case_failed:case-0042"
    assert message["Date"] and message["Message-ID"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert "Reason: moqui exited with status 3" in body
    assert "  CUDA error: out of memory" in body
    assert "  loading phantom" in body
    assert "mqi history case-0042" in body


def test_email_to_several_recipients(smtp_receiver: SmtpReceiver) -> None:
    to = ("a@clinic.example", "b@clinic.example")

    assert send(plain_email(smtp_receiver, to=to)) == Delivered("SMTP accepted for 2 recipient(s)")
    [mail] = smtp_receiver.wait_for(1)
    assert mail.recipients == list(to)
    assert mail.message["To"] == "a@clinic.example, b@clinic.example"


def test_email_one_recipient_refused_is_not_delivered(smtp_receiver: SmtpReceiver) -> None:
    smtp_receiver.unknown_users = {"b@clinic.example"}

    outcome = send(plain_email(smtp_receiver, to=("a@clinic.example", "b@clinic.example")))

    assert outcome == NotDelivered(
        "SMTP accepted 1 of 2 recipient(s), refused b@clinic.example: 550 no such user"
    )


def test_email_over_starttls_with_login(smtp_tls_receiver: SmtpReceiver, tmp_path: Path) -> None:
    password_file = tmp_path / "smtp.password"
    password_file.write_text(f"{SMTP_PASSWORD}\n")

    outcome = send(tls_email(smtp_tls_receiver, password_file))

    assert outcome == Delivered("SMTP accepted for 1 recipient(s)")
    [mail] = smtp_tls_receiver.wait_for(1)
    assert (mail.tls, mail.login) == (True, SMTP_USER)
    assert mail.message["X-MQI-Dedup-Key"] == "case_failed:case-0042"


def test_email_wrong_password_is_not_delivered(
    smtp_tls_receiver: SmtpReceiver, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp.password"
    password_file.write_text("wrong-password-123\n")

    outcome = send(tls_email(smtp_tls_receiver, password_file))

    assert isinstance(outcome, NotDelivered)
    assert outcome.detail.startswith(f"SMTP 535 login as {SMTP_USER} failed")
    assert "wrong-password-123" not in outcome.detail
    assert smtp_tls_receiver.messages == []


def test_email_untrusted_certificate_is_not_delivered(
    smtp_tls_receiver: SmtpReceiver, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp.password"
    password_file.write_text(SMTP_PASSWORD)
    # The system trust store does not know the test's self-signed certificate.
    channel = tls_email(smtp_tls_receiver, password_file, tls_context=None)

    outcome = send(channel)

    assert isinstance(outcome, NotDelivered)
    assert outcome.detail.startswith("TLS certificate not trusted")
    assert smtp_tls_receiver.messages == []


def test_email_starttls_required_but_not_offered(smtp_receiver: SmtpReceiver) -> None:
    outcome = send(plain_email(smtp_receiver, starttls=True))

    assert isinstance(outcome, NotDelivered)
    assert "STARTTLS" in outcome.detail
    assert smtp_receiver.messages == []


def test_email_missing_password_file_connects_nowhere(
    smtp_tls_receiver: SmtpReceiver, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such.password"
    smtp_tls_receiver.stop()  # any connection attempt would be refused, not "missing file"

    outcome = send(tls_email(smtp_tls_receiver, missing))

    assert outcome == NotDelivered(f"email password file {missing} does not exist")
    assert smtp_tls_receiver.messages == []


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_email_temporary_rejection_is_not_delivered(
    smtp_receiver: SmtpReceiver, where: str
) -> None:
    setattr(smtp_receiver, f"reject_{where}", "451 try again later")

    outcome = send(plain_email(smtp_receiver))

    assert isinstance(outcome, NotDelivered)
    assert "451" in outcome.detail
    assert "try again later" in outcome.detail
    assert smtp_receiver.messages == []


def test_email_server_down_then_back(smtp_receiver: SmtpReceiver) -> None:
    channel = plain_email(smtp_receiver)
    smtp_receiver.stop()

    assert send(channel) == NotDelivered("connection refused")

    smtp_receiver.start()
    assert send(channel) == Delivered("SMTP accepted for 1 recipient(s)")
    assert len(smtp_receiver.wait_for(1)) == 1


def test_email_silent_server_times_out() -> None:
    # Listening but never accepting: the connect succeeds, the greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        channel = Email(
            smtp_host="127.0.0.1",
            smtp_port=port,
            starttls=False,
            sender=SENDER,
            to=TO,
            timeout_seconds=0.5,
        )
        started = time.monotonic()
        outcome = send(channel)
        took = time.monotonic() - started

    assert outcome == NotDelivered("timed out after 0.5 s")
    assert took < 0.5 + 5  # a hang guard
