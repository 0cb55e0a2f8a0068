"""The Telegram resource against the Telegram simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import struct
import time
import traceback
import zlib

import dagster as dg
import pytest
import requests
from clocks import FakeClock

from signalbox.platform.http import HttpResponse
from signalbox.platform.telegram import (
    TelegramApiError,
    TelegramResource,
    html_escape,
    split_html,
    telegram_retry_after,
    truncate_html,
    visible_length,
)
from signalbox.simulators.server import Faults
from signalbox.simulators.telegram import EntityError, TelegramSimulator, parse_html

TOKEN = "7349201856:AAH3kL9xQ-zT4vW8yB2nC5mD7fG1hJ0pRsU"
WRONG_TOKEN = "1111111111:AAWrongWrongWrong-zzzzzzzzzzzzzzzzzz"
GROUP = -1001234567890


def make_png(width: int = 6, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(
        b"\x00" + b"".join(bytes([40 * x % 256, 60 * y % 256, 200]) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def _server():
    with TelegramSimulator(token=TOKEN) as server:
        yield server


@pytest.fixture
def sim(_server: TelegramSimulator) -> TelegramSimulator:
    """The module's simulator, emptied, with no faults and generous flood limits."""
    return limit(_server, per_chat_per_second=100.0, burst=100)


def limit(server: TelegramSimulator, **limits) -> TelegramSimulator:
    defaults = {"per_chat_per_second": 1.0, "burst": 5, "group_per_minute": 20.0}
    for name, value in {**defaults, "global_per_second": 30.0, **limits}.items():
        setattr(server, name, value)
    server.clear()
    server.reset_log()
    server.faults = Faults()
    server.forbidden_chats.clear()
    server.rate_limited = 0
    return server


def resource(server: TelegramSimulator, **overrides) -> TelegramResource:
    fields = {
        "bot_token": TOKEN,
        "chat_id": str(GROUP),
        "base_url": server.url,
        "backoff_base_seconds": 0.01,
        "max_attempts": 4,
        **overrides,
    }
    return TelegramResource(**fields)


# --------------------------------------------------------------------------- text helpers


def test_html_escape_escapes_the_three_characters():
    assert html_escape("a<b & c>d") == "a&lt;b &amp; c&gt;d"
    assert html_escape('say "hi"') == 'say "hi"'
    assert html_escape('say "hi"', quote=True) == "say &quot;hi&quot;"


def test_split_html_cuts_at_lines_and_keeps_tags_balanced():
    lines = [f"<b>metric {i}</b> &amp; <a href='https://x/{i}'>link {i}</a>" for i in range(40)]
    text = "<i>" + "\n".join(lines) + "</i>"
    parts = split_html(text, 200)
    assert len(parts) > 1
    for part in parts:
        assert visible_length(part) <= 200
        parse_html(part)  # the simulator's parser: every part is valid on its own
        assert part.startswith("<i>") and part.endswith("</i>")
    # nothing lost, nothing repeated: the cuts drop exactly the line breaks
    assert "\n".join(parse_html(p)[0] for p in parts) == parse_html(text)[0]


def test_split_html_never_breaks_an_entity_or_a_tag_in_one_long_word():
    text = "<code>" + "&amp;" * 50 + "x" * 50 + "</code>"
    parts = split_html(text, 30)
    assert all(visible_length(p) <= 30 for p in parts)
    assert "".join(parse_html(p)[0] for p in parts) == "&" * 50 + "x" * 50
    # emoji are two UTF-16 units, as Telegram counts them
    assert split_html("😀" * 5, 4) == ["😀😀", "😀😀", "😀"]


def test_truncate_html_ends_with_an_ellipsis_inside_the_limit():
    text = "\n".join(f"<b>line</b> {i}" for i in range(100))
    short = truncate_html(text, 50)
    assert visible_length(short) <= 50 and short.endswith("…")
    parse_html(short)
    assert truncate_html("fits", 50) == "fits"


def test_visible_length_counts_like_telegram():
    assert visible_length("a & b") == visible_length("a &amp; b") == 5  # bare or escaped: one
    assert visible_length("&lt;b&gt;") == 3  # an escaped tag is text
    assert visible_length("if a<b then") == 11  # a `<` that opens no tag is text
    assert visible_length('<a href="https://x/?a=1&amp;b=2">link</a>') == 4
    # UTF-16 code units: an astral emoji is 2, written out or as a reference
    assert visible_length("😀") == visible_length("&#128512;") == visible_length("&#x1F600;") == 2


def test_split_html_reopens_nested_tags_in_order():
    parts = split_html("<b>bold <i>both <u>all</u></i> bold</b>", 6)
    assert parts == ["<b>bold</b>", "<b><i>both</i></b>", "<b><i><u>all</u></i></b>", "<b>bold</b>"]


