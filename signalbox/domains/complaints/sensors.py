"""Polling for new complaints: the seed ran its flow every minute whether or not anything
had changed; this sensor asks the API one cheap question per tick and requests a run only
when there is something to fetch.

The question is `size=1&sort=created_date_desc&date_received_min=<next window start>`:
its `hits.total` against the stored count for the same days says whether complaints were
published since the last load (late ones included), in one request that counts against
the 20/min throttle once. No request at all while a complaints run is in progress.

Every `reconcile_every_hours` (CFPB_RECONCILE_EVERY_HOURS) the poller asks for a
reconcile pass instead: a run that re-reads `reconcile_days` (CFPB_RECONCILE_DAYS), for
complaints published later than the lookback and responses updated on older ones. When
the next one is due is kept in the sensor's cursor, with the last request's signature.
"""

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date

import dagster as dg

from signalbox.domains.complaints import GROUP
from signalbox.domains.complaints.cfpb import CfpbClient, CfpbResource
from signalbox.domains.complaints.ingest import crawl_start, stored_since, stored_state
from signalbox.domains.complaints.raw import RAW_COMPLAINTS
from signalbox.platform.http import (
    RETRYABLE_STATUSES,
    ApiConnectionError,
    ApiError,
    ApiHttpError,
    ApiTimeoutError,
)
from signalbox.platform.settings import engine_tags
from signalbox.platform.warehouse import WarehouseResource

INTERVAL_ENV = "SIGNALBOX_COMPLAINTS_SENSOR_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 60
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

complaints_job = dg.define_asset_job(
    "complaints_refresh",
    selection=dg.AssetSelection.assets(RAW_COMPLAINTS).downstream()
    | dg.AssetSelection.groups(GROUP),
    description="Incremental CFPB pull, the complaints dbt models and the CSV export.",
    tags=engine_tags("postgres"),
)


@dataclass(frozen=True)
class PollDecision:
    run: bool
    reason: str
    signature: str | None = None  # what the API showed: the run key of the request
    window_start: date | None = None
    api_total: int = 0
    stored: int = 0


def poll_for_new_complaints(
    client: CfpbClient,
    warehouse: WarehouseResource,
    *,
    lookback_days: int,
    backfill_start: date | None,
    backfill_days: int,
    last_signature: str | None = None,
) -> PollDecision:
    """One probe request: is there a complaint the next run would store that is not stored?"""
    state = stored_state(warehouse)
    start = crawl_start(
        state.newest,
        lookback_days=lookback_days,
        backfill_start=backfill_start,
        newest=None,
        backfill_days=backfill_days,
    )
    probe = client.probe(start)
    since = f"since {start}" if start else "in the whole index"
    signature = f"{start or 'first'}:{probe.signature}"
    if probe.total == 0:
        return PollDecision(False, f"the API has no complaints {since}", signature, start)
    stored = stored_since(warehouse, start) if start else state.rows
    if state.rows and probe.total <= stored:
        return PollDecision(
            False,
            f"nothing new {since}: {probe.total} in the API, {stored} stored",
            signature,
            start,
            probe.total,
            stored,
        )
    if signature == last_signature:
        return PollDecision(
            False, f"a run was already requested for {signature}", signature, start, probe.total
        )
    if not state.rows:
        reason = f"nothing stored yet; the API has {probe.total} complaints {since}"
    else:
        reason = f"{probe.total - stored} new complaints {since} ({probe.total} in the API)"
    return PollDecision(True, reason, signature, start, probe.total, stored)


@dataclass
class PollerCursor:
    """What the poller remembers between ticks: the last request's signature, and when the
    next reconcile pass is due (epoch seconds; None until the first tick starts the clock)."""

    signature: str | None = None
    reconcile_due: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "PollerCursor":
        if not raw:
            return cls()
        try:
            value = json.loads(raw)
        except ValueError:
            return cls(signature=raw)  # written before reconcile passes: a bare signature
        if not isinstance(value, dict):
            return cls(signature=raw)
        due = value.get("reconcile_due")
        return cls(value.get("signature"), float(due) if due is not None else None)

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def sensor_interval(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(INTERVAL_ENV)
    if not raw:
        return DEFAULT_INTERVAL_SECONDS
    try:
        seconds = int(raw)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV} must be whole seconds, got {raw!r}") from None
    if seconds < 1:
        raise ValueError(f"{INTERVAL_ENV} must be >= 1, got {raw!r}")
    return seconds


def _transient(exc: ApiError) -> bool:
    if isinstance(exc, ApiTimeoutError | ApiConnectionError):
        return True
    return isinstance(exc, ApiHttpError) and exc.status in RETRYABLE_STATUSES | {429}


def build_complaints_sensor(
    *,
    name: str = "cfpb_new_complaints",
    minimum_interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    job=complaints_job,
) -> dg.SensorDefinition:
    """The polling sensor; the interval defaults to SIGNALBOX_COMPLAINTS_SENSOR_INTERVAL_SECONDS
    (else 60 s), read when the definitions load."""
    interval = (
        sensor_interval() if minimum_interval_seconds is None else int(minimum_interval_seconds)
    )

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval,
        default_status=default_status,
        description=(
            f"At most every {interval} s: one CFPB request (size=1, newest first, since the "
            "next window's start); a run of complaints_refresh only when the API holds "
            "complaints the warehouse does not, and a reconcile pass when one is due."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, cfpb: CfpbResource, warehouse: WarehouseResource
    ):
        active = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job.name, statuses=_IN_PROGRESS), limit=1
        )
        if active:
            return dg.SkipReason(f"run {active[0].run_id} of {job.name} is still in progress")
        cursor = PollerCursor.parse(context.cursor)
        now = time.time()
        every = cfpb.reconcile_every_hours * 3600
        if cursor.reconcile_due is None:
            cursor.reconcile_due = now + every
            context.update_cursor(cursor.dump())
        elif now >= cursor.reconcile_due and stored_state(warehouse).rows:
            cursor.reconcile_due = now + every
            context.update_cursor(cursor.dump())
            context.log.info(f"cfpb: a reconcile pass ({cfpb.reconcile_days} days) is due")
            return dg.RunRequest(
                run_key=f"reconcile@{int(now)}",
                run_config={"ops": {"raw__cfpb_complaints": {"config": {"reconcile": True}}}},
                tags={"cfpb/pass": "reconcile", "cfpb/reconcile_days": str(cfpb.reconcile_days)},
            )
        try:
            decision = poll_for_new_complaints(
                cfpb.probe_client(logger=context.log),
                warehouse,
                lookback_days=cfpb.lookback_days,
                backfill_start=cfpb.backfill_start_date(),
                backfill_days=cfpb.backfill_days,
                last_signature=cursor.signature,
            )
        except ApiError as exc:
            if _transient(exc):  # the next tick asks again; the error shows on this tick
                return dg.SkipReason(f"CFPB API unavailable, retrying next tick: {exc}")
            raise
        if not decision.run:
            return dg.SkipReason(decision.reason)
        cursor.signature = decision.signature
        context.update_cursor(cursor.dump())
        context.log.info(f"cfpb: {decision.reason}")
        return dg.RunRequest(
            run_key=decision.signature,
            tags={
                "cfpb/window_start": str(decision.window_start or "first"),
                "cfpb/api_total": str(decision.api_total),
                "cfpb/stored": str(decision.stored),
            },
        )

    return _sensor


cfpb_new_complaints = build_complaints_sensor()
