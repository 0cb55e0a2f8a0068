"""A local Telegram Bot API: the chat the demo and the tests send alerts to.

Same routes and answers as `api.telegram.org` for what signalbox uses (`getMe`,
`sendMessage`, `sendPhoto` with JSON, form or multipart bodies), the same checks
(token, chat_id, 1-4096 characters of text and <= 1024 of caption after HTML parsing,
well-formed HTML with Telegram's tags only) and flood control as token buckets per
chat, per group and overall, answering 429 with `parameters.retry_after`. Everything
accepted is kept in memory (`messages`, `photos`) and shown on a page at `/`, newest
first with the images inline, refreshing itself so a demo user watches alerts arrive.

Fault switches (`Faults`) apply to the Bot API only, so the page keeps working while
sends are failing or slow.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import json
import math
import re
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from signalbox.simulators.server import Faults, Request, Response, SimulatorServer
from signalbox.stack import LocalStack, stand_in

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
PHOTO_MAX_BYTES = 10 * 1024 * 1024

# Telegram's HTML tags (with their synonyms); `span` only as class="tg-spoiler"
ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}
    | {"tg-spoiler", "span", "blockquote", "tg-emoji"}
)
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


# --------------------------------------------------------------------------- HTML parsing


class EntityError(ValueError):
    """Text that Telegram's HTML parser rejects; the message is Telegram's wording."""


# text between tags: an entity, a run of plain text, or a `<` or `&` on its own
_TEXT_RE = re.compile(r"&(?:([A-Za-z][A-Za-z0-9]*)|#([0-9]+)|#[xX]([0-9A-Fa-f]+));|[^&<]+|[&<]")


@dataclass
class Token:
    kind: str  # "text" | "open" | "close"
    value: str  # text, or the tag name
    attrs: dict[str, str] = field(default_factory=dict)


def parse_html(text: str) -> tuple[str, list[Token]]:
    """(visible text, tokens) of Telegram HTML; raises EntityError like the real API."""
    tokens = _TelegramHtml(text).tokens
    return "".join(t.value for t in tokens if t.kind == "text"), tokens


class _TelegramHtml(HTMLParser):
    """Tags as `html.parser` finds them, checked against Telegram's; the text between
    them decoded here, where a `<` that opens no tag is an error, as in Telegram."""

    def __init__(self, text: str):
        # entities are left to _TEXT_RE: with convert_charrefs=False, a `&#` that is no
        # reference can make the parser take the rest of the text, tags and all, as data
        super().__init__(convert_charrefs=True)
        self.text = text
        self.tokens: list[Token] = []
        self._open: list[str] = []
        self._done = 0  # text[:_done] is in tokens
        self._lines = [0, *(m.end() for m in re.finditer("\n", text))]
        try:
            self.feed(text)
            self.close()
        except AssertionError:  # Python 3.11's parser gives up on some `<![`: text
            pass
        self._text_until(len(text))
        if self._open:
            raise EntityError(f'Can\'t find end tag corresponding to start tag "{self._open[-1]}"')

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._position()
        self._text_until(start)
        if tag not in ALLOWED_TAGS:
            raise EntityError(f'Unsupported start tag "{tag}" {self._at(start)}')
        self._open.append(tag)
        self.tokens.append(Token("open", tag, {name: value or "" for name, value in attrs}))
        self._done = start + len(self.get_starttag_text())

    handle_startendtag = handle_starttag  # `<b/>` opens b, as before

    def handle_endtag(self, tag: str) -> None:
        start = self._position()
        self._text_until(start)
        if tag not in ALLOWED_TAGS:
            raise EntityError(f'Unsupported end tag "{tag}" {self._at(start)}')
        if not self._open:
            raise EntityError(f"Unexpected end tag {self._at(start)}")
        if self._open[-1] != tag:
            expected = f'expected "</{self._open[-1]}>", found "</{tag}>"'
            raise EntityError(f"Unmatched end tag {self._at(start)}, {expected}")
        self._open.pop()
        self.tokens.append(Token("close", tag))
        self._done = self.text.index(">", start) + 1

    def _text_until(self, end: int) -> None:
        decoded = []
        for match in _TEXT_RE.finditer(self.text, self._done, end):
            raw, (named, decimal, hexadecimal) = match.group(), match.groups()
            if raw == "<":
                raise EntityError(f"Unexpected end of name token {self._at(match.start())}")
            if named is not None:
                if named not in NAMED_ENTITIES:
                    raise EntityError(f'Unsupported HTML entity "{raw}" {self._at(match.start())}')
                decoded.append(NAMED_ENTITIES[named])
            elif decimal is not None or hexadecimal is not None:
                code = int(decimal) if decimal is not None else int(hexadecimal, 16)
                decoded.append(chr(code) if 0 < code <= 0x10FFFF else "\ufffd")
            else:
                decoded.append(raw)
        if decoded:
            self.tokens.append(Token("text", "".join(decoded)))
        self._done = end

    def _position(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column

    def _at(self, position: int) -> str:
        return f"at byte offset {len(self.text[:position].encode('utf-8'))}"


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_SAFE_TAGS = {
    "b": "b", "strong": "b", "i": "i", "em": "i", "u": "u", "ins": "u",
    "s": "s", "strike": "s", "del": "s", "code": "code", "pre": "pre",
    "blockquote": "blockquote",
}  # fmt: skip


def render_html(tokens: list[Token]) -> str:
    """Browser HTML for parsed Telegram HTML: only known tags, only http(s) links."""
    out = []
    for token in tokens:
        if token.kind == "text":
            out.append(html.escape(token.value))
        elif token.value == "a":
            if token.kind == "close":
                out.append("</a>")
                continue
            href = token.attrs.get("href", "")
            safe = href if re.match(r"^(https?|tg)://", href, re.I) else "#"
            out.append(f'<a href="{html.escape(safe)}" target="_blank" rel="noopener">')
        elif token.value in _SAFE_TAGS:
            tag = _SAFE_TAGS[token.value]
            out.append(f"<{tag}>" if token.kind == "open" else f"</{tag}>")
        elif token.value in ("tg-spoiler", "span"):
            out.append('<span class="spoiler">' if token.kind == "open" else "</span>")
        else:  # tg-emoji: its fallback text
            out.append("<span>" if token.kind == "open" else "</span>")
    return "".join(out)


# --------------------------------------------------------------------------- flood control


class TokenBucket:
    """`rate` tokens a second up to `capacity`; one message takes one token."""

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0: now)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


# --------------------------------------------------------------------------- records


@dataclass
class SentMessage:
    message_id: int
    chat_id: int | str
    text: str  # as sent (HTML source when parse_mode is HTML)
    plain: str  # the visible text after parsing
    parse_mode: str | None
    date: float
    reply_to: int | None = None
    link_preview_disabled: bool = False
    rendered: str = ""  # safe HTML for the page


@dataclass
class SentPhoto:
    message_id: int
    chat_id: int | str
    caption: str
    plain: str
    parse_mode: str | None
    image: bytes
    content_type: str
    width: int
    height: int
    file_id: str
    date: float
    reply_to: int | None = None
    rendered: str = ""

    @property
    def png(self) -> bytes:
        return self.image


class BadRequest(Exception):
    def __init__(self, description: str, status: int = 400, parameters: dict | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.parameters = parameters


def telegram_error(status: int, description: str, parameters: dict | None = None) -> Response:
    payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return Response.json(payload, status=status)


# --------------------------------------------------------------------------- server


class TelegramSimulator(SimulatorServer):
    """`url` is the Bot API base (TELEGRAM_API_URL) and the page (`url + "/"`).

    Flood limits (None switches one off): `per_chat_per_second` with `burst` messages
    at once per chat, `group_per_minute` per group chat (negative ids) with a minute's
    worth of burst, `global_per_second` over all chats.
    """

    name = "telegram"

    def __init__(
        self,
        token: str = "123456:demo-token",
        port: int = 0,
        faults: Faults | None = None,
        *,
        per_chat_per_second: float | None = 1.0,
        burst: int = 5,
        group_per_minute: float | None = 20.0,
        global_per_second: float | None = 30.0,
        refresh_seconds: int = 3,
    ):
        super().__init__(port=port, faults=faults)
        self.token = token
        self.per_chat_per_second = per_chat_per_second
        self.monotonic = time.monotonic  # flood-control buckets (tests drive it)
        self.burst = burst
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self.refresh_seconds = refresh_seconds
        self.forbidden_chats: set[int | str] = set()  # answer 403 "bot was blocked"
        self._messages: list[SentMessage] = []
        self._photos: list[SentPhoto] = []
        self._buckets: dict[tuple, TokenBucket] = {}
        self._next_id = 1
        self._state = threading.Lock()
        self.rate_limited = 0  # 429s answered by flood control
        bot = r"/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)/?"
        for verb in ("GET", "POST"):
            self.add_route(verb, bot, self._bot_api)

    # -- accessors for tests and the demo

    @property
    def messages(self) -> list[SentMessage]:
        with self._state:
            return list(self._messages)

    @property
    def photos(self) -> list[SentPhoto]:
        with self._state:
            return list(self._photos)

    @property
    def page_url(self) -> str:
        return f"{self.url}/"

    def clear(self) -> None:
        with self._state:
            self._messages.clear()
            self._photos.clear()
            self._buckets.clear()

    # -- dispatch: the page outside the fault switches, the Bot API inside them

    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith("/bot"):
            return self._page(request)
        return _telegram_shaped(super().dispatch(request))

    def _bot_api(self, request: Request) -> Response:
        if request.params["token"] != self.token:
            return telegram_error(401, "Unauthorized")
        method = request.params["method"].lower()
        try:
            params, files = _parameters(request)
            if method == "getme":
                return self._ok(self._me())
            if method == "sendmessage":
                return self._ok(self._send_message(params))
            if method == "sendphoto":
                return self._ok(self._send_photo(params, files))
        except BadRequest as exc:
            return telegram_error(exc.status, exc.description, exc.parameters)
        return telegram_error(404, "Not Found")

    @staticmethod
    def _ok(result: dict[str, Any]) -> Response:
        return Response.json({"ok": True, "result": result})

    def _me(self) -> dict[str, Any]:
        bot_id = self.token.split(":", 1)[0]
        return {
            "id": int(bot_id) if bot_id.isdigit() else 1,
            "is_bot": True,
            "first_name": "signalbox",
            "username": "signalbox_sim_bot",
        }

    # -- methods

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        text = params.get("text")
        if text is None or text == "":
            raise BadRequest("Bad Request: message text is empty")
        parse_mode = _parse_mode(params)
        plain, tokens = _parse(str(text), parse_mode)
        if not plain.strip():
            raise BadRequest("Bad Request: message text is empty")
        if utf16_length(plain) > MESSAGE_LIMIT:
            raise BadRequest("Bad Request: message is too long")
        preview = _json_param(params, "link_preview_options") or {}
        preview_disabled = bool(
            (isinstance(preview, dict) and preview.get("is_disabled"))
            or _truthy(params.get("disable_web_page_preview"))
        )
        reply_to = _reply_to(params)
        with self._state:
            self._admit(chat)
            message = SentMessage(
                message_id=self._take_id(),
                chat_id=chat,
                text=str(text),
                plain=plain,
                parse_mode=parse_mode,
                date=time.time(),
                reply_to=reply_to,
                link_preview_disabled=preview_disabled,
                rendered=render_html(tokens),
            )
            self._messages.append(message)
        return {**self._envelope(message.message_id, chat, message.date), "text": plain}

    def _send_photo(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> dict[str, Any]:
        chat = self._chat(params)
        image, content_type = self._photo_bytes(params, files)
        caption = str(params.get("caption") or "")
        parse_mode = _parse_mode(params)
        plain, tokens = _parse(caption, parse_mode)
        if utf16_length(plain) > CAPTION_LIMIT:
            raise BadRequest("Bad Request: message caption is too long")
        width, height = _image_size(image)
        if width + height > 10000 or (
            width and height and max(width, height) > 20 * min(width, height)
        ):
            raise BadRequest("Bad Request: PHOTO_INVALID_DIMENSIONS")
        reply_to = _reply_to(params)
        with self._state:
            self._admit(chat)
            message_id = self._take_id()
            photo = SentPhoto(
                message_id=message_id,
                chat_id=chat,
                caption=caption,
                plain=plain,
                parse_mode=parse_mode,
                image=image,
                content_type=content_type,
                width=width,
                height=height,
                file_id=f"sim-photo-{message_id}",
                date=time.time(),
                reply_to=reply_to,
                rendered=render_html(tokens),
            )
            self._photos.append(photo)
        result = {
            **self._envelope(message_id, chat, photo.date),
            "photo": [
                {
                    "file_id": photo.file_id,
                    "file_unique_id": f"u{message_id}",
                    "file_size": len(image),
                    "width": width,
                    "height": height,
                }
            ],
        }
        if plain:
            result["caption"] = plain
        return result

    # -- checks

    def _chat(self, params: dict[str, Any]) -> int | str:
        raw = params.get("chat_id")
        if raw is None or str(raw).strip() == "":
            raise BadRequest("Bad Request: chat_id is empty")
        text = str(raw).strip()
        if re.fullmatch(r"-?\d+", text):
            chat: int | str = int(text)
        elif re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,}", text):
            chat = text
        else:
            raise BadRequest("Bad Request: chat not found")
        if chat in self.forbidden_chats:
            raise BadRequest("Forbidden: bot was blocked by the user", status=403)
        return chat

    def _photo_bytes(
        self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> tuple[bytes, str]:
        if "photo" in files:
            image = files["photo"][1]
        elif isinstance(params.get("photo"), str) and params["photo"]:
            known = {p.file_id: p for p in self.photos}
            if params["photo"] not in known:  # URLs cannot be fetched offline
                raise BadRequest("Bad Request: wrong file identifier/HTTP URL specified")
            return known[params["photo"]].image, known[params["photo"]].content_type
        else:
            raise BadRequest("Bad Request: there is no photo in the request")
        if len(image) > PHOTO_MAX_BYTES:
            raise BadRequest("Request Entity Too Large", status=413)
        if image.startswith(b"\x89PNG\r\n\x1a\n"):
            return image, "image/png"
        if image.startswith(b"\xff\xd8\xff"):
            return image, "image/jpeg"
        raise BadRequest("Bad Request: IMAGE_PROCESS_FAILED")

    def _admit(self, chat: int | str) -> None:
        """Take a token from each bucket that applies, or raise 429 (caller holds _state)."""
        now = self.monotonic()
        buckets = []
        if self.per_chat_per_second:
            buckets.append((("chat", chat), self.per_chat_per_second, self.burst))
        if self.group_per_minute and isinstance(chat, int) and chat < 0:
            buckets.append((("group", chat), self.group_per_minute / 60, self.group_per_minute))
        if self.global_per_second:
            buckets.append((("all",), self.global_per_second, self.global_per_second))
        wait = 0.0
        for key, rate, capacity in buckets:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, capacity, now)
            wait = max(wait, bucket.wait(now))
        if wait > 0:
            self.rate_limited += 1
            seconds = max(1, math.ceil(wait))
            raise BadRequest(
                f"Too Many Requests: retry after {seconds}",
                status=429,
                parameters={"retry_after": seconds},
            )
        for key, _, _ in buckets:
            self._buckets[key].take()

    def _take_id(self) -> int:
        message_id = self._next_id
        self._next_id += 1
        return message_id

    @staticmethod
    def _envelope(message_id: int, chat: int | str, date: float) -> dict[str, Any]:
        if isinstance(chat, str):
            channel_id = -1000000000000 - zlib.crc32(chat.encode())
            chat_block: dict[str, Any] = {"id": channel_id, "type": "channel", "username": chat[1:]}
        elif chat < 0:
            kind = "supergroup" if str(chat).startswith("-100") else "group"
            chat_block = {"id": chat, "type": kind, "title": f"chat {chat}"}
        else:
            chat_block = {"id": chat, "type": "private", "first_name": "on-call"}
        return {
            "message_id": message_id,
            "from": {"id": 1, "is_bot": True, "first_name": "signalbox"},
            "date": int(date),
            "chat": chat_block,
        }

    # -- the page

    def _page(self, request: Request) -> Response:
        if request.method != "GET":
            return Response.json({"error": "method not allowed"}, status=405)
        if request.path in ("/", "/index.html"):
            return Response(
                200,
                self._render_page().encode(),
                {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
            )
        match = re.fullmatch(r"/photo/(\d+)\.png", request.path)
        if match:
            wanted = int(match.group(1))
            for photo in self.photos:
                if photo.message_id == wanted:
                    return Response(200, photo.image, {"Content-Type": photo.content_type})
        return Response(404, b"not found", {"Content-Type": "text/plain"})

    def _render_page(self) -> str:
        with self._state:
            items: list[SentMessage | SentPhoto] = [*self._messages, *self._photos]
            counts = {"messages": len(self._messages), "photos": len(self._photos)}
        items.sort(key=lambda item: item.message_id, reverse=True)
        cards = []
        for item in items:
            when = datetime.fromtimestamp(item.date).strftime("%Y-%m-%d %H:%M:%S")
            reply = f" · reply to #{item.reply_to}" if item.reply_to else ""
            head = f"#{item.message_id} · chat {html.escape(str(item.chat_id))} · {when}{reply}"
            if isinstance(item, SentPhoto):
                body = (
                    f'<a href="/photo/{item.message_id}.png" target="_blank">'
                    f'<img src="/photo/{item.message_id}.png" alt="photo {item.message_id}"></a>'
                    f'<div class="text">{item.rendered}</div>'
                )
            else:
                body = f'<div class="text">{item.rendered}</div>'
            cards.append(f'<article><div class="head">{head}</div>{body}</article>')
        listing = "\n".join(cards) or '<p class="empty">No messages yet.</p>'
        return _PAGE.format(refresh=self.refresh_seconds, listing=listing, **counts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>signalbox · Telegram simulator</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; background: #e7ebf0; margin: 0; }}
header {{ background: #517da2; color: #fff; padding: 12px 20px; }}
header h1 {{ font-size: 18px; margin: 0; }} header p {{ margin: 2px 0 0; opacity: .85; }}
main {{ max-width: 760px; margin: 16px auto; padding: 0 12px; }}
article {{ background: #fff; border-radius: 10px; padding: 10px 14px; margin: 0 0 12px;
  box-shadow: 0 1px 2px rgba(0,0,0,.12); }}
.head {{ color: #8a96a3; font-size: 12px; margin-bottom: 6px; }}
.text {{ white-space: pre-wrap; word-wrap: break-word; }}
img {{ max-width: 100%; border-radius: 6px; display: block; margin-bottom: 6px; }}
pre, code {{ background: #f2f4f6; border-radius: 4px; padding: 0 3px; }}
blockquote {{ border-left: 3px solid #517da2; margin: 4px 0; padding-left: 8px; }}
.spoiler {{ background: #ccc; color: transparent; }} .spoiler:hover {{ color: inherit; }}
.empty {{ color: #8a96a3; text-align: center; }}
</style></head>
<body><header><h1>Telegram simulator</h1>
<p>messages: {messages} · photos: {photos} · newest first · refreshes every {refresh} s</p>
</header><main>
{listing}
</main></body></html>
"""


