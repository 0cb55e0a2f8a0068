"""E-mail notifications over SMTP (stdlib `smtplib`): the one way signalbox sends mail.

Transient failures (4xx replies, refused or dropped connections, timeouts) are retried
with exponential backoff and jitter; permanent ones (5xx) raise `EmailError` at once.
Every attempt carries the same Message-ID, so a server that accepted a message whose
reply got lost can spot the repeat. Errors name the server (host:port), the SMTP code
and the recipients; the password is never in an error, a log line or the repr.

Configure with `EmailResource.from_env()` (`dg.EnvVar`s, so no value enters run config).
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import dagster as dg
from pydantic import Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)

from signalbox.platform.settings import env_fields, env_flag, env_int_fields

log = logging.getLogger(__name__)


class EmailError(RuntimeError):
    """Mail was not delivered (to some or all recipients)."""

    def __init__(
        self,
        message: str,
        *,
        server: str,
        code: int | None = None,
        attempts: int = 1,
        refused: dict[str, tuple[int, str]] | None = None,
        delivered: Sequence[str] = (),
        transient: bool | None = None,
    ):
        super().__init__(message)
        self.server = server  # host:port
        self.code = code  # SMTP reply code, None for connection errors
        self.attempts = attempts
        self.refused = refused or {}  # recipient -> (code, reply)
        self.delivered = list(delivered)  # recipients that did get it
        # 4xx and connection errors are worth retrying; 5xx and configuration errors not
        self.transient = (code is None or 400 <= code < 500) if transient is None else transient


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str | None = None  # guessed from the filename when None

    def mime_type(self) -> tuple[str, str]:
        kind = self.content_type or mimetypes.guess_type(self.filename)[0]
        maintype, _, subtype = (kind or "application/octet-stream").partition("/")
        return maintype, subtype or "octet-stream"


@dataclass(frozen=True)
class SentMail:
    message_id: str
    recipients: list[str]
    attempts: int
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


def split_addresses(value: str | Iterable[str] | None) -> list[str]:
    """`"a@x, b@y"` or a list -> `["a@x", "b@y"]` (blanks dropped). Anything that is not a
    bare address (a line break that would start a header, a name, a quote) is an error."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    addresses = [item.strip() for item in items if item and item.strip()]
    for address in addresses:
        if len(address) > 254 or not ADDRESS.fullmatch(address):
            shown = address if len(address) <= 40 else address[:40] + "..."
            raise ValueError(f"not an e-mail address (user@domain): {shown!r}")
    return addresses


