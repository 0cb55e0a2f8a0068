"""Telegram Bot API: the one way signalbox talks to the on-call chat.

Built on the shared `HttpClient` (timeouts, retries on 5xx, 429 waits). Telegram puts
the bot token in the URL path (`/bot<TOKEN>/sendMessage`), so the token is registered as
a secret everywhere a URL could surface: the client's errors and logs, and urllib3's
debug log of request lines. Sends are at-least-once: a 5xx or a timeout after Telegram
accepted a message is retried, which can repeat it; a missed alert is the worse failure.

Text is HTML (`parse_mode=HTML`). Telegram counts its limits (4096 per message, 1024 per
caption) on the text after entity parsing; `visible_length` counts the same way, in
UTF-16 code units, which is what Telegram measures entity offsets in, so it never
undercounts.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import dagster as dg
from pydantic import Field, PrivateAttr

from signalbox.platform.http import (
    ApiHttpError,
    ApiResponseError,
    HttpApiResource,
    HttpClient,
    HttpResponse,
    RateLimiter,
    redact_text,
    redact_url,
    retry_after_seconds,
)
from signalbox.platform.settings import env_fields

SOURCE = "telegram"
DEFAULT_API_URL = "https://api.telegram.org"
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
PHOTO_MAX_BYTES = 10 * 1024 * 1024
ELLIPSIS = "…"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- HTML text


def html_escape(text: str, *, quote: bool = False) -> str:
    """Escape `& < >` (and quotes with `quote=True`, for attribute values such as href)."""
    return html.escape(str(text), quote=quote)


# text between tags: an entity Telegram decodes or one character (Telegram shows any
# other `&name;`, such as `&nbsp;`, as written)
_TEXT_RE = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#[xX][0-9A-Fa-f]+);|.", re.DOTALL)


def _width(text: str) -> int:
    """Length in UTF-16 code units (astral characters such as most emoji count 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class _Atom:
    raw: str
    width: int  # visible width after parsing; 0 for tags
    tag: str | None = None  # lower-case tag name, for tags
    closing: bool = False


class _Tokenizer(HTMLParser):
    """Tags as `html.parser` finds them and, between them, entities and characters;
    what it reports as no tag (a bare `<`, a comment, `</>`) stays text."""

    def __init__(self, text: str):
        # entities are left to _TEXT_RE: with convert_charrefs=False, a `&#` that is no
        # reference can make the parser take the rest of the text, tags and all, as data
        super().__init__(convert_charrefs=True)
        self.text = text
        self.atoms: list[_Atom] = []
        self._done = 0  # text[:_done] is in atoms
        self._lines = [0, *(m.end() for m in re.finditer("\n", text))]
        try:
            self.feed(text)
            self.close()
        except AssertionError:  # Python 3.11's parser gives up on some `<![`: text
            pass
        self._text_until(len(text))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        start = self._position()
        self._tag(start, start + len(self.get_starttag_text()), tag, closing=False)

    handle_startendtag = handle_starttag  # `<b/>` opens b, as before

    def handle_endtag(self, tag: str) -> None:
        start = self._position()
        self._tag(start, self.text.index(">", start) + 1, tag, closing=True)

    def _tag(self, start: int, end: int, tag: str, closing: bool) -> None:
        self._text_until(start)
        self.atoms.append(_Atom(self.text[start:end], 0, tag, closing))
        self._done = end

    def _text_until(self, end: int) -> None:
        for match in _TEXT_RE.finditer(self.text, self._done, end):
            self.atoms.append(_Atom(match.group(), _width(html.unescape(match.group()))))
        self._done = end

    def _position(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column


def _atoms(text: str) -> list[_Atom]:
    """Tags and entities as single atoms, every other character on its own."""
    return _Tokenizer(text).atoms


def visible_length(text: str) -> int:
    """Length of HTML text as Telegram counts it: tags dropped, entities as one character."""
    return sum(atom.width for atom in _atoms(text))


def split_html(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split HTML text into messages of at most `limit` visible characters.

    Cuts at the last line break that fits, else the last space, else between two
    characters; never inside a tag or an entity. Tags open at a cut are closed at the
    end of one part and reopened (with their attributes) at the start of the next, so
    every part parses on its own. Parts with nothing visible are dropped.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    atoms = _atoms(text)
    if sum(a.width for a in atoms) <= limit:
        return [text]
    parts: list[str] = []
    carried: list[_Atom] = []  # opening tags still open where the previous part was cut
    start = 0
    while start < len(atoms):
        stack = list(carried)
        width = 0
        line_cut = space_cut = None  # (index of the break character, open tags, width)
        i = start
        while i < len(atoms):
            atom = atoms[i]
            if atom.width and width + atom.width > limit:
                break
            if atom.raw == "\n" and width:
                line_cut = (i, list(stack), width)
            elif atom.raw.isspace() and width:
                space_cut = (i, list(stack), width)
            _apply_tag(stack, atom)
            width += atom.width
            i += 1
        if i == len(atoms):  # the rest fits
            end, open_tags, next_start = i, stack, i
        # a line break, unless it comes so early that the part would be mostly empty;
        # the break character itself is dropped
        elif line_cut and (line_cut[2] >= limit // 2 or not space_cut):
            end, open_tags, _ = line_cut
            next_start = end + 1
        elif space_cut:
            end, open_tags, _ = space_cut
            next_start = end + 1
        else:  # one long word: cut between two characters
            end, open_tags, next_start = i, stack, i
        if _shows_text(atoms[start:end]):
            parts.append(_render(carried, atoms[start:end], open_tags))
        carried = open_tags
        start = next_start
    return parts


def truncate_html(text: str, limit: int) -> str:
    """The leading part of `text` that fits `limit` visible characters, ending in '…'.

    Cut like `split_html` (at a line break where possible), tags closed; `text` itself
    when it already fits.
    """
    if visible_length(text) <= limit:
        return text
    return split_html(text, limit - _width(ELLIPSIS))[0].rstrip() + ELLIPSIS


def _apply_tag(stack: list[_Atom], atom: _Atom) -> None:
    if atom.tag is None:
        return
    if not atom.closing:
        stack.append(atom)
        return
    for depth in range(len(stack) - 1, -1, -1):
        if stack[depth].tag == atom.tag:
            del stack[depth]
            return


def _render(carried: list[_Atom], atoms: Iterable[_Atom], open_tags: list[_Atom]) -> str:
    body = "".join(a.raw for a in carried) + "".join(a.raw for a in atoms)
    return body + "".join(f"</{a.tag}>" for a in reversed(open_tags))


def _has_visible_text(text: str) -> bool:
    return _shows_text(_atoms(text))


def _shows_text(atoms: Iterable[_Atom]) -> bool:
    return any(a.width and not a.raw.isspace() for a in atoms)


# --------------------------------------------------------------------------- secrets


def token_secrets(token: str) -> list[str]:
    """The token as it can appear in text: raw and percent-encoded."""
    return [s for s in {token, quote(token, safe="")} if s]


# --------------------------------------------------------------------------- client


class TelegramApiError(ApiHttpError):
    """Telegram refused a call (after retries): names the Bot API method, the status and
    Telegram's description; the URL has the token replaced by `***`."""

    @property
    def api_method(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def description(self) -> str:
        return self.message

    @property
    def error_code(self) -> int | None:
        return self.status


def telegram_retry_after(response: HttpResponse) -> float | None:
    """Seconds to wait on 429: the body's `parameters.retry_after`, else Retry-After."""
    try:
        parameters = json.loads(response.content).get("parameters") or {}
        value = parameters.get("retry_after")
        if value is not None:
            return max(0.0, float(value))
    except (ValueError, AttributeError, TypeError):
        pass
    return retry_after_seconds(response)


class _TelegramHttp(HttpClient):
    """The shared client, with Telegram's error bodies turned into their description."""

    def _error_detail(self, response: HttpResponse) -> str:
        try:
            body = json.loads(response.content)
            description = str(body["description"])
        except (ValueError, KeyError, TypeError):
            return super()._error_detail(response)
        parameters = body.get("parameters") or {}
        if isinstance(parameters, dict) and parameters:
            details = ", ".join(f"{k}={v}" for k, v in sorted(parameters.items()))
            description = f"{description} ({details})"
        return self.redact(description)

    def _error(self, kind, method, shown, message, status, attempts):
        if kind is ApiHttpError:
            kind = TelegramApiError
        return super()._error(kind, method, shown, message, status, attempts)


def _chat(chat_id: int | str) -> int | str:
    """Numeric chat ids as int; `@channelusername` stays a string."""
    if isinstance(chat_id, int):
        return chat_id
    text = str(chat_id).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("@") and len(text) > 1:
        return text
    raise ValueError(f"telegram chat_id must be a number or @channelusername, got {text!r}")


class TelegramClient:
    """Bot API calls on one `HttpClient`; every send returns the message ids it created.

    Build it with `TelegramResource.client()`, which gives the HTTP client the token as
    a secret, Telegram's retry_after and its error descriptions.
    """

    def __init__(
        self,
        http: HttpClient,
        token: str,
        default_chat_id: int | str | None = None,
        logger: logging.Logger | Any | None = None,
    ):
        if not token:
            raise ValueError("telegram bot token is empty (set TELEGRAM_BOT_TOKEN)")
        if http.redact(token) == token:
            raise ValueError("the HttpClient must list the bot token in `secrets=`")
        self.http = http
        self._token = token
        self.default_chat_id = default_chat_id
        self.log = logger or log
        self._secrets = token_secrets(token)

    def __repr__(self) -> str:
        return f"TelegramClient(base_url={self.http.base_url!r})"

    # -- Bot API methods

    def call(
        self,
        api_method: str,
        *,
        json_body: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> Any:
        """POST one Bot API method and return its `result`."""
        path = f"bot{self._token}/{api_method}"
        if json_body is None and data is None and files is None:
            json_body = {}
        response = self.http.fetch_json("POST", path, json_body=json_body, data=data, files=files)
        body = response.body
        if not isinstance(body, dict) or body.get("ok") is not True or "result" not in body:
            shown = redact_text(str(body)[:200], self._secrets)
            raise ApiResponseError(
                SOURCE,
                "POST",
                self._shown_url(api_method),
                f"expected {{'ok': true, 'result': ...}}, got {shown}",
                response.response.status_code,
            )
        return body["result"]

    def get_me(self) -> dict[str, Any]:
        return self.call("getMe")

    def send_message(
        self,
        text: str,
        *,
        chat_id: int | str | None = None,
        disable_preview: bool = True,
        reply_to: int | None = None,
    ) -> list[int]:
        """Send HTML `text`, split at line boundaries into messages of <= 4096 characters."""
        chat = self._chat(chat_id)
        if not _has_visible_text(text):
            raise ValueError("telegram message text is empty")
        parts = split_html(text, MESSAGE_LIMIT)
        ids = []
        for part in parts:
            payload: dict[str, Any] = {
                "chat_id": chat,
                "text": part,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": disable_preview},
            }
            if reply_to is not None:
                payload["reply_parameters"] = {
                    "message_id": reply_to,
                    "allow_sending_without_reply": True,
                }
            result = self.call("sendMessage", json_body=payload)
            ids.append(self._message_id(result, "sendMessage"))
        self.log.info(f"telegram: sent {len(ids)} message(s) to chat {chat}: ids {ids}")
        return ids

    def send_photo(
        self,
        png_bytes: bytes,
        caption: str = "",
        *,
        chat_id: int | str | None = None,
        filename: str = "chart.png",
    ) -> list[int]:
        """Upload a PNG (multipart, file part `photo`) with an HTML caption.

        A caption over 1024 visible characters does not fit: the photo carries its
        leading lines (cut at a line break, ending in '…') and the whole text follows as
        a reply to the photo, split like any message. Returns the photo's message id,
        then those of the follow-up messages.
        """
        chat = self._chat(chat_id)
        if not png_bytes:
            raise ValueError("telegram photo is empty")
        if len(png_bytes) > PHOTO_MAX_BYTES:
            raise ValueError(
                f"telegram photo of {len(png_bytes)} bytes exceeds the 10 MB upload limit"
            )
        fits = visible_length(caption) <= CAPTION_LIMIT
        shown_caption = caption if fits else truncate_html(caption, CAPTION_LIMIT)
        data = {"chat_id": str(chat), "parse_mode": "HTML"}
        if _has_visible_text(shown_caption):
            data["caption"] = shown_caption
        result = self.call(
            "sendPhoto", data=data, files={"photo": (filename, bytes(png_bytes), "image/png")}
        )
        photo_id = self._message_id(result, "sendPhoto")
        self.log.info(f"telegram: sent photo to chat {chat}: id {photo_id}")
        if fits:
            return [photo_id]
        return [photo_id, *self.send_message(caption, chat_id=chat, reply_to=photo_id)]

    # -- internals

    def _chat(self, chat_id: int | str | None) -> int | str:
        chosen = chat_id if chat_id not in (None, "") else self.default_chat_id
        if chosen in (None, ""):
            raise ValueError("no telegram chat_id given and none configured (TELEGRAM_CHAT_ID)")
        return _chat(chosen)

    def _message_id(self, result: Any, api_method: str) -> int:
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            shown = redact_text(repr(result)[:200], self._secrets)
            raise ApiResponseError(
                SOURCE, "POST", self._shown_url(api_method), f"result has no message_id: {shown}"
            )
        return message_id

    def _shown_url(self, api_method: str) -> str:
        return redact_url(self.http.url(f"bot{self._token}/{api_method}"), self._secrets)

    def close(self) -> None:
        self.http.close()


# --------------------------------------------------------------------------- resource


class TelegramResource(HttpApiResource):
    """The on-call chat: Telegram's Bot API, or the local simulator via TELEGRAM_API_URL.

    Configure the token with `dg.EnvVar("TELEGRAM_BOT_TOKEN")` (see `from_env`), never
    a literal: it is kept out of repr, errors and logs, but run config is shown in the UI.
    """

    bot_token: str = Field(description="TELEGRAM_BOT_TOKEN: the bot's token.", repr=False)
    chat_id: str = Field(
        description="TELEGRAM_CHAT_ID: default chat (number, negative for groups, or @channel)."
    )
    base_url: str = Field(default=DEFAULT_API_URL, description="TELEGRAM_API_URL")
    max_attempts: int = Field(default=5, description="Tries per call on timeouts and 5xx.")
    max_retry_after_seconds: float = Field(
        default=60.0, description="Longest single wait on a 429's retry_after."
    )
    max_rate_limit_waits: int = Field(
        default=3, description="429 waits per call before giving up with an error."
    )
    messages_per_minute: float | None = Field(
        default=None,
        description="Client-side pacing per resource; None relies on Telegram's 429s.",
    )

    _client: TelegramClient | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_env(cls, **overrides: Any) -> TelegramResource:
        """Token and chat from the environment (TELEGRAM_API_URL only when set)."""
        fields: dict[str, Any] = {
            "bot_token": dg.EnvVar("TELEGRAM_BOT_TOKEN"),
            "chat_id": dg.EnvVar("TELEGRAM_CHAT_ID"),
            **env_fields(base_url="TELEGRAM_API_URL"),
        }
        return cls(**{**fields, **overrides})

    def client(self, logger: logging.Logger | Any | None = None) -> TelegramClient:
        """A new client (own connection pool and pacing); `close()` it when done."""
        http = _TelegramHttp(
            self.base_url,
            SOURCE,
            timeout=self.http_timeout(),
            retry=self.retry_policy(),
            rate_limiter=RateLimiter(self.messages_per_minute),
            secrets=token_secrets(self.bot_token),
            retry_after=telegram_retry_after,
            logger=logger,
        )
        return TelegramClient(http, self.bot_token, self.chat_id or None, logger=logger)

    def _shared_client(self) -> TelegramClient:
        with self._client_lock:
            if self._client is None:
                self._client = self.client()
            return self._client

    def send_message(
        self, text: str, *, chat_id: int | str | None = None, disable_preview: bool = True
    ) -> list[int]:
        """Send HTML text (split over 4096 characters); the message ids sent."""
        return self._shared_client().send_message(
            text, chat_id=chat_id, disable_preview=disable_preview
        )

    def send_photo(
        self, png_bytes: bytes, caption: str = "", *, chat_id: int | str | None = None
    ) -> list[int]:
        """Send a PNG with an HTML caption (see `TelegramClient.send_photo` for > 1024)."""
        return self._shared_client().send_photo(png_bytes, caption, chat_id=chat_id)

    def get_me(self) -> dict[str, Any]:
        return self._shared_client().get_me()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
