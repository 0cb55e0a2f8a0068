"""CFPB Consumer Complaint Database search API client, on the shared HTTP client.

Ingestion pages the way the API's own limits ask (API_CONTRACTS.md 3): one window of
days at a time (`date_received_min` inclusive, `date_received_max` exclusive),
`sort=created_date_asc`, `no_aggs=true`, `size=100`, and `search_after` taken from the
last hit's `sort` array. Never `frm`: upstream validates it but does not use it as an
offset, so paging with it returns the first page again.

Every hit is checked before anything of its page is stored: a hit without
`complaint_id` or `date_received` raises `CfpbRecordError` naming the window, page,
position and `_id`. Fields this code does not know are kept verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from signalbox.platform.http import (
    ApiResponseError,
    HttpApiResource,
    HttpClient,
    RateLimiter,
    RetryPolicy,
    redact_url,
)
from signalbox.platform.settings import env_fields, env_int_fields

SOURCE = "cfpb"
DEFAULT_BASE_URL = (
    "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/"
)
INGEST_SORT = "created_date_asc"
NEWEST_FIRST = "created_date_desc"


class CfpbRecordError(ApiResponseError):
    """A hit the pipeline cannot key or place: names the window, page, position and field."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        window: str,
        page: int,
        position: int,
        record_id: str | None,
        field_name: str,
    ):
        self.window = window
        self.page = page
        self.position = position
        self.record_id = record_id
        self.field_name = field_name
        super().__init__(SOURCE, "GET", url, message)


class CfpbPagingError(ApiResponseError):
    """The search_after chain cannot continue (no usable `sort` on the last hit, or no
    progress): stopping is better than looping or skipping complaints."""


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class DayWindow:
    """Complaints received on `start` <= day < `end` (the API's min/max semantics)."""

    start: date
    end: date

    def params(self) -> dict[str, str]:
        return {
            "date_received_min": self.start.isoformat(),
            "date_received_max": self.end.isoformat(),
        }

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        if last == self.start:
            return self.start.isoformat()
        return f"{self.start.isoformat()}..{last.isoformat()}"


def received_day(value: Any) -> date | None:
    """`date_received` as a date: the API writes noon with a fixed -05:00 offset, so the
    calendar date is the first ten characters. None when it is not a date."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def search_after_value(sort: Any) -> str | None:
    """The `search_after` parameter for a hit's `sort` array: `<epoch ms>_<id>`."""
    if not isinstance(sort, list) or len(sort) != 2:
        return None
    value, complaint_id = sort
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    if complaint_id is None or str(complaint_id) == "" or "_" in str(complaint_id):
        return None
    return f"{int(value)}_{complaint_id}"


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Complaint:
    """One validated hit: the key, the day it was received and `_source` verbatim."""

    complaint_id: str
    date_received: date
    source: dict[str, Any]


@dataclass
class SearchPage:
    window: DayWindow
    number: int  # 1-based within the window
    total: int  # hits.total.value of the window at the time of this page
    complaints: list[Complaint]
    search_after: str | None  # what this page was asked with


@dataclass(frozen=True)
class Probe:
    """One `size=1`, newest-first search: how many complaints a window holds and the newest."""

    total: int
    newest_id: str | None
    newest_date: date | None
    newest_sort: str | None  # the newest hit's sort as search_after text
    last_indexed: str | None = None  # _meta.last_indexed

    @property
    def signature(self) -> str:
        return f"{self.total}@{self.newest_sort or '-'}"


