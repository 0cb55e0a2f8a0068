"""Raw CFPB complaints: `raw/cfpb_complaints`, one row per complaint, `_source` verbatim.

Two layers of retries, as the seed asked for (10 retries, 30 s apart) plus what every
external call gets: the HTTP client retries each request (5xx, 424, timeouts, truncated
or malformed bodies, 429 after Retry-After); when a request still fails, the step fails
and Dagster's `RetryPolicy` re-runs it (10 retries, 30 s, 60 s, ... 300 s apart: linear
backoff with plus-minus jitter, ~28 minutes in all; exponential would wait ~17 hours and
hold a run slot past the next day's run). A re-run is cheap: pages already stored are
unchanged upserts. Errors that a retry cannot fix (a record without its key, a 4xx) fail
at once instead; an outage longer than the retries fails the run, and the next sensor
tick tries again.
"""

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from pydantic import Field

from signalbox.domains.complaints import GROUP
from signalbox.domains.complaints.cfpb import (
    CfpbPagingError,
    CfpbRecordError,
    CfpbResource,
    DayWindow,
    SearchPage,
)
from signalbox.domains.complaints.ingest import COMPLAINTS, changed_before, crawl_complaints
from signalbox.domains.complaints.reconcile import compare_with_api, match_api_spec
from signalbox.platform.http import RETRYABLE_STATUSES, ApiHttpError
from signalbox.platform.warehouse import WarehouseResource

RAW_COMPLAINTS = dg.AssetKey(["raw", "cfpb_complaints"])

RETRY_DELAY_ENV = "SIGNALBOX_COMPLAINTS_RETRY_DELAY_SECONDS"
MAX_RETRIES = 10
DEFAULT_RETRY_DELAY_SECONDS = 30.0

# CFPB publishes every day and the sensor asks for a run whenever something is new, so a
# day without a load means the pipeline is stuck: warn after 26 h, fail after 36 h
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=36), warn_window=timedelta(hours=26)
)


def complaints_retry_policy(environ: Mapping[str, str] | None = None) -> dg.RetryPolicy:
    """The seed's 10 x 30 s, with linear backoff and jitter. The base delay can be
    shortened with SIGNALBOX_COMPLAINTS_RETRY_DELAY_SECONDS (read when the definitions
    load: a RetryPolicy is part of the asset's definition, not of its run config)."""
    environ = os.environ if environ is None else environ
    raw = environ.get(RETRY_DELAY_ENV)
    try:
        delay = float(raw) if raw else DEFAULT_RETRY_DELAY_SECONDS
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV} must be a number of seconds, got {raw!r}") from None
    if delay < 0:
        raise ValueError(f"{RETRY_DELAY_ENV} must be >= 0, got {raw!r}")
    return dg.RetryPolicy(
        max_retries=MAX_RETRIES,
        delay=delay,
        backoff=dg.Backoff.LINEAR,  # bounded: 30 s ... 300 s, ~28 min in all
        jitter=dg.Jitter.PLUS_MINUS,
    )


class CfpbComplaintsConfig(dg.Config):
    """Optional run config: re-fetch a chosen range instead of the watermark's window."""

    start_date: str | None = Field(
        default=None, description="First day to fetch (YYYY-MM-DD); default: the watermark rule."
    )
    end_date: str | None = Field(
        default=None, description="Last day to fetch (YYYY-MM-DD); default: the newest complaint."
    )
    reconcile: bool = Field(
        default=False,
        description=(
            "A reconcile pass: re-read `reconcile_days` (CFPB_RECONCILE_DAYS) before the "
            "newest stored complaint instead of the lookback; the poller asks for one every "
            "`reconcile_every_hours`."
        ),
    )


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(f"{name} must be YYYY-MM-DD, got {value!r}", allow_retries=False) from None


