"""Neople Open API (Dungeon&Fighter) client and resource, on the shared HTTP client.

The API key travels as the `apikey` query parameter and is registered as a secret, so
errors and logs show `apikey=***`. Neople's error bodies (`{"error": {"status", "code",
"message"}}`) become `NeopleApiError`s naming the code; API002 (rate limit, 429 with
Retry-After) and DNF980 (maintenance, 503) are retried with backoff by the HTTP client,
every other code fails the request at once. A timeline is read one KST day at a time:
`startDate=D 00:00`, `endDate=D 23:59` (both minutes inclusive), `limit=100`, following
`next` tokens until there are none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import requests
from pydantic import Field

from signalbox.platform.http import (
    ApiError,
    ApiHttpError,
    ApiResponseError,
    HttpApiResource,
    HttpClient,
    RateLimiter,
)
from signalbox.platform.settings import env_fields, env_int_fields

SOURCE = "neople"
DEFAULT_BASE_URL = "https://api.neople.co.kr"
TIMELINE_PAGE_LIMIT = 100  # the API's maximum
RETRIED_CODES = frozenset({"API002", "DNF980"})
_CODE_RE = re.compile(r"^(API\d{3}|DNF\d{3})\b")
_CHARACTER_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_SERVER_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# what a person should do about the codes a configuration can cause
CODE_HINTS = {
    "API000": "no API key sent (set NEOPLE_API_KEY)",
    "API001": "invalid game id in the URL",
    "API002": "request limit exceeded (lower NEOPLE_RATE_LIMIT_PER_MINUTE)",
    "API003": "invalid API key (check NEOPLE_API_KEY)",
    "API004": "the API key is blocked",
    "DNF000": "invalid serverId (check NEOPLE_CHARACTERS)",
    "DNF001": "character not found (check NEOPLE_CHARACTERS)",
    "DNF006": "invalid timeline date parameters",
    "DNF980": "Neople is under maintenance (SYSTEM_INSPECT); run the day again later",
}


# --------------------------------------------------------------------------- errors


class NeopleApiError(ApiHttpError):
    """Neople answered with an error body; `code` is its code (e.g. DNF001), if it sent one."""

    @property
    def code(self) -> str | None:
        match = _CODE_RE.match(self.message)
        return match.group(1) if match else None


class NeopleTimelineError(RuntimeError):
    """Fetching one character's timeline for one KST day failed; the cause is chained."""

    def __init__(self, message: str, *, character: str, day: date, page: int, code: str | None):
        super().__init__(message)
        self.character = character
        self.day = day
        self.page = page
        self.code = code


def parse_error_body(content: bytes) -> tuple[str, str] | None:
    """(code, message) of a Neople error body, None for any other body."""
    try:
        error = json.loads(content)["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None
    return (code, message) if _CODE_RE.match(code) else None


class _NeopleHttp(HttpClient):
    """The shared client, with Neople's error bodies turned into `CODE MESSAGE (hint)`."""

    def _error_detail(self, response: requests.Response) -> str:
        parsed = parse_error_body(response.content)
        if parsed is None:
            return super()._error_detail(response)
        code, message = parsed
        hint = CODE_HINTS.get(code)
        return self.redact(f"{code} {message}" + (f" ({hint})" if hint else ""))

    def _error(self, kind, method, shown, message, status, attempts):
        if kind is ApiHttpError:
            kind = NeopleApiError
        return super()._error(kind, method, shown, message, status, attempts)


# --------------------------------------------------------------------------- characters


@dataclass(frozen=True)
class CharacterRef:
    """A configured character: its server and either its id or its exact name."""

    server_id: str
    character_id: str | None = None
    character_name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.server_id}:{self.character_id or self.character_name}"


@dataclass(frozen=True)
class Character:
    """A character whose id is known (configured, or resolved from its name)."""

    server_id: str
    character_id: str
    character_name: str | None = None

    @property
    def label(self) -> str:
        name = f" ({self.character_name})" if self.character_name else ""
        return f"{self.server_id}:{self.character_id}{name}"


MAX_NAME_LENGTH = 64  # ids are 32 hex digits; the game's names are far shorter