def test_split_html_reopens_a_link_with_its_attribute_as_written():
    link = '<a href="https://x/?a=1&amp;b=2">'
    parts = split_html("x" * 5 + link + "y" * 8 + "</a>", 5)  # a cut right after the tag
    assert [parse_html(p)[0] for p in parts] == ["xxxxx", "yyyyy", "yyy"]
    assert all(p.startswith(link) and p.endswith("</a>") for p in parts[1:])
    opened = [t for p in parts for t in parse_html(p)[1] if t.kind == "open"]
    assert {t.attrs["href"] for t in opened} == {"https://x/?a=1&b=2"}


def test_split_html_keeps_entities_and_surrogate_pairs_whole():
    assert split_html("a &amp; b &lt;i&gt; c", 4) == ["a &amp;", "b", "&lt;i&gt;", "c"]
    assert split_html("a😀😀b", 3) == ["a😀", "😀b"]


def test_tags_are_found_as_an_html_parser_finds_them():
    link = '<a href="https://x/?q=a<b>c">chart</a>'  # quotes may hold `<` and `>`
    assert visible_length(link) == 5
    assert split_html(f"see {link} and {link}", 9) == ["see", link, f"and {link}"]
    assert visible_length("x < y > z") == 9  # `< ` opens no tag: both brackets are text


@pytest.mark.timeout(10)
def test_only_the_entities_telegram_decodes_count_as_one_character():
    assert visible_length("&lt;&gt;&amp;&quot;&#65;&#x41;") == 6
    assert visible_length("&nbsp;") == 6 and visible_length("&ampx;") == 6  # text to Telegram
    assert split_html("&nosuch;", 3) == ["&no", "suc", "h;"]  # looped forever before


def test_retry_after_reads_the_body_then_the_header():
    def response(body: bytes, headers: dict[str, str]) -> HttpResponse:
        return HttpResponse(429, headers, body)

    body = b'{"ok":false,"error_code":429,"parameters":{"retry_after":7}}'
    assert telegram_retry_after(response(body, {"Retry-After": "3"})) == 7
    assert telegram_retry_after(response(b"<html>busy</html>", {"Retry-After": "3"})) == 3
    assert telegram_retry_after(response(b"{}", {})) is None


# --------------------------------------------------------------------------- sending


def test_send_message_records_html_with_previews_off(sim):
    text = f"<b>CTR</b> below band: {html_escape('0.12 < 0.18 & falling')}"
    ids = resource(sim).send_message(text)
    [message] = sim.messages
    assert ids == [message.message_id]
    assert message.chat_id == GROUP
    assert message.text == text
    assert message.plain == "CTR below band: 0.12 < 0.18 & falling"
    assert message.parse_mode == "HTML" and message.link_preview_disabled


def test_long_text_is_split_into_valid_messages(sim):
    lines = [f"<b>{i:04d}</b> " + html_escape(f"value<{i}> & more text here") for i in range(400)]
    text = "\n".join(lines)
    assert visible_length(text) > 2 * 4096
    ids = resource(sim).send_message(text)
    messages = sim.messages
    assert len(ids) == len(messages) >= 3
    assert [m.message_id for m in messages] == ids
    assert all(len(m.plain) <= 4096 for m in messages)
    assert "\n".join(m.plain for m in messages) == parse_html(text)[0]


def test_photo_upload_round_trips_and_shows_on_the_page(sim):
    png = make_png()
    ids = resource(sim).send_photo(png, "<b>CTR</b> last 24 h")
    [photo] = sim.photos
    assert ids == [photo.message_id]
    assert photo.png == png and (photo.width, photo.height) == (6, 4)
    assert photo.plain == "CTR last 24 h"
    page = requests.get(sim.page_url, timeout=5)
    assert page.status_code == 200 and 'http-equiv="refresh"' in page.text
    assert f"/photo/{photo.message_id}.png" in page.text and "<b>CTR</b> last 24 h" in page.text
    image = requests.get(f"{sim.url}/photo/{photo.message_id}.png", timeout=5)
    assert image.headers["Content-Type"] == "image/png" and image.content == png


def test_caption_over_1024_goes_with_the_photo_cut_and_in_full_as_a_reply(sim):
    caption = "\n".join(f"<i>metric {i}</i>: " + "x" * 40 for i in range(60))
    assert visible_length(caption) > 1024
    ids = resource(sim).send_photo(make_png(), caption)
    [photo], [message] = sim.photos, sim.messages
    assert ids == [photo.message_id, message.message_id]
    assert len(photo.plain) <= 1024 and photo.plain.endswith("…")
    assert message.reply_to == photo.message_id
    assert message.plain == parse_html(caption)[0]