def build_cfpb_complaints_asset(retry_policy: dg.RetryPolicy) -> dg.AssetsDefinition:
    """The raw complaints asset with the given retry policy (tests shorten the delay)."""

    @dg.asset(
        key=RAW_COMPLAINTS,
        group_name=GROUP,
        kinds={"python", "postgres"},
        retry_policy=retry_policy,
        freshness_policy=FRESHNESS,
        description=(
            "CFPB consumer complaints, one row per complaint_id with `_source` verbatim "
            "(JSONB), replaced when its content changes. Incremental by date received: each "
            "run re-reads from the newest stored date received minus a lookback (late "
            "publications, company responses), one day window at a time, with search_after."
        ),
        metadata={"dagster/table_name": COMPLAINTS.name},
        check_specs=[match_api_spec(RAW_COMPLAINTS)],
    )
    def cfpb_complaints(
        context: dg.AssetExecutionContext,
        config: CfpbComplaintsConfig,
        cfpb: CfpbResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        import pandas as pd

        client = cfpb.client(logger=context.log)
        progress = _Progress(context)
        lookback = cfpb.reconcile_days if config.reconcile else cfpb.lookback_days
        try:
            result = crawl_complaints(
                client,
                warehouse,
                lookback_days=lookback,
                backfill_start=cfpb.backfill_start_date(),
                backfill_days=cfpb.backfill_days,
                window_days=cfpb.window_days,
                start=_day(config.start_date, "start_date"),
                end=_day(config.end_date, "end_date"),
                on_page=progress,
                log=context.log,
            )
        except (CfpbRecordError, CfpbPagingError) as exc:
            # the same answer comes back on a retry: fail now, with the record named
            raise dg.Failure(
                description=str(exc),
                metadata=_error_metadata(exc),
                allow_retries=False,
            ) from exc
        except ApiHttpError as exc:
            if exc.status is not None and exc.status not in RETRYABLE_STATUSES | {429}:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
            raise
        total = warehouse.scalar(f"SELECT count(*) FROM {COMPLAINTS.name}")
        stats = client.http.stats
        metadata: dict[str, object] = {
            "dagster/row_count": total,
            "window_start": str(result.start) if result.start else "-",
            "window_end": str(result.end) if result.end else "-",
            "windows": result.windows,
            "pages_fetched": result.pages,
            "api_total_in_window": result.probe.total if result.probe else 0,
            "received": result.received,
            "new": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "repeated_across_pages": result.repeated,
            "late_published_caught": result.late_published,
            "lookback_days": cfpb.lookback_days,
            "http_requests": stats.requests,
            "http_retries": stats.retries,
            "http_429": stats.rate_limited,
            "preview": dg.MetadataValue.md(
                pd.DataFrame(result.preview).to_markdown(index=False) if result.preview else "-"
            ),
        }
        if result.short_windows:
            metadata["short_windows"] = ", ".join(result.short_windows[:20])
        pass_name = "reconcile" if config.reconcile else "incremental"
        metadata["pass"] = f"{pass_name} ({lookback} days before the newest stored)"
        if config.reconcile and result.stored_newest_before is not None:
            # what only this pass could fetch: older than the incremental lookback reaches
            reach = result.stored_newest_before - timedelta(days=cfpb.lookback_days)
            added, replaced = changed_before(warehouse, result.began, reach)
            metadata |= {"repaired_missing": added, "repaired_stale": replaced}
            context.log.info(
                f"cfpb reconcile pass: {added} complaints added and {replaced} replaced that "
                f"were received before {reach}, beyond the incremental lookback"
            )
        context.log.info(
            f"cfpb complaints {result.start}..{result.end}: {result.pages} pages, "
            f"{result.inserted} new, {result.updated} updated, {result.unchanged} unchanged"
        )
        newest = warehouse.scalar(f"SELECT max(date_received) FROM {COMPLAINTS.name}")
        reachable = None
        if not config.reconcile and newest is not None:
            reachable = newest - timedelta(days=cfpb.reconcile_days)
            if cfpb.backfill_start_date():
                reachable = max(reachable, cfpb.backfill_start_date())
        read = None
        if result.start and result.end:
            read = DayWindow(result.start, result.end + timedelta(days=1))
        check = compare_with_api(
            client, warehouse, read=read, reachable_from=reachable, pass_name=pass_name
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return cfpb_complaints


def _error_metadata(exc: Exception) -> dict[str, object]:
    if isinstance(exc, CfpbRecordError):
        return {
            "window": exc.window,
            "page": exc.page,
            "position": exc.position,
            "record_id": exc.record_id or "-",
            "field": exc.field_name,
        }
    return {}


class _Progress:
    """Logs progress once per ten windows (and the first page)."""

    def __init__(self, context: dg.AssetExecutionContext):
        self.context = context
        self.started = datetime.now(UTC)
        self.windows = 0

    def __call__(self, page: SearchPage) -> None:
        if page.number != 1:
            return
        self.windows += 1
        if self.windows == 1 or self.windows % 10 == 0:
            elapsed = (datetime.now(UTC) - self.started).total_seconds()
            self.context.log.info(
                f"cfpb complaints: window {page.window.label} ({self.windows} windows, "
                f"{elapsed:.0f}s)"
            )


# the code location's asset: the retry delay comes from the environment at load time
cfpb_complaints = build_cfpb_complaints_asset(complaints_retry_policy())
