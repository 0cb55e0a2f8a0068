"""Help Scout Mailbox API 2.0 client, on the shared HTTP client.

OAuth2 client credentials (a token lasts 48 h; on 401 a fresh one is fetched once),
HAL pages walked by `page` number (the `_links` do not carry query params), and
`status=all` always (the API's default is `active` only).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from signalbox.platform.http import (
    ApiResponseError,
    AuthProvider,
    HttpApiResource,
    HttpClient,
    RateLimiter,
)
from signalbox.platform.settings import env_fields

SOURCE = "helpscout"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HelpScoutAuth(AuthProvider):
    """Client-credentials token, fetched lazily and refreshed before it expires."""

    def __init__(
        self, client_id: str, client_secret: str, clock: Callable[[], float] = time.monotonic
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def headers(self, client: HttpClient) -> dict[str, str]:
        with self._lock:
            if self._token is None or self.clock() > self._expires_at:
                self._fetch(client)
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch(self, client: HttpClient) -> None:
        body = client.fetch_json(
            "POST",
            "/v2/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            authenticate=False,
        ).body
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise ApiResponseError(
                SOURCE, "POST", client.url("/v2/oauth2/token"), "token response has no access_token"
            )
        self._token = token
        # refresh a minute early so a long crawl never sends an expired token
        self._expires_at = self.clock() + max(0, int(body.get("expires_in", 0)) - 60)

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret, self._token) if s]


@dataclass
class ConversationPage:
    number: int
    total_pages: int
    total_elements: int
    conversations: list[dict[str, Any]]
    server_time: datetime | None  # the response's Date header


class HelpScoutClient:
    def __init__(self, http: HttpClient):
        self.http = http

    def mailboxes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.http.get_json("/v2/mailboxes", {"page": page})
            items = _embedded(body, "mailboxes", "/v2/mailboxes", page)
            _require_ids(items, "mailbox", page)
            found.extend(items)
            block = _page_block(body, "/v2/mailboxes", page)
            if block["number"] >= block["totalPages"] or not items:
                return found
            page += 1

    def conversation_pages(
        self, mailbox_ids: list[int], modified_since: datetime | None
    ) -> Iterator[ConversationPage]:
        """Every conversation modified since `modified_since`, oldest-created first.

        Sorting by createdAt (not modifiedAt) keeps positions stable when a conversation
        changes mid-crawl; insertions only repeat an item on the next page (deduplicated
        downstream), they never skip one.
        """
        params: dict[str, Any] = {
            "mailbox": ",".join(str(i) for i in mailbox_ids),
            "status": "all",
            "sortField": "createdAt",
            "sortOrder": "asc",
            "embed": "threads",
        }
        if modified_since is not None:
            params["modifiedSince"] = iso_utc(modified_since)
        page = 1
        while True:
            fetched = self.http.fetch_json(
                "GET", "/v2/conversations", params={**params, "page": page}
            )
            body = fetched.body
            items = _embedded(body, "conversations", "/v2/conversations", page)
            _require_ids(items, "conversation", page, also=("mailboxId",))
            block = _page_block(body, "/v2/conversations", page)
            yield ConversationPage(
                number=block["number"],
                total_pages=block["totalPages"],
                total_elements=block["totalElements"],
                conversations=items,
                server_time=_server_time(fetched.headers.get("Date")),
            )
            if block["number"] >= block["totalPages"] or not items:
                return
            page += 1

    def count_conversations(self, mailbox_id: int, modified_since: datetime | None) -> int:
        """The API's totalElements for one mailbox's listing (one request)."""
        params: dict[str, Any] = {"mailbox": mailbox_id, "status": "all", "page": 1}
        if modified_since is not None:
            params["modifiedSince"] = iso_utc(modified_since)
        body = self.http.get_json("/v2/conversations", params)
        return int(_page_block(body, "/v2/conversations", 1)["totalElements"])


def _embedded(body: Any, name: str, path: str, page: int) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiResponseError(SOURCE, "GET", path, f"page {page}: expected a JSON object")
    embedded = body.get("_embedded") or {}
    items = embedded.get(name, [])
    if not isinstance(items, list):
        raise ApiResponseError(SOURCE, "GET", path, f"page {page}: _embedded.{name} is not a list")
    return items


def _page_block(body: dict[str, Any], path: str, page: int) -> dict[str, int]:
    block = body.get("page")
    try:
        return {k: int(block[k]) for k in ("number", "totalPages", "totalElements", "size")}
    except (TypeError, KeyError, ValueError):
        raise ApiResponseError(
            SOURCE, "GET", path, f"page {page}: missing or invalid 'page' block: {block!r}"
        ) from None


def _require_ids(items: list[Any], kind: str, page: int, also: tuple[str, ...] = ()) -> None:
    for position, item in enumerate(items, start=1):
        for name in ("id", *also):
            value = item.get(name) if isinstance(item, dict) else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ApiResponseError(
                    SOURCE,
                    "GET",
                    f"/v2/{kind}s",
                    f"{kind} #{position} on page {page} has no integer '{name}' "
                    f"(got {value!r}); nothing from this page was stored",
                )


def _server_time(header: str | None) -> datetime | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).astimezone(UTC)
    except (TypeError, ValueError):
        return None


class HelpScoutResource(HttpApiResource):
    """Credentials and limits for the Help Scout API (or its local simulator)."""

    base_url: str = Field(default="https://api.helpscout.net", description="HELPSCOUT_BASE_URL")
    client_id: str = Field(description="HELPSCOUT_CLIENT_ID")
    client_secret: str = Field(description="HELPSCOUT_CLIENT_SECRET")
    rate_limit_per_minute: float | None = Field(
        default=None,
        description="Budget before the server's X-RateLimit headers are seen (plan: 200-800).",
    )
    backfill_start: str = Field(
        default="2020-01-01",
        description="HELPSCOUT_BACKFILL_START: the first run fetches conversations modified since.",
    )
    overlap_minutes: int = Field(
        default=10, description="How far before the last mark each incremental crawl starts."
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> HelpScoutResource:
        """Credentials from the environment; the base URL and backfill start when set."""
        return cls(
            client_id=dg.EnvVar("HELPSCOUT_CLIENT_ID"),
            client_secret=dg.EnvVar("HELPSCOUT_CLIENT_SECRET"),
            **env_fields(base_url="HELPSCOUT_BASE_URL", backfill_start="HELPSCOUT_BACKFILL_START"),
            **overrides,
        )

    def backfill_start_at(self) -> datetime:
        try:
            start = datetime.fromisoformat(self.backfill_start)
        except ValueError:
            shown = self.backfill_start[:40]
            raise ValueError(
                f"HELPSCOUT_BACKFILL_START must be a day or an ISO time, got {shown!r}"
            ) from None
        return start if start.tzinfo else start.replace(tzinfo=UTC)

    def client(self, logger=None) -> HelpScoutClient:
        http = HttpClient(
            self.base_url,
            SOURCE,
            timeout=self.http_timeout(),
            retry=self.retry_policy(),
            rate_limiter=RateLimiter(self.rate_limit_per_minute),
            auth=HelpScoutAuth(self.client_id, self.client_secret),
            secrets=[self.client_secret],
            logger=logger,
        )
        return HelpScoutClient(http)