@dataclass
class CfpbClient:
    http: HttpClient
    page_size: int = 100
    path: str = ""
    pages_fetched: int = field(default=0, init=False)

    def probe(self, date_min: date | None = None) -> Probe:
        """The window's total and its newest complaint, in one cheap request."""
        params: dict[str, Any] = {"size": 1, "sort": NEWEST_FIRST, "no_aggs": "true"}
        if date_min is not None:
            params["date_received_min"] = date_min.isoformat()
        body = self.http.get_json(self.path, params)
        where = f"probe since {date_min.isoformat() if date_min else 'the start'}"
        url = self._shown(params)
        total, hits = _hits(body, url, where)
        meta = body.get("_meta") if isinstance(body.get("_meta"), dict) else {}
        if not hits:
            return Probe(total, None, None, None, meta.get("last_indexed"))
        top = hits[0]
        source = top.get("_source") if isinstance(top, dict) else None
        source = source if isinstance(source, dict) else {}
        newest_id = source.get("complaint_id") or (
            top.get("_id") if isinstance(top, dict) else None
        )
        newest_date = received_day(source.get("date_received"))
        if newest_date is None:
            raise CfpbRecordError(
                url,
                f"{where}: the newest hit (_id {top.get('_id')!r}) has no usable "
                f"'date_received' (got {source.get('date_received')!r})",
                window=where,
                page=1,
                position=1,
                record_id=str(newest_id) if newest_id is not None else None,
                field_name="date_received",
            )
        return Probe(
            total,
            str(newest_id) if newest_id is not None else None,
            newest_date,
            search_after_value(top.get("sort")),
            meta.get("last_indexed"),
        )

    def count(self, window: DayWindow) -> int:
        """The window's `hits.total` (`size=0`: no hits, one request)."""
        params: dict[str, Any] = {**window.params(), "size": 0, "no_aggs": "true"}
        body = self.http.get_json(self.path, params)
        return _hits(body, self._shown(params), f"count of window {window.label}")[0]

    def _shown(self, params: dict[str, Any]) -> str:
        """The request's URL as errors show it (query included, secrets redacted)."""
        return redact_url(f"{self.http.url(self.path)}?{urlencode(params)}")

    def pages(self, window: DayWindow) -> Iterator[SearchPage]:
        """Every complaint of the window, oldest first, one page per request."""
        base = {
            **window.params(),
            "sort": INGEST_SORT,
            "no_aggs": "true",
            "no_highlight": "true",
            "size": self.page_size,
        }
        after: str | None = None
        number = 0
        while True:
            number += 1
            params = {**base, **({"search_after": after} if after else {})}
            body = self.http.get_json(self.path, params)
            url = self._shown(params)
            where = f"window {window.label} page {number}" + (
                f" (search_after={after})" if after else ""
            )
            total, hits = _hits(body, url, where)
            complaints = [
                _complaint(hit, url, where, window, number, i) for i, hit in enumerate(hits, 1)
            ]
            self.pages_fetched += 1
            yield SearchPage(window, number, total, complaints, after)
            if len(hits) < self.page_size or not hits:
                return
            following = search_after_value(hits[-1].get("sort"))
            if following is None:
                raise CfpbPagingError(
                    SOURCE,
                    "GET",
                    url,
                    f"{where}: the last hit (_id {hits[-1].get('_id')!r}) has no usable "
                    f"'sort' array (got {hits[-1].get('sort')!r}); cannot page on with "
                    "search_after. The complaints before it were stored.",
                )
            if following == after:
                raise CfpbPagingError(
                    SOURCE,
                    "GET",
                    url,
                    f"{where}: search_after did not move past {after}; stopping instead "
                    "of requesting the same page forever.",
                )
            after = following


def _hits(body: Any, url: str, where: str) -> tuple[int, list[Any]]:
    """`hits.total.value` and `hits.hits` of a search body, or an error naming the page."""
    hits_block = body.get("hits") if isinstance(body, dict) else None
    hits = hits_block.get("hits") if isinstance(hits_block, dict) else None
    if not isinstance(hits, list):
        raise ApiResponseError(
            SOURCE, "GET", url, f"{where}: the body has no hits.hits list; nothing stored from it"
        )
    total = hits_block.get("total")
    value = total.get("value") if isinstance(total, dict) else total
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiResponseError(
            SOURCE, "GET", url, f"{where}: hits.total.value is not a number (got {total!r})"
        )
    return value, hits


def _complaint(
    hit: Any, url: str, where: str, window: DayWindow, page: int, position: int
) -> Complaint:
    hit_id = hit.get("_id") if isinstance(hit, dict) else None
    source = hit.get("_source") if isinstance(hit, dict) else None

    def fail(field_name: str, problem: str) -> CfpbRecordError:
        shown = f"_id {hit_id!r}" if hit_id is not None else "no _id"
        return CfpbRecordError(
            url,
            f"{where}: hit #{position} ({shown}) {problem}; nothing from this page was stored",
            window=window.label,
            page=page,
            position=position,
            record_id=str(hit_id) if hit_id is not None else None,
            field_name=field_name,
        )

    if not isinstance(source, dict):
        raise fail("_source", "has no _source object")
    complaint_id = source.get("complaint_id")
    if isinstance(complaint_id, bool) or not isinstance(complaint_id, str | int):
        raise fail("complaint_id", f"has no 'complaint_id' (got {complaint_id!r})")
    complaint_id = str(complaint_id).strip()
    if not complaint_id:
        raise fail("complaint_id", "has an empty 'complaint_id'")
    received = received_day(source.get("date_received"))
    if received is None:
        value = source.get("date_received", "<missing>")
        raise fail("date_received", f"has no usable 'date_received' (got {value!r})")
    return Complaint(complaint_id, received, source)


