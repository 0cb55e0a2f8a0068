"""A local SMTP server that records what it receives: the mailbox of the demo and tests.

aiosmtpd's `Controller` runs the server on its own thread and event loop, on 127.0.0.1.
Every accepted message is parsed (`messages`: subject, from, to, text, html,
attachments) and, with `save_dir`, also written as an `.eml` file people can open.

Fault switches: `fail_next(n)` answers 451 (temporary) to the next n messages,
`fail_permanently()` answers 550 to every message, `refuse_recipient(address)` answers
550 to one RCPT TO, and `credentials` makes AUTH (PLAIN/LOGIN, no TLS) mandatory.
"""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from signalbox.platform.embedded.ports import free_port
from signalbox.stack import LocalStack, stand_in


class _DropLegacyWarning(logging.Filter):
    """aiosmtpd logs a deprecation of its own internals on every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _DropLegacyWarning) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_DropLegacyWarning())


@dataclass(frozen=True)
class ReceivedAttachment:
    filename: str | None
    content_type: str
    content: bytes


@dataclass
class ReceivedMail:
    subject: str
    sender: str  # the From header
    to: list[str]  # envelope recipients (RCPT TO)
    text: str | None
    html: str | None
    attachments: list[ReceivedAttachment]
    mail_from: str  # envelope sender (MAIL FROM)
    message_id: str | None
    raw: bytes = field(repr=False)
    received_at: float = field(default_factory=time.time)

    @classmethod
    def parse(cls, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> ReceivedMail:
        message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        attachments = [
            ReceivedAttachment(
                part.get_filename(), part.get_content_type(), part.get_payload(decode=True) or b""
            )
            for part in message.iter_attachments()
        ]
        return cls(
            subject=str(message.get("Subject", "")),
            sender=str(message.get("From", "")),
            to=list(rcpt_tos),
            text=_lf(text_part.get_content()) if text_part is not None else None,
            html=_lf(html_part.get_content()) if html_part is not None else None,
            attachments=attachments,
            mail_from=mail_from,
            message_id=message.get("Message-ID"),
            raw=raw,
        )


def _lf(text: str) -> str:
    """SMTP carries CRLF line ends; give readers the text as it was written."""
    return text.replace("\r\n", "\n")


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        # AUTH is enforced here rather than with aiosmtpd's auth_required, which warns on
        # every connection without TLS (this sink is loopback-only and has no TLS)
        if self.sink.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.sink._recipient_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return self.sink._receive(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(
        self,
        port: int | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        save_dir: Path | str | None = None,
    ):
        self.host = "127.0.0.1"
        self.port = port
        self.credentials = credentials
        self.save_dir = Path(save_dir) if save_dir else None
        self.messages: list[ReceivedMail] = []
        self.attempts = 0  # DATA commands seen, accepted or not
        self._lock = threading.Condition()
        self._temporary_failures = 0
        self._temporary_reply = "451 4.3.0 Temporary failure, try again later"
        self._permanent_reply: str | None = None
        self._refused: dict[str, str] = {}
        self._controller: Controller | None = None

    def __repr__(self) -> str:
        state = f"on {self.host}:{self.port}" if self._controller else "stopped"
        return f"SmtpSink({state}, {len(self.messages)} message(s))"

    # -- lifecycle

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        if self.port is None:
            self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- fault switches

    def fail_next(self, count: int, reply: str | None = None) -> None:
        """Answer the next `count` messages with a temporary failure (451 by default)."""
        with self._lock:
            self._temporary_failures = count
            if reply:
                self._temporary_reply = reply

    def fail_permanently(self, reply: str = "550 5.7.1 Message rejected") -> None:
        """Answer every message with a permanent failure until `reset()`."""
        with self._lock:
            self._permanent_reply = reply

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        with self._lock:
            self._refused[address.lower()] = reply

    def reset(self) -> None:
        """No faults, no messages."""
        with self._lock:
            self.messages.clear()
            self.attempts = 0
            self._temporary_failures = 0
            self._permanent_reply = None
            self._refused.clear()

    # -- reading

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived; returns them."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} messages after {timeout}s")
            return list(self.messages)

    # -- server side

    def _recipient_reply(self, address: str) -> str | None:
        with self._lock:
            return self._refused.get(address.lower())

    def _receive(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> str:
        with self._lock:
            self.attempts += 1
            if self._permanent_reply:
                return self._permanent_reply
            if self._temporary_failures > 0:
                self._temporary_failures -= 1
                return self._temporary_reply
            mail = ReceivedMail.parse(content, mail_from, rcpt_tos)
            self.messages.append(mail)
            if self.save_dir is not None:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{len(self.messages):05d}.eml"
                (self.save_dir / name).write_bytes(content)
            self._lock.notify_all()
        return "250 Message accepted for delivery"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)


@stand_in("SMTP sink (e-mail saved as .eml)", unless="SIGNALBOX_SMTP_HOST")
def _local_mail(stack: LocalStack) -> str:
    mail = SmtpSink(save_dir=stack.home / "mail").start()
    stack.on_stop(mail.stop)
    stack.export(SIGNALBOX_SMTP_HOST=mail.host, SIGNALBOX_SMTP_PORT=str(mail.port))
    stack.default(
        SIGNALBOX_MAIL_FROM="signalbox@localhost", SIGNALBOX_MAIL_TO="oncall@signalbox.local"
    )
    return str(stack.home / "mail")
