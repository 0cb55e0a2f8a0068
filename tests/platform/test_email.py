"""The e-mail resource against the local SMTP sink (aiosmtpd) over real SMTP on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dagster as dg
import pytest

from signalbox.platform.email import Attachment, EmailError, EmailResource
from signalbox.platform.embedded.ports import free_port
from signalbox.simulators.smtp import SmtpSink

USER = "alerts@signalbox.test"
PASSWORD = "s3cret-Pa55word-9f2k"
SENDER = "Signalbox <alerts@signalbox.test>"
TO = "oncall@example.com, data-team@example.com"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # binary, with CR/LF/NUL bytes
CSV = "character,drops\nÆther,3\r\nmixed\rline\n".encode()


@pytest.fixture(scope="module")
def _sink() -> Iterator[SmtpSink]:
    with SmtpSink(credentials=(USER, PASSWORD)) as sink:
        yield sink


@pytest.fixture
def sink(_sink: SmtpSink) -> SmtpSink:
    _sink.reset()
    return _sink


def resource(sink: SmtpSink, **overrides) -> EmailResource:
    fields = dict(
        host="127.0.0.1",
        port=sink.port,
        username=USER,
        password=PASSWORD,
        sender=SENDER,
        recipients=TO,
        timeout_seconds=5,
        backoff_base_seconds=0.01,
    )
    return EmailResource(**{**fields, **overrides})


def test_plain_html_and_attachments_arrive_intact(sink: SmtpSink):
    text = "Day 2024-03-01 loaded: 12,345 rows.\nObject: s3://signalbox/timelines/…"
    html = "<p>Day <b>2024-03-01</b> loaded: 12,345 rows ✅</p>"
    sent = resource(sink).send(
        "Timelines 2024-03-01: loaded ✅ (Grüße)",
        text,
        html,
        attachments=[Attachment("chart.png", PNG), ("drops.csv", CSV, "text/csv")],
    )
    assert sent.attempts == 1
    assert sent.recipients == ["oncall@example.com", "data-team@example.com"]

    (mail,) = sink.wait_for(1)
    assert mail.subject == "Timelines 2024-03-01: loaded ✅ (Grüße)"
    assert mail.sender == SENDER
    assert mail.mail_from == "alerts@signalbox.test"
    assert mail.to == ["oncall@example.com", "data-team@example.com"]
    assert mail.text.rstrip("\n") == text
    assert mail.html.rstrip("\n") == html
    assert mail.message_id == sent.message_id
    assert [(a.filename, a.content_type, a.content) for a in mail.attachments] == [
        ("chart.png", "image/png", PNG),
        ("drops.csv", "text/csv", CSV),
    ]


def test_text_only_message_to_explicit_recipients(sink: SmtpSink):
    resource(sink).send("plain", "just text", to=["someone@example.com"])
    (mail,) = sink.wait_for(1)
    assert mail.to == ["someone@example.com"]
    assert mail.html is None and mail.attachments == []
    assert mail.text.strip() == "just text"


def test_temporary_failures_are_retried_then_delivered(
    sink: SmtpSink, caplog: pytest.LogCaptureFixture
):
    sink.fail_next(2)  # 451 twice
    with caplog.at_level(logging.WARNING, logger="signalbox.platform.email"):
        sent = resource(sink).send("retry me", "body")
    assert sent.attempts == 3
    assert sink.attempts == 3
    (mail,) = sink.wait_for(1)  # delivered once
    assert mail.message_id == sent.message_id  # the same message every attempt
    assert sum("451" in record.getMessage() for record in caplog.records) == 2
    assert PASSWORD not in caplog.text


def test_temporary_failures_give_up_after_max_attempts(sink: SmtpSink):
    sink.fail_next(10)
    with pytest.raises(EmailError) as caught:
        resource(sink, max_attempts=3).send("never", "body")
    error = caught.value
    assert error.code == 451 and error.transient and error.attempts == 3
    assert f"127.0.0.1:{sink.port}" in str(error) and "after 3 attempts" in str(error)
    assert sink.messages == []


def test_permanent_failure_is_a_clear_error_without_the_password(sink: SmtpSink):
    sink.fail_permanently("550 5.7.1 Message rejected as spam")
    email = resource(sink)
    with pytest.raises(EmailError) as caught:
        email.send("rejected", "body")
    error = caught.value
    assert error.code == 550 and not error.transient
    assert error.attempts == 1 and sink.attempts == 1  # not retried
    assert str(error).startswith(f"SMTP 127.0.0.1:{sink.port}: DATA answered 550")
    assert "spam" in str(error)
    for shown in (str(error), repr(error), repr(email), str(email)):
        assert PASSWORD not in shown


def test_wrong_password_is_not_retried_nor_shown(sink: SmtpSink):
    wrong = "not-the-Password-77"
    with pytest.raises(EmailError) as caught:
        resource(sink, password=wrong).send("auth", "body")
    assert caught.value.code == 535 and caught.value.attempts == 1
    assert "AUTH answered 535" in str(caught.value)
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)


def test_missing_credentials_are_refused(sink: SmtpSink):
    with pytest.raises(EmailError, match="530"):
        resource(sink, username=None, password=None).send("no auth", "body")


def test_refused_recipient_names_it_and_keeps_the_others(sink: SmtpSink):
    sink.refuse_recipient("data-team@example.com")
    with pytest.raises(EmailError) as caught:
        resource(sink).send("partly", "body")
    error = caught.value
    assert "data-team@example.com: 550" in str(error)
    assert error.delivered == ["oncall@example.com"]
    assert sink.wait_for(1)[0].to == ["oncall@example.com"]


def test_deferred_recipient_is_retried_alone(sink: SmtpSink):
    sink.refuse_recipient("data-team@example.com", "450 4.2.1 Mailbox busy")
    with pytest.raises(EmailError) as caught:
        resource(sink, max_attempts=3).send("deferred", "body")
    error = caught.value
    assert error.code == 450 and error.transient and error.attempts == 3
    assert error.delivered == ["oncall@example.com"]
    assert "data-team@example.com: 450" in str(error)
    assert [mail.to for mail in sink.messages] == [["oncall@example.com"]]  # no duplicate


def test_unreachable_server_is_retried_and_named():
    port = free_port()
    email = EmailResource(
        host="127.0.0.1",
        port=port,
        password=PASSWORD,
        username=USER,
        recipients=TO,
        max_attempts=2,
        backoff_base_seconds=0.01,
        timeout_seconds=2,
    )
    with pytest.raises(EmailError) as caught:
        email.send("down", "body")
    error = caught.value
    assert error.code is None and error.transient and error.attempts == 2
    assert f"127.0.0.1:{port}: connection failed" in str(error)
    assert PASSWORD not in str(error)


def test_no_recipients_is_a_configuration_error(sink: SmtpSink):
    with pytest.raises(ValueError, match="SIGNALBOX_MAIL_TO"):
        resource(sink, recipients="").send("x", "y")


def test_resource_from_env_sends_inside_dagster(sink: SmtpSink, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIGNALBOX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SIGNALBOX_SMTP_PORT", str(sink.port))
    monkeypatch.setenv("SIGNALBOX_SMTP_USER", USER)
    monkeypatch.setenv("SIGNALBOX_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SIGNALBOX_MAIL_FROM", SENDER)
    monkeypatch.setenv("SIGNALBOX_MAIL_TO", "oncall@example.com")

    @dg.asset
    def notified(email: EmailResource) -> None:
        email.send("from dagster", "rows: 3")

    email = EmailResource.from_env()
    assert PASSWORD not in repr(email)
    assert dg.materialize([notified], resources={"email": email}).success
    (mail,) = sink.wait_for(1)
    assert mail.subject == "from dagster" and mail.to == ["oncall@example.com"]


def test_sink_saves_eml_files(tmp_path):
    with SmtpSink(save_dir=tmp_path / "mail") as sink:
        EmailResource(host="127.0.0.1", port=sink.port, recipients="a@example.com").send(
            "saved", "kept on disk"
        )
        sink.wait_for(1)
    (saved,) = (tmp_path / "mail").glob("*.eml")
    assert b"Subject: saved" in saved.read_bytes()