# --------------------------------------------------------------------------- resource


class CfpbResource(HttpApiResource):
    """The CFPB complaint search API (or its local simulator) and how to crawl it."""

    base_url: str = Field(
        default=DEFAULT_BASE_URL, description="CFPB_BASE_URL: the search endpoint (…/api/v1/)."
    )
    rate_limit_per_minute: int | None = Field(
        default=20,
        description=(
            "CFPB_RATE_LIMIT_PER_MINUTE: requests per minute; upstream throttles anonymous "
            "searches at 20/min per IP. None or 0: no client-side pacing."
        ),
    )
    backfill_start: str | None = Field(
        default=None,
        description=(
            "CFPB_BACKFILL_START (YYYY-MM-DD): the first day fetched on the first run, and "
            "never fetched before afterwards. Unset: `backfill_days` before the newest complaint."
        ),
    )
    backfill_days: int = Field(
        default=30, description="CFPB_BACKFILL_DAYS: the first run's depth when no start is set."
    )
    lookback_days: int = Field(
        default=16,
        description=(
            "CFPB_LOOKBACK_DAYS: each run re-reads this many days before the newest stored "
            "date received (complaints are published up to 15 days after they are received)."
        ),
    )
    reconcile_days: int = Field(
        default=60,
        description=(
            "CFPB_RECONCILE_DAYS: the reconcile pass re-reads this many days before the "
            "newest stored date received: complaints published later than the lookback, and "
            "company responses updated on older complaints."
        ),
    )
    reconcile_every_hours: int = Field(
        default=24,
        description=(
            "CFPB_RECONCILE_EVERY_HOURS: how often the poller asks for a reconcile pass "
            "(between two passes, each run is incremental)."
        ),
    )
    window_days: int = Field(default=1, description="Days per search window (one slice).")
    page_size: int = Field(default=100, description="Hits per page (`size`).")
    read_timeout_seconds: float = 60.0
    max_attempts: int = Field(default=6, description="Tries per request (5xx, 424, timeouts).")

    @classmethod
    def from_env(cls, **overrides: Any) -> CfpbResource:
        """Fields from the environment variables that are set; the rest keep defaults."""
        fields = {
            **env_fields(base_url="CFPB_BASE_URL", backfill_start="CFPB_BACKFILL_START"),
            **env_int_fields(
                rate_limit_per_minute="CFPB_RATE_LIMIT_PER_MINUTE",
                backfill_days="CFPB_BACKFILL_DAYS",
                lookback_days="CFPB_LOOKBACK_DAYS",
                reconcile_days="CFPB_RECONCILE_DAYS",
                reconcile_every_hours="CFPB_RECONCILE_EVERY_HOURS",
            ),
        }
        return cls(**{**fields, **overrides})

    def backfill_start_date(self) -> date | None:
        if not self.backfill_start:
            return None
        try:
            return date.fromisoformat(self.backfill_start)
        except ValueError:
            shown = self.backfill_start[:40]
            raise ValueError(f"CFPB_BACKFILL_START must be YYYY-MM-DD, got {shown!r}") from None

    def http_client(self, logger=None, *, retry: RetryPolicy | None = None) -> HttpClient:
        return HttpClient(
            self.base_url,
            SOURCE,
            timeout=self.http_timeout(),
            retry=retry or self.retry_policy(),
            rate_limiter=RateLimiter(self.rate_limit_per_minute or None),
            logger=logger,
        )

    def client(self, logger=None) -> CfpbClient:
        return CfpbClient(self.http_client(logger), page_size=self.page_size)

    def probe_client(self, logger=None) -> CfpbClient:
        """For the sensor: one request per tick, two tries, short waits; a longer outage is
        the next tick's business, not a reason to hold the daemon."""
        retry = RetryPolicy(
            max_attempts=2,
            backoff_base=self.backoff_base_seconds,
            max_rate_limit_waits=1,
            max_retry_after=10.0,
        )
        return CfpbClient(self.http_client(logger, retry=retry), page_size=self.page_size)