def build_message(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Iterable[Attachment | tuple] = (),
) -> EmailMessage:
    """A MIME message: text (with an HTML alternative) and attachments."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2].strip("> ") or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for item in attachments:
        attachment = item if isinstance(item, Attachment) else Attachment(*item)
        maintype, subtype = attachment.mime_type()
        # bytes always: base64 keeps every attachment byte-exact, text included
        message.add_attachment(
            bytes(attachment.content),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return message


class EmailResource(dg.ConfigurableResource):
    """An SMTP server and the notification addresses (sender, default recipients)."""

    host: str = Field(default="localhost", description="SIGNALBOX_SMTP_HOST")
    port: int = Field(default=25, description="SIGNALBOX_SMTP_PORT (587 with STARTTLS, 465 SSL)")
    username: str | None = Field(default=None, description="SIGNALBOX_SMTP_USER (optional)")
    password: str | None = Field(
        default=None, description="SIGNALBOX_SMTP_PASSWORD (optional)", repr=False
    )
    starttls: bool = Field(default=False, description="SIGNALBOX_SMTP_STARTTLS: upgrade to TLS.")
    use_ssl: bool = Field(default=False, description="SIGNALBOX_SMTP_SSL: TLS from the start.")
    sender: str = Field(default="signalbox@localhost", description="SIGNALBOX_MAIL_FROM")
    recipients: str = Field(
        default="", description="SIGNALBOX_MAIL_TO: default recipients, comma-separated."
    )
    timeout_seconds: float = Field(default=30.0, description="Per connection and command.")
    max_attempts: int = Field(default=4, description="Tries per message on transient errors.")
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 60.0

    @classmethod
    def from_env(cls, **overrides: Any) -> EmailResource:
        """Fields from the environment variables that are set; the rest keep defaults."""
        fields: dict[str, Any] = {
            **env_fields(
                host="SIGNALBOX_SMTP_HOST",
                username="SIGNALBOX_SMTP_USER",
                password="SIGNALBOX_SMTP_PASSWORD",
                sender="SIGNALBOX_MAIL_FROM",
                recipients="SIGNALBOX_MAIL_TO",
            ),
            **env_int_fields(port="SIGNALBOX_SMTP_PORT"),
        }
        # switches, not secrets: read now (Dagster has no boolean EnvVar)
        fields["starttls"] = env_flag("SIGNALBOX_SMTP_STARTTLS")
        fields["use_ssl"] = env_flag("SIGNALBOX_SMTP_SSL")
        return cls(**{**fields, **overrides})

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def send(
        self,
        subject: str,
        text: str,
        html: str | None = None,
        attachments: Iterable[Attachment | tuple] = (),
        *,
        to: str | Iterable[str] | None = None,
    ) -> SentMail:
        """Send one message to `to` (default: the configured recipients).

        Retries transient failures; raises `EmailError` when the message could not be
        delivered to every recipient (`delivered` lists those that got it).
        """
        recipients = split_addresses(to) or split_addresses(self.recipients)
        if not recipients:
            raise ValueError("no e-mail recipients given and none configured (SIGNALBOX_MAIL_TO)")
        message = build_message(
            sender=self.sender,
            recipients=recipients,
            subject=subject,
            text=text,
            html=html,
            attachments=attachments,
        )
        pending = list(recipients)
        delivered: list[str] = []
        # 50-100% of min(max, base * 2**(n-1)) after try n: a busy server gets a real pause
        half = {"multiplier": self.backoff_base_seconds / 2, "max": self.backoff_max_seconds / 2}
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, EmailError) and exc.transient),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(**half) + wait_random_exponential(**half),
            before_sleep=self._log_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                tries = attempt.retry_state.attempt_number
                self._try_once(message, pending, delivered, tries, len(recipients))
        log.info(
            "email: sent %r to %d recipient(s) via %s (%d attempt(s))",
            subject,
            len(delivered),
            self.server,
            tries,
        )
        return SentMail(str(message["Message-ID"]), delivered, tries)

    # -- internals

    def _try_once(
        self,
        message: EmailMessage,
        pending: list[str],
        delivered: list[str],
        attempt: int,
        total: int,
    ) -> None:
        """One SMTP session to `pending`, adding to `delivered`. Refused recipients raise
        EmailError, transient (retried, `pending` narrowed to them) if all got a 4xx."""
        try:
            refused = self._deliver(message, pending)
        except EmailError as exc:
            exc.attempts, exc.delivered = attempt, delivered
            raise self._final(exc, attempt) from None
        delivered.extend(r for r in pending if r not in refused)
        if not refused:
            return
        transient = {r: v for r, v in refused.items() if 400 <= v[0] < 500}
        permanent = {r: v for r, v in refused.items() if r not in transient}
        shown = self._redact("; ".join(f"{r}: {c} {m}" for r, (c, m) in refused.items()))
        pending[:] = transient
        raise EmailError(
            f"SMTP {self.server}: recipients refused ({shown}); delivered to "
            f"{len(delivered)} of {total} ({_attempts(attempt)})",
            server=self.server,
            code=next(iter((permanent or transient).values()))[0],
            attempts=attempt,
            refused=refused,
            delivered=delivered,
        )

    def _deliver(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, str]]:
        """One SMTP session; the refused recipients (if some were accepted)."""
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(message, from_addr=self.sender, to_addrs=recipients)
            return {r: (code, _text(reply)) for r, (code, reply) in refused.items()}
        except smtplib.SMTPRecipientsRefused as exc:  # all of them
            items = {r: (code, _text(reply)) for r, (code, reply) in exc.recipients.items()}
            codes = sorted({code for code, _ in items.values()})
            # all refused temporarily -> transient; any permanent refusal -> permanent
            code = max(codes) if codes else None
            shown = "; ".join(f"{r}: {c} {m}" for r, (c, m) in items.items())
            raise EmailError(
                self._redact(f"SMTP {self.server}: all recipients refused ({shown})"),
                server=self.server,
                code=code,
                refused=items,
            ) from None
        except smtplib.SMTPResponseException as exc:  # 4xx/5xx to HELO, AUTH, MAIL, DATA
            stage = _stage(exc)
            raise EmailError(
                self._redact(
                    f"SMTP {self.server}: {stage} answered {exc.smtp_code} {_text(exc.smtp_error)}"
                ),
                server=self.server,
                code=exc.smtp_code,
            ) from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            raise EmailError(  # a configuration problem: retrying will not help
                self._redact(f"SMTP {self.server}: {type(exc).__name__}: {exc}"),
                server=self.server,
                transient=False,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused, timeouts, TLS
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise EmailError(
                self._redact(f"SMTP {self.server}: connection failed: {detail}"),
                server=self.server,
                code=None,
            ) from None

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                timeout=self.timeout_seconds,
                context=ssl.create_default_context(),
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _log_retry(self, state: RetryCallState) -> None:
        log.warning(
            "email: %s; retrying in %.1fs (%d attempts at most)",
            state.outcome.exception(),
            state.next_action.sleep,
            self.max_attempts,
        )

    def _final(self, exc: EmailError, attempt: int) -> EmailError:
        return EmailError(
            f"{exc} ({_attempts(attempt)})",
            server=exc.server,
            code=exc.code,
            attempts=attempt,
            refused=exc.refused,
            delivered=exc.delivered,
            transient=exc.transient,
        )

    def _redact(self, text: str) -> str:
        """Servers may echo what they got; never let the password (or AUTH blobs) through."""
        if not self.password:
            return text
        user = (self.username or "").encode()
        secret = self.password.encode()
        forms = {
            self.password,
            base64.b64encode(secret).decode(),
            base64.b64encode(b"\0" + user + b"\0" + secret).decode(),
        }
        for form in forms:
            if form:
                text = text.replace(form, "***")
        return text


def _attempts(count: int) -> str:
    return f"after {count} attempt{'s' if count != 1 else ''}"


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).strip()


def _stage(exc: smtplib.SMTPResponseException) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "AUTH"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "MAIL FROM"
    if isinstance(exc, smtplib.SMTPDataError):
        return "DATA"
    if isinstance(exc, smtplib.SMTPHeloError):
        return "HELO"
    if isinstance(exc, smtplib.SMTPConnectError):
        return "the greeting"
    return "the server"