# --------------------------------------------------------------------------- request bodies


def _header(request: Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _parameters(request: Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """Query, then JSON / urlencoded / multipart body, as Telegram accepts them all."""
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    files: dict[str, tuple[str, bytes]] = {}
    content_type = _header(request, "Content-Type")
    kind = content_type.split(";", 1)[0].strip().lower()
    if not request.body:
        return params, files
    if kind == "application/json":
        try:
            body = json.loads(request.body)
        except ValueError:
            raise BadRequest("Bad Request: can't parse JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("Bad Request: can't parse JSON object")
        params.update(body)
    elif kind == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + request.body
        )
        if not message.is_multipart():
            raise BadRequest("Bad Request: can't parse multipart body")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                files[name] = (filename, payload)
            else:
                params[name] = payload.decode("utf-8", errors="replace")
    else:  # x-www-form-urlencoded, or unlabelled
        params.update(
            {
                k: v[-1]
                for k, v in parse_qs(request.body.decode("utf-8"), keep_blank_values=True).items()
            }
        )
    return params, files


def _parse_mode(params: dict[str, Any]) -> str | None:
    mode = params.get("parse_mode")
    if mode in (None, ""):
        return None
    if str(mode).lower() not in {"html", "markdownv2", "markdown"}:
        raise BadRequest("Bad Request: unsupported parse_mode")
    return str(mode)


def _parse(text: str, parse_mode: str | None) -> tuple[str, list[Token]]:
    if parse_mode is None or parse_mode.lower() != "html":
        return text, [Token("text", text)]
    try:
        return parse_html(text)
    except EntityError as exc:
        raise BadRequest(f"Bad Request: can't parse entities: {exc}") from None


def _json_param(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise BadRequest(f"Bad Request: can't parse {name} JSON object") from None
    return value


def _reply_to(params: dict[str, Any]) -> int | None:
    reply = _json_param(params, "reply_parameters")
    if isinstance(reply, dict) and reply.get("message_id") is not None:
        return int(reply["message_id"])
    legacy = params.get("reply_to_message_id")
    return int(legacy) if legacy not in (None, "") else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in {"true", "1"}


def _image_size(image: bytes) -> tuple[int, int]:
    if image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) >= 24 and image[12:16] == b"IHDR":
        return struct.unpack(">II", image[16:24])
    return 0, 0


def _telegram_shaped(response: Response) -> Response:
    """Injected faults and unknown paths answer like Telegram: ok=false, error_code."""
    if response.status < 400:
        return response
    try:
        body = json.loads(response.body)
        if isinstance(body, dict) and "ok" in body:
            return response
    except ValueError:
        pass
    status = response.status
    if status == 429:
        return telegram_error(429, "Too Many Requests: retry after 1", {"retry_after": 1})
    try:
        description = HTTPStatus(status).phrase
    except ValueError:
        description = "Error"
    return telegram_error(status, description)


DEMO_CHAT = "-1001000000001"  # the on-call group in the simulator


@stand_in("Telegram simulator (on-call chat)", unless="TELEGRAM_BOT_TOKEN")
def _local_telegram(stack: LocalStack) -> str:
    # a bot token of its own per start, shaped like a real one (<bot id>:<secret>)
    token = f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(27)}"
    chat = TelegramSimulator(token=token).start()
    stack.on_stop(chat.stop)
    stack.export(TELEGRAM_API_URL=chat.url, TELEGRAM_BOT_TOKEN=token, TELEGRAM_CHAT_ID=DEMO_CHAT)
    return chat.page_url
