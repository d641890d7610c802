"""A notice sent as a plain-text email through an SMTP relay (STARTTLS and login optional).

One SMTP conversation per send, standard library only, run in a worker thread. The
outcome is a ``Delivered`` or ``NotDelivered`` value, never an exception: the caller records
it and retries later. The password file is read at every send, so a changed password takes
effect without a restart; the password never appears in a detail or a log line. Each
message carries ``X-MQI-Dedup-Key`` so a person (or a mail filter) can spot a resend.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from mqi_es.adapters.notify.secret_file import read_secret
from mqi_es.core.notices import Delivered, NotDelivered, Notice, email_body, email_subject

GRACE_SECONDS = 5.0  # past the timeout, the whole call gives up (a server trickling bytes)
ANSWER_CHARS = 200  # of the server's message, in a NotDelivered detail


class Email:
    """Mail ``notice`` from ``sender`` to every address of ``to`` via ``smtp_host``.

    :param tls_context: for STARTTLS instead of the system's trust store (a test's
        self-signed certificate, a site's private CA)
    """

    name = "email"

    def __init__(
        self,
        *,
        smtp_host: str,
        smtp_port: int,
        starttls: bool,
        sender: str,
        to: tuple[str, ...],
        username: str | None = None,
        password_file: Path | None = None,
        timeout_seconds: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not to:
            raise ValueError("email needs at least one recipient")
        if username is not None and password_file is None:
            raise ValueError(f"email login as {username!r} needs a password_file")
        if timeout_seconds <= 0:
            raise ValueError(f"email timeout_seconds must be positive: {timeout_seconds}")
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.starttls = starttls
        self.sender = sender
        self.to = tuple(to)
        self.username = username
        self.password_file = password_file
        self.timeout_seconds = timeout_seconds
        self._tls_context = tls_context

    async def send(self, notice: Notice) -> Delivered | NotDelivered:
        password: str | None = None
        if self.username is not None and self.password_file is not None:
            read = read_secret(self.password_file, "email password file", keep_spaces=True)
            if isinstance(read, NotDelivered):
                return read  # before any connection: nothing half-sent
            password = read
        message = self.message(notice)
        bound = self.timeout_seconds + GRACE_SECONDS
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._deliver, message, password), bound
            )
        except TimeoutError:
            return NotDelivered(f"timed out after {bound:g} s")

    def message(self, notice: Notice) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = email_subject(notice)
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = formatdate(usegmt=True)
        domain = self.sender.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)  # a domain: no DNS look-up
        message["X-MQI-Dedup-Key"] = notice.dedup_key
        # quoted-printable: a log tail may hold non-ASCII, and not every relay takes 8 bit
        message.set_content(email_body(notice), charset="utf-8", cte="quoted-printable")
        return message

    def _deliver(self, message: EmailMessage, password: str | None) -> Delivered | NotDelivered:
        """One SMTP conversation, blocking: the timeout bounds the connect and every read."""
        try:
            # Host and port here, not in connect(): STARTTLS checks the name given here.
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds)
        except Exception as exc:  # refused, unresolvable, silent, a 554 greeting
            return NotDelivered(self._why(exc))
        try:
            if self.starttls:
                smtp.starttls(context=self._tls_context or ssl.create_default_context())
            if self.username is not None and password is not None:
                smtp.login(self.username, password)
            refused = smtp.send_message(message, from_addr=self.sender, to_addrs=list(self.to))
        except Exception as exc:  # everything the network or server can do: a value
            smtp.close()  # no QUIT: the conversation may be hung or half-done
            return NotDelivered(self._why(exc))
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the message is accepted: a failed goodbye changes nothing
        if refused:
            return NotDelivered(
                f"SMTP accepted {len(self.to) - len(refused)} of {len(self.to)} "
                f"recipient(s), refused {_refusals(refused)}"
            )
        return Delivered(f"SMTP accepted for {len(self.to)} recipient(s)")

    def _why(self, exc: Exception) -> str:
        match exc:
            case smtplib.SMTPRecipientsRefused():
                return f"SMTP refused every recipient: {_refusals(exc.recipients)}"
            case smtplib.SMTPSenderRefused():
                return f"SMTP {exc.smtp_code} for sender {exc.sender}: {_text(exc.smtp_error)}"
            case smtplib.SMTPAuthenticationError():
                return f"SMTP {exc.smtp_code} login as {self.username} failed: " + _text(
                    exc.smtp_error
                )
            case smtplib.SMTPResponseException():
                return f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
            case smtplib.SMTPNotSupportedError():
                return f"SMTP server {self.smtp_host}: {exc}"
            case smtplib.SMTPServerDisconnected() if isinstance(exc.__context__, OSError):
                return self._why(exc.__context__)  # smtplib's wrapping of a timeout, a reset
            case smtplib.SMTPServerDisconnected():
                return f"SMTP server closed the connection ({exc or 'no reason given'})"
            case TimeoutError():
                return f"timed out after {self.timeout_seconds:g} s"
            case ConnectionRefusedError():
                return "connection refused"
            case socket.gaierror():
                return f"cannot resolve {self.smtp_host}"
            case ssl.SSLCertVerificationError():
                return f"TLS certificate not trusted: {exc.verify_message}"
            case ssl.SSLError():
                return f"TLS error: {exc.reason or exc}"
            case OSError():
                return exc.strerror or str(exc) or type(exc).__name__
            case _:
                return f"{type(exc).__name__}: {exc}"


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in refused.items())


def _text(answer: bytes | str) -> str:
    text = answer.decode("utf-8", errors="replace") if isinstance(answer, bytes) else answer
    return " ".join(text.split())[:ANSWER_CHARS]