def parse_characters(text: str) -> list[CharacterRef]:
    """`serverId:characterId` or `serverId:characterName` items, separated by commas or
    new lines, e.g. `cain:6a1f...e2,siroco:붉은여우`. A 32-character lowercase hex value is
    an id; anything else is an exact character name, looked up with the search endpoint.
    """
    refs: list[CharacterRef] = []
    seen: set[tuple[str, str]] = set()
    for raw in re.split(r"[,\n]", text or ""):
        item = raw.strip()
        if not item:
            continue
        server_id, sep, value = item.partition(":")
        server_id, value = server_id.strip().lower(), value.strip()
        shown = item if len(item) <= 60 else item[:60] + "..."
        if not sep or not value or not _SERVER_ID_RE.match(server_id):
            raise ValueError(
                f"NEOPLE_CHARACTERS: {shown!r} is not `serverId:characterId` or "
                "`serverId:characterName` (e.g. `cain:검은달빛`)"
            )
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(
                f"NEOPLE_CHARACTERS: {shown!r}: a character name or id is at most "
                f"{MAX_NAME_LENGTH} characters"
            )
        if (server_id, value) in seen:
            raise ValueError(f"NEOPLE_CHARACTERS: {item!r} is listed twice")
        seen.add((server_id, value))
        if _CHARACTER_ID_RE.match(value):
            refs.append(CharacterRef(server_id, character_id=value))
        else:
            refs.append(CharacterRef(server_id, character_name=value))
    if not refs:
        raise ValueError("NEOPLE_CHARACTERS is empty: list `serverId:characterId` items")
    return refs


# --------------------------------------------------------------------------- client


@dataclass
class TimelinePage:
    number: int  # 1-based
    rows: list[Any]
    profile: dict[str, Any]  # the character fields heading the response
    next_token: str | None


def day_bounds(day: date) -> tuple[str, str]:
    """The KST minutes a day spans, as the API's `startDate`/`endDate` (both inclusive)."""
    return f"{day.isoformat()} 00:00", f"{day.isoformat()} 23:59"


class NeopleClient:
    def __init__(self, http: HttpClient, page_limit: int = TIMELINE_PAGE_LIMIT, max_pages=5000):
        self.http = http
        self.page_limit = page_limit
        self.max_pages = max_pages

    def search(self, server_id: str, name: str) -> list[dict[str, Any]]:
        """Characters named exactly `name` on the server (`wordType=match`)."""
        body = self.http.get_json(
            f"/df/servers/{server_id}/characters",
            {"characterName": name, "wordType": "match", "limit": 200},
        )
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise ApiResponseError(
                SOURCE, "GET", f"/df/servers/{server_id}/characters", "no `rows` list in the answer"
            )
        return rows

    def resolve(self, refs: Sequence[CharacterRef]) -> list[Character]:
        """Every ref with its id (names are looked up); errors name the configured item."""
        found: list[Character] = []
        for ref in refs:
            if ref.character_id:
                found.append(Character(ref.server_id, ref.character_id, ref.character_name))
                continue
            try:
                rows = self.search(ref.server_id, ref.character_name or "")
            except ApiError as exc:
                raise ValueError(
                    f"NEOPLE_CHARACTERS: looking up {ref.label} failed: {exc}"
                ) from exc
            exact = [r for r in rows if r.get("characterName") == ref.character_name]
            if len(exact) != 1:
                what = "no character" if not exact else f"{len(exact)} characters"
                raise ValueError(
                    f"NEOPLE_CHARACTERS: {what} named {ref.character_name!r} on server "
                    f"{ref.server_id!r}; list it as `{ref.server_id}:<characterId>` instead"
                )
            found.append(Character(ref.server_id, exact[0]["characterId"], ref.character_name))
        ids = [c.character_id for c in found]
        if len(set(ids)) != len(ids):
            raise ValueError("NEOPLE_CHARACTERS names the same character twice")
        return found

    def timeline_day(self, character: Character, day: date) -> Iterator[TimelinePage]:
        """The character's timeline for one KST day, page by page (newest rows first).

        Every failure is a `NeopleTimelineError` naming the character, the day and the
        page, with the HTTP client's error (code, redacted URL, attempts) chained.
        """
        start, end = day_bounds(day)
        path = f"/df/servers/{character.server_id}/characters/{character.character_id}/timeline"
        params: dict[str, Any] = {"startDate": start, "endDate": end, "limit": self.page_limit}
        token: str | None = None
        seen: set[str] = set()
        number = 0
        while True:
            number += 1
            try:
                body = self.http.get_json(path, {**params, "next": token} if token else params)
                page = _timeline_page(body, number, character)
            except ApiError as exc:
                raise self._failed(character, day, number, exc) from exc
            yield page
            token = page.next_token
            if not token:
                return
            if token in seen or number >= self.max_pages:
                cause = ApiResponseError(
                    SOURCE,
                    "GET",
                    path,
                    f"paging does not end (token repeated after {number} pages)",
                )
                raise self._failed(character, day, number, cause) from cause
            seen.add(token)

    def _failed(self, character: Character, day: date, page: int, exc: ApiError):
        code = getattr(exc, "code", None)
        return NeopleTimelineError(
            f"neople: timeline of {character.label} for KST day {day} failed on page {page}: {exc}",
            character=character.label,
            day=day,
            page=page,
            code=code,
        )