def test_flood_control_429_waits_retry_after(sim):
    strict = limit(sim, per_chat_per_second=1.0, burst=1)
    client = resource(strict).client()
    started = time.monotonic()
    first = client.send_message("one")
    second = client.send_message("two")
    elapsed = time.monotonic() - started
    assert strict.rate_limited == 1 and client.http.stats.rate_limited == 1
    assert [m.plain for m in strict.messages] == ["one", "two"]
    assert second[0] > first[0]
    assert elapsed >= 0.9  # retry_after=1 was honoured, not hammered


def test_flood_control_buckets_per_chat_and_per_group(sim, monkeypatch):
    strict = limit(sim, per_chat_per_second=1.0, burst=2, group_per_minute=2)
    clock = FakeClock(start=1e6)
    monkeypatch.setattr(strict, "monotonic", clock)
    url = f"{strict.url}/bot{TOKEN}/sendMessage"
    statuses = [
        requests.post(url, json={"chat_id": chat, "text": "x"}, timeout=5).status_code
        for chat in (1, 1, 1, 2, -5, -5, -6)
    ]
    # private chat 1: burst of 2; chat 2 unaffected; group -5: burst 2 per chat
    assert statuses == [200, 200, 429, 200, 200, 200, 200]
    clock.advance(1.05)
    answer = requests.post(url, json={"chat_id": -5, "text": "x"}, timeout=5)
    assert answer.status_code == 429  # the chat has a token again, the group has not
    body = answer.json()
    assert body["ok"] is False and body["error_code"] == 429
    assert body["parameters"]["retry_after"] > 20  # one message per 30 s
    assert body["description"].startswith("Too Many Requests: retry after")
    strict.global_per_second = 2
    strict.clear()
    statuses = [
        requests.post(url, json={"chat_id": chat, "text": "x"}, timeout=5).status_code
        for chat in (10, 11, 12)
    ]
    assert statuses == [200, 200, 429]  # 30/s overall, here 2/s


def test_5xx_is_retried_and_the_page_survives_faults(sim):
    sim.faults.fail_next = [502, 503]
    ids = resource(sim).send_message("after two failures")
    assert len(ids) == 1 and len(sim.messages) == 1
    assert sim.count("/bot", method="POST") == 3
    sim.faults.error_rate = 1.0
    assert requests.get(sim.page_url, timeout=5).status_code == 200
    answer = requests.post(f"{sim.url}/bot{TOKEN}/getMe", timeout=5)
    assert answer.status_code == 503 and answer.json()["ok"] is False


def test_5xx_that_persists_raises_with_attempts(sim):
    sim.faults.fail_next = [500] * 10
    with pytest.raises(TelegramApiError) as err:
        resource(sim).send_message("never")
    assert err.value.status == 500 and err.value.attempts == 4
    assert TOKEN not in str(err.value)


def test_bad_html_raises_a_clear_error(sim):
    with pytest.raises(TelegramApiError) as err:
        resource(sim).send_message("<b>unclosed")
    error = err.value
    assert error.status == 400 and error.api_method == "sendMessage"
    assert "sendMessage" in str(error) and "HTTP 400" in str(error)
    assert "can't parse entities" in error.description
    assert TOKEN not in str(error) and "bot***" in error.url
    with pytest.raises(TelegramApiError, match='Unsupported start tag "script"'):
        resource(sim).send_message("<script>alert(1)</script>")
    assert sim.messages == []


def test_blocked_chat_is_a_403(sim):
    sim.forbidden_chats.add(42)
    with pytest.raises(TelegramApiError, match="Forbidden: bot was blocked") as err:
        resource(sim).send_message("hi", chat_id=42)
    assert err.value.status == 403


def test_wrong_token_error_never_shows_the_token(sim):
    with pytest.raises(TelegramApiError) as err:
        resource(sim, bot_token=WRONG_TOKEN).send_message("hi")
    error = err.value
    assert error.status == 401 and error.description == "Unauthorized"
    rendered = "".join(traceback.format_exception(error)) + repr(error) + error.url
    assert WRONG_TOKEN not in rendered and WRONG_TOKEN.split(":")[1] not in rendered
    assert TOKEN not in repr(resource(sim)) and TOKEN not in repr(resource(sim).client())


def test_token_never_in_captured_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    # explicitly: clickhouse-connect, once imported, sets urllib3's logger to WARNING
    caplog.set_level(logging.DEBUG, logger="urllib3")
    res = resource(sim)
    sim.faults.fail_next = [503]
    res.send_message("logged")
    res.send_photo(make_png(), "chart")
    limited = resource(limit(sim, per_chat_per_second=1.0, burst=1))
    limited.send_message("a")
    limited.send_message("b")
    with pytest.raises(TelegramApiError):
        res.send_message("<i>bad")
    with pytest.raises(TelegramApiError):
        resource(sim, bot_token=WRONG_TOKEN).send_message("x")
    messages = [record.getMessage() for record in caplog.records]
    assert any("urllib3" in r.name for r in caplog.records)  # request lines were logged
    assert any("429" in m for m in messages) and any("503" in m for m in messages)
    for secret in (TOKEN, WRONG_TOKEN, TOKEN.split(":")[1], WRONG_TOKEN.split(":")[1]):
        assert secret not in caplog.text
        assert not any(secret in m for m in messages)


