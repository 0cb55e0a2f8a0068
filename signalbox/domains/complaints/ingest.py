"""Incremental pull of CFPB complaints by date received into the raw JSON table.

The watermark is derived from stored data (DESIGN.md): the next run starts at
`max(date_received stored) - lookback_days`, never before the configured backfill start;
the first run starts at the backfill start (or `backfill_days` before the newest
complaint). The lookback exists because about a fifth of complaints are published one
to fifteen days after the day they were received, so a day already fetched can still
grow; 16 days re-reads every day that can. Windows are walked oldest first and every page
is committed as it arrives, so a run that fails keeps everything before the failure and
the stored maximum never passes a day whose earlier days are incomplete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from signalbox.domains.complaints.cfpb import CfpbClient, DayWindow, Probe, SearchPage
from signalbox.platform.warehouse import RawJsonTable, WarehouseResource

COMPLAINTS = RawJsonTable(
    "raw.cfpb_complaints", key="complaint_id", key_type="text", columns={"date_received": "date"}
)
PREVIEW_FIELDS = (
    "complaint_id",
    "date_received",
    "product",
    "company",
    "state",
    "company_response",
)


# --------------------------------------------------------------------------- pure logic


def crawl_start(
    stored_max: date | None,
    *,
    lookback_days: int,
    backfill_start: date | None,
    newest: date | None,
    backfill_days: int,
) -> date | None:
    """The first day the next run fetches (None: nothing to fetch yet).

    With data stored: the newest stored date received minus the lookback, never before the
    backfill start. Without: the backfill start, else `backfill_days` before the newest
    complaint the API has.
    """
    if lookback_days < 0 or backfill_days < 0:
        raise ValueError("lookback_days and backfill_days must be >= 0")
    if stored_max is not None:
        start = stored_max - timedelta(days=lookback_days)
        return max(start, backfill_start) if backfill_start else start
    if backfill_start is not None:
        return backfill_start
    if newest is None:
        return None
    return newest - timedelta(days=backfill_days)


def day_windows(start: date, last: date, days: int = 1) -> list[DayWindow]:
    """Windows of `days` days covering start..last inclusive (the last one may be shorter)."""
    if days < 1:
        raise ValueError(f"window days must be >= 1, got {days}")
    windows = []
    day = start
    while day <= last:
        end = min(day + timedelta(days=days), last + timedelta(days=1))
        windows.append(DayWindow(day, end))
        day = end
    return windows


# --------------------------------------------------------------------------- storage


def ensure_table(cur) -> None:
    """Create the table and its date index (the crawl's first step; takes a table lock)."""
    COMPLAINTS.create(cur)
    cur.execute(
        "CREATE INDEX IF NOT EXISTS cfpb_complaints_date_received_idx "
        f"ON {COMPLAINTS.name} (date_received)"
    )


def table_exists(cur) -> bool:
    """Readers (sensor, checks) look without DDL, so they never wait on a running load."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (COMPLAINTS.name,))
    return cur.fetchone()[0]


@dataclass(frozen=True)
class StoredState:
    newest: date | None  # max(date_received)
    rows: int


def stored_state(warehouse: WarehouseResource) -> StoredState:
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return StoredState(None, 0)
        cur.execute(f"SELECT max(date_received), count(*) FROM {COMPLAINTS.name}")
        newest, rows = cur.fetchone()
    return StoredState(newest, rows)


def stored_since(warehouse: WarehouseResource, start: date) -> int:
    """Complaints stored with date received on or after `start` (index range scan)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return 0
        cur.execute(f"SELECT count(*) FROM {COMPLAINTS.name} WHERE date_received >= %s", (start,))
        return cur.fetchone()[0]


# --------------------------------------------------------------------------- crawl


@dataclass
class CrawlResult:
    start: date | None
    end: date | None  # last day fetched (inclusive)
    stored_newest_before: date | None
    probe: Probe | None = None
    began: Any = None  # the database's now() when the crawl began
    windows: int = 0
    pages: int = 0
    received: int = 0
    inserted: int = 0
    updated: int = 0
    late_published: int = 0  # new complaints received before the previous stored maximum
    complaint_ids: set[str] = field(default_factory=set)
    short_windows: list[str] = field(default_factory=list)  # fewer unique ids than the total
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted - self.updated

    @property
    def repeated(self) -> int:
        """Hits seen more than once in this run (duplicates across pages)."""
        return self.received - len(self.complaint_ids)


def crawl_complaints(
    client: CfpbClient,
    warehouse: WarehouseResource,
    *,
    lookback_days: int = 16,
    backfill_start: date | None = None,
    backfill_days: int = 30,
    window_days: int = 1,
    start: date | None = None,
    end: date | None = None,
    on_page: Callable[[SearchPage], None] | None = None,
    log: Any = None,
) -> CrawlResult:
    """Fetch every complaint of the window the watermark rule gives (or `start`..`end`
    when set) and upsert it by `complaint_id`, one transaction per page."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_table(cur)
        cur.execute(f"SELECT max(date_received), now() FROM {COMPLAINTS.name}")
        stored_max, crawl_began = cur.fetchone()

    first = start or crawl_start(
        stored_max,
        lookback_days=lookback_days,
        backfill_start=backfill_start,
        newest=None,
        backfill_days=backfill_days,
    )
    # one cheap request: the window's total and its newest complaint (the last day to
    # fetch comes from the source's data, not from this machine's clock)
    probe = client.probe(first)
    if first is None:
        first = crawl_start(
            None,
            lookback_days=lookback_days,
            backfill_start=None,
            newest=probe.newest_date,
            backfill_days=backfill_days,
        )
    last = end or probe.newest_date
    result = CrawlResult(first, last, stored_max, probe, crawl_began)
    if first is None or last is None:
        return result  # the API has no complaints at all yet

    windows = day_windows(first, last, window_days)
    with warehouse.connect() as conn:
        for window in windows:
            window_total, window_ids = 0, set()
            for page in client.pages(window):
                rows = [(c.complaint_id, c.date_received, c.source) for c in page.complaints]
                with conn.cursor() as cur:
                    counts = COMPLAINTS.upsert(cur, rows)
                conn.commit()  # a page is all or nothing
                result.pages += 1
                result.received += counts.received
                result.inserted += counts.inserted
                result.updated += counts.updated
                window_total = max(window_total, page.total)
                for complaint in page.complaints:
                    window_ids.add(complaint.complaint_id)
                    if len(result.preview) < 10:
                        result.preview.append(_preview(complaint.source))
                if on_page:
                    on_page(page)
            result.windows += 1
            result.complaint_ids |= window_ids
            if len(window_ids) < window_total:
                # a search_after chain that skipped hits would show here
                result.short_windows.append(f"{window.label}: {len(window_ids)}/{window_total}")
                if log is not None:
                    log.warning(
                        f"cfpb: window {window.label} gave {len(window_ids)} distinct "
                        f"complaints, the API counted {window_total}"
                    )
        if stored_max is not None:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT count(*) FROM {COMPLAINTS.name}"
                    " WHERE first_loaded_at >= %s AND date_received < %s",
                    (crawl_began, stored_max),
                )
                result.late_published = cur.fetchone()[0]
            conn.commit()
    result.windows = len(windows)
    return result


def changed_before(warehouse: WarehouseResource, since: Any, day: date) -> tuple[int, int]:
    """(added, replaced) since `since` among complaints received before `day`: what a pass
    repaired that the incremental lookback could not reach."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT count(*) FILTER (WHERE first_loaded_at >= %(since)s),
                   count(*) FILTER (WHERE first_loaded_at < %(since)s)
            FROM {COMPLAINTS.name}
            WHERE loaded_at >= %(since)s AND date_received < %(day)s
            """,
            {"since": since, "day": day},
        )
        added, replaced = cur.fetchone()
    return added, replaced


def stored_in(warehouse: WarehouseResource, window: DayWindow) -> int:
    """Complaints stored with date received in the window (the API's min/max semantics)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return 0
        cur.execute(
            f"SELECT count(*) FROM {COMPLAINTS.name}"
            " WHERE date_received >= %s AND date_received < %s",
            (window.start, window.end),
        )
        return cur.fetchone()[0]


def _preview(source: dict[str, Any]) -> dict[str, Any]:
    row = {name: source.get(name) for name in PREVIEW_FIELDS}
    row["date_received"] = str(row["date_received"] or "")[:10]
    row["company"] = str(row["company"] or "")[:40]
    return row