def _timeline_page(body: Any, number: int, character: Character) -> TimelinePage:
    timeline = body.get("timeline") if isinstance(body, dict) else None
    rows = timeline.get("rows") if isinstance(timeline, dict) else None
    if not isinstance(rows, list):
        raise ApiResponseError(
            SOURCE,
            "GET",
            f"timeline of {character.label}",
            "the answer has no `timeline.rows` list",
        )
    if body.get("characterId") not in (None, character.character_id):
        raise ApiResponseError(
            SOURCE,
            "GET",
            f"timeline of {character.label}",
            f"the answer is for character {body.get('characterId')!r}",
        )
    token = timeline.get("next")
    profile = {k: v for k, v in body.items() if k != "timeline"}
    return TimelinePage(number, rows, profile, str(token) if token else None)


# --------------------------------------------------------------------------- resource


class NeopleResource(HttpApiResource):
    """The Neople Open API (or its local simulator) and the characters to follow.

    Build it with `from_env()`: the key and the character list are `dg.EnvVar`s, so their
    values never enter run config; the key is never logged.
    """

    base_url: str = Field(default=DEFAULT_BASE_URL, description="NEOPLE_BASE_URL")
    api_key: str = Field(description="NEOPLE_API_KEY (sent as `apikey`, never logged)", repr=False)
    characters: str = Field(
        description=(
            "NEOPLE_CHARACTERS: `serverId:characterId` or `serverId:characterName`, "
            "comma-separated (e.g. `cain:검은달빛,siroco:5f1c...`)."
        )
    )
    rate_limit_per_minute: int | None = Field(
        default=600,
        description="NEOPLE_RATE_LIMIT_PER_MINUTE: client-side pacing per run (None: none).",
    )
    page_limit: int = Field(default=TIMELINE_PAGE_LIMIT, description="Rows per timeline page.")

    @classmethod
    def from_env(cls, **overrides: Any) -> NeopleResource:
        """Key and characters from the environment; the base URL and rate when set."""
        fields: dict[str, Any] = {
            "api_key": dg.EnvVar("NEOPLE_API_KEY"),
            "characters": dg.EnvVar("NEOPLE_CHARACTERS"),
            **env_fields(base_url="NEOPLE_BASE_URL"),
            **env_int_fields(rate_limit_per_minute="NEOPLE_RATE_LIMIT_PER_MINUTE"),
        }
        return cls(**{**fields, **overrides})

    def character_refs(self) -> list[CharacterRef]:
        return parse_characters(self.characters)

    def client(self, logger=None) -> NeopleClient:
        """A new client (own connection pool and pacing); the key is a registered secret."""
        if not self.api_key:
            raise ValueError("NEOPLE_API_KEY is empty")
        http = _NeopleHttp(
            self.base_url,
            SOURCE,
            timeout=self.http_timeout(),
            retry=self.retry_policy(),
            rate_limiter=RateLimiter(self.rate_limit_per_minute),
            secrets=[self.api_key],
            logger=logger,
        )
        # on every request; redacted in the client's errors and in urllib3's debug lines
        http.session.params = {"apikey": self.api_key}
        return NeopleClient(http, page_limit=self.page_limit)