def test_token_not_in_dagster_events(sim, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(GROUP))
    monkeypatch.setenv("TELEGRAM_API_URL", sim.url)

    @dg.asset
    def alert(context, telegram: TelegramResource):
        ids = telegram.send_message("<b>alert</b>")
        context.log.info(f"sent {ids} with {telegram!r}")
        return dg.MaterializeResult(metadata={"message_ids": ids})

    @dg.asset
    def broken_alert(telegram: TelegramResource):
        telegram.send_message("<b>broken")

    result = dg.materialize(
        [alert, broken_alert],
        resources={"telegram": TelegramResource.from_env(backoff_base_seconds=0.01)},
        raise_on_error=False,
    )
    assert not result.success
    assert [m.plain for m in sim.messages] == ["alert"]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "can't parse entities" in str(failure.event_specific_data.error)
    for event in result.all_events:
        assert TOKEN not in str(event) and TOKEN.split(":")[1] not in str(event)


# --------------------------------------------------------------------------- simulator contract


def test_simulator_parses_nested_tags_links_and_entities():
    text = '<b>bold <i>both</i></b> <a href="https://x/?a=1&amp;b=2">a &lt; b &amp; c</a> &#128512;'
    plain, tokens = parse_html(text)
    assert plain == "bold both a < b & c 😀"
    tags = [("/" if t.kind == "close" else "") + t.value for t in tokens if t.kind != "text"]
    assert tags == ["b", "i", "/i", "/b", "a", "/a"]
    assert [t.attrs for t in tokens if t.kind == "open"][-1] == {"href": "https://x/?a=1&b=2"}
    assert parse_html("<B>x</B >")[0] == "x"  # names in any case, space before `>`
    assert parse_html('<a href="https://x/"title="y">z</a>')[0] == "z"  # no space needed


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("😀 <script>x</script>", 'Unsupported start tag "script" at byte offset 5'),  # UTF-8 bytes
        ("a < b", "at byte offset 2"),  # every `<` opens a tag in Telegram's HTML
        ("<!-- note -->", "at byte offset 0"),
        ("<b<i>x</i>", 'Unsupported start tag "b<i" at byte offset 0'),  # a name ends at space or >
    ],
)
def test_simulator_rejects_malformed_html_like_the_bot_api(text, error):
    with pytest.raises(EntityError, match=re.escape(error)):
        parse_html(text)


def test_simulator_answers_like_the_bot_api(sim):
    base = f"{sim.url}/bot{TOKEN}"
    me = requests.get(f"{base}/getMe", timeout=5).json()
    assert me["ok"] is True and me["result"]["is_bot"] is True

    sent = requests.post(f"{base}/sendMessage", data={"chat_id": "7", "text": "form"}, timeout=5)
    result = sent.json()["result"]
    assert result["text"] == "form" and result["chat"] == {
        "id": 7,
        "type": "private",
        "first_name": "on-call",
    }
    assert isinstance(result["message_id"], int) and isinstance(result["date"], int)

    def error(method: str, **kwargs) -> tuple[int, dict]:
        answer = requests.post(f"{base}/{method}", timeout=5, **kwargs)
        return answer.status_code, answer.json()

    assert error("sendMessage", json={"text": "x"}) == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"},
    )
    assert error("sendMessage", json={"chat_id": 1, "text": "x" * 4097})[1]["description"] == (
        "Bad Request: message is too long"
    )
    assert error("sendMessage", json={"chat_id": 1, "text": ""})[1]["description"] == (
        "Bad Request: message text is empty"
    )
    status, body = error(
        "sendPhoto",
        data={"chat_id": "1", "caption": "c" * 1025},
        files={"photo": ("p.png", make_png(), "image/png")},
    )
    assert (status, body["description"]) == (400, "Bad Request: message caption is too long")
    status, body = error(
        "sendPhoto", data={"chat_id": "1"}, files={"photo": ("p.txt", b"text", "text/plain")}
    )
    assert (status, body["description"]) == (400, "Bad Request: IMAGE_PROCESS_FAILED")
    # 4096 visible characters are fine even when the HTML source is longer
    assert (
        error("sendMessage", json={"chat_id": 1, "text": "&lt;" * 4096, "parse_mode": "HTML"})[0]
        == 200
    )
    wrong = requests.post(f"{sim.url}/bot{WRONG_TOKEN}/sendMessage", json={}, timeout=5)
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
