"""The raw complaints asset through Dagster: the seed's retry behaviour as a RetryPolicy
on top of the HTTP client's retries, errors a retry cannot fix, and the polling sensor."""

from __future__ import annotations

import time
from datetime import date, timedelta

import dagster as dg
import pytest
from complaints_helpers import NOW, resource_for
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id

from signalbox.domains.complaints.cfpb import CfpbResource
from signalbox.domains.complaints.checks import cfpb_complaints_unique
from signalbox.domains.complaints.ingest import COMPLAINTS, crawl_complaints
from signalbox.domains.complaints.raw import (
    RAW_COMPLAINTS,
    RETRY_DELAY_ENV,
    build_cfpb_complaints_asset,
    cfpb_complaints,
    complaints_retry_policy,
)
from signalbox.domains.complaints.reconcile import compare_with_api
from signalbox.domains.complaints.sensors import (
    INTERVAL_ENV,
    PollerCursor,
    build_complaints_sensor,
    cfpb_new_complaints,
    complaints_job,
    sensor_interval,
)
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.cfpb import SEARCH_PATH

SINCE = "2024-03-12"
FAST_RETRIES = complaints_retry_policy({RETRY_DELAY_ENV: "0.05"})


def expected(sim, since=SINCE) -> dict[str, dict]:
    day = date.fromisoformat(since)
    return {c["complaint_id"]: c for c in sim.world.complaints(day, None, at=sim.now)}


def stored(warehouse) -> dict[str, dict]:
    return dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))


def events_of(result, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind]


def error_chain(error) -> list:
    """A serialized error with its causes and contexts, outermost first."""
    found, todo = [], [error]
    while todo:
        current = todo.pop(0)
        if current is not None:
            found.append(current)
            todo += [current.cause, current.context]
    return found


# --------------------------------------------------------------------------- retry policy


def test_retry_policy_is_the_seeds_with_backoff_and_jitter():
    policy = complaints_retry_policy({})
    assert (policy.max_retries, policy.delay) == (10, 30.0)
    assert policy.backoff == dg.Backoff.LINEAR and policy.jitter == dg.Jitter.PLUS_MINUS
    # an outage is ridden out for about half an hour, not a day: the longest wait in all
    # (every jitter at its top) stays under 35 minutes, the longest gap under 6
    gaps = [
        dg.RetryPolicy(max_retries=10, delay=30.0, backoff=policy.backoff).calculate_delay(n)
        + policy.delay
        for n in range(1, policy.max_retries + 1)
    ]
    assert sum(gaps) < 35 * 60 and max(gaps) < 6 * 60
    assert complaints_retry_policy({RETRY_DELAY_ENV: "0.5"}).delay == 0.5
    for bad in ("soon", "-1"):
        with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
            complaints_retry_policy({RETRY_DELAY_ENV: bad})
    # the code location's asset carries it (the test environment leaves the delay unset)
    assert cfpb_complaints.op.retry_policy == complaints_retry_policy()
    assert cfpb_complaints.op.retry_policy.max_retries == 10


def test_a_run_that_fails_twice_then_succeeds(cfpb_sim, warehouse):
    # two tries per request: a burst of five 500s fails the step twice (2 + 2 answers),
    # and the third attempt gets one more 500 before the API recovers
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE, max_attempts=2)
    cfpb_sim.burst(500, 5)
    result = dg.materialize(
        [build_cfpb_complaints_asset(FAST_RETRIES)],
        resources={"cfpb": cfpb, "warehouse": warehouse},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    retries = events_of(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 2
    assert len(events_of(result, dg.DagsterEventType.STEP_RESTARTED)) == 2
    for event in retries:
        chain = error_chain(event.event_specific_data.error)
        assert any(
            e.cls_name == "ApiHttpError" and "HTTP 500 after 2 attempts" in e.message for e in chain
        )
    assert stored(warehouse) == expected(cfpb_sim)
    [materialization] = result.asset_materializations_for_node("raw__cfpb_complaints")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["new"] == metadata["dagster/row_count"] == len(expected(cfpb_sim))
    assert metadata["http_retries"] == 1  # this attempt's client: the last 500


def test_bad_records_fail_at_once_without_retries(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE)
    cfpb_sim.faults.missing_fields = True
    result = dg.materialize(
        [build_cfpb_complaints_asset(FAST_RETRIES)],
        resources={"cfpb": cfpb, "warehouse": warehouse},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    assert events_of(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    [failure] = events_of(result, dg.DagsterEventType.STEP_FAILURE)
    data = failure.event_specific_data
    metadata = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    assert metadata["window"] == "2024-03-12" and metadata["field"] in (
        "complaint_id",
        "date_received",
    )
    assert metadata["record_id"] in data.user_failure_data.description
    assert "nothing from this page was stored" in data.user_failure_data.description


# --------------------------------------------------------------------------- sensor


def tick(sensor, cfpb, warehouse, cursor=None, instance=None):
    context = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"cfpb": cfpb, "warehouse": warehouse},
    )
    return sensor.evaluate_tick(context)


def searches(sim) -> int:
    return sim.count(SEARCH_PATH)


def load(cfpb, warehouse):
    return crawl_complaints(cfpb.client(), warehouse, backfill_start=cfpb.backfill_start_date())


def test_sensor_requests_a_run_only_when_something_is_new(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE)
    sensor = build_complaints_sensor(minimum_interval_seconds=60)

    # nothing stored: a first run
    first = tick(sensor, cfpb, warehouse)
    assert len(first.run_requests) == 1 and searches(cfpb_sim) == 1
    assert first.run_requests[0].run_key == PollerCursor.parse(first.cursor).signature

    # loaded: nothing new, one request, no run
    load(cfpb, warehouse)
    cfpb_sim.reset_log()
    idle = tick(sensor, cfpb, warehouse, cursor=first.cursor)
    assert idle.run_requests == [] and "nothing new since 2024-03-12" in idle.skip_message
    assert searches(cfpb_sim) == 1
    [probe] = cfpb_sim.requests
    assert probe.query["size"] == ["1"] and probe.query["sort"] == ["created_date_desc"]

    # the clock moves: complaints of today and late ones of earlier days are published
    cfpb_sim.now = NOW + timedelta(hours=3)
    fresh = set(expected(cfpb_sim)) - set(stored(warehouse))
    busy = tick(sensor, cfpb, warehouse, cursor=idle.cursor)
    [request] = busy.run_requests
    signature = PollerCursor.parse(busy.cursor).signature
    assert (
        busy.skip_message is None and request.run_key == signature != first.run_requests[0].run_key
    )
    assert request.tags["cfpb/window_start"] == SINCE
    assert int(request.tags["cfpb/api_total"]) - int(request.tags["cfpb/stored"]) == len(fresh)

    # asked again before that run: not requested twice
    again = tick(sensor, cfpb, warehouse, cursor=busy.cursor)
    assert again.run_requests == [] and "already requested" in again.skip_message

    # the run lands: quiet again
    load(cfpb, warehouse)
    assert tick(sensor, cfpb, warehouse, cursor=busy.cursor).run_requests == []


def test_sensor_asks_for_a_reconcile_pass_when_one_is_due(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE, reconcile_every_hours=6)
    sensor = build_complaints_sensor(minimum_interval_seconds=60)
    load(cfpb, warehouse)
    # the first tick starts the clock: the first pass is due one period later
    started = time.time()
    first = tick(sensor, cfpb, warehouse)
    due = PollerCursor.parse(first.cursor).reconcile_due
    assert first.run_requests == [] and started + 6 * 3600 <= due <= time.time() + 6 * 3600
    # a cursor written before reconcile passes existed (a bare signature) is read as such
    legacy = tick(sensor, cfpb, warehouse, cursor="2024-02-25:5@x")
    assert PollerCursor.parse(legacy.cursor).signature == "2024-02-25:5@x"
    # when it is due: a reconcile run, without asking the API, and the next one is due later
    cfpb_sim.reset_log()
    overdue = PollerCursor(signature="s", reconcile_due=time.time() - 1).dump()
    result = tick(sensor, cfpb, warehouse, cursor=overdue)
    [request] = result.run_requests
    assert request.run_config == {"ops": {"raw__cfpb_complaints": {"config": {"reconcile": True}}}}
    assert request.tags["cfpb/pass"] == "reconcile" and searches(cfpb_sim) == 0
    after = PollerCursor.parse(result.cursor)
    assert after.signature == "s" and after.reconcile_due > time.time() + 5 * 3600


def test_sensor_waits_for_a_run_in_progress_without_asking_the_api(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(
        DagsterRun(
            job_name=complaints_job.name,
            run_id=make_new_run_id(),
            status=dg.DagsterRunStatus.STARTED,
        )
    )
    result = tick(cfpb_new_complaints, cfpb, warehouse, instance=instance)
    assert result.run_requests == [] and "still in progress" in result.skip_message
    assert searches(cfpb_sim) == 0


def test_sensor_skips_a_tick_while_the_api_is_down(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE)
    cfpb_sim.burst(503, 5)
    result = tick(cfpb_new_complaints, cfpb, warehouse)
    assert result.run_requests == [] and "CFPB API unavailable" in result.skip_message
    assert searches(cfpb_sim) == 2  # two tries, then the next tick


def test_sensor_interval_and_target():
    assert cfpb_new_complaints.minimum_interval_seconds == 60  # the seed's every minute
    assert cfpb_new_complaints.default_status == dg.DefaultSensorStatus.RUNNING
    assert cfpb_new_complaints.job_name == "complaints_refresh"
    assert build_complaints_sensor(minimum_interval_seconds=5).minimum_interval_seconds == 5
    assert sensor_interval({}) == 60 and sensor_interval({INTERVAL_ENV: "300"}) == 300
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        sensor_interval({INTERVAL_ENV: "0"})
    resources = {"cfpb": CfpbResource(), "warehouse": WarehouseResource()}
    graph = dg.Definitions(assets=[cfpb_complaints], resources=resources).resolve_asset_graph()
    assert complaints_job.selection.resolve(graph) == {RAW_COMPLAINTS}


def test_resource_reads_its_settings_from_the_environment(monkeypatch):
    names = (
        "BASE_URL",
        "RATE_LIMIT_PER_MINUTE",
        "BACKFILL_START",
        "BACKFILL_DAYS",
        "LOOKBACK_DAYS",
        "RECONCILE_DAYS",
        "RECONCILE_EVERY_HOURS",
    )
    for name in (f"CFPB_{n}" for n in names):
        monkeypatch.delenv(name, raising=False)
    defaults = CfpbResource.from_env().process_config_and_initialize()
    assert defaults.base_url == (
        "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/"
    )
    assert (defaults.rate_limit_per_minute, defaults.lookback_days, defaults.page_size) == (
        20,
        16,
        100,
    )
    assert defaults.backfill_start_date() is None
    assert (defaults.reconcile_days, defaults.reconcile_every_hours) == (60, 24)
    assert defaults.client().http.rate_limiter.interval == pytest.approx(60 / (20 * 0.97))

    monkeypatch.setenv("CFPB_BASE_URL", "http://127.0.0.1:9/search/api/v1/")
    monkeypatch.setenv("CFPB_RATE_LIMIT_PER_MINUTE", "600")
    monkeypatch.setenv("CFPB_BACKFILL_START", "2024-03-01")
    monkeypatch.setenv("CFPB_BACKFILL_DAYS", "7")
    monkeypatch.setenv("CFPB_LOOKBACK_DAYS", "20")
    monkeypatch.setenv("CFPB_RECONCILE_DAYS", "90")
    monkeypatch.setenv("CFPB_RECONCILE_EVERY_HOURS", "168")
    resource = CfpbResource.from_env()
    assert isinstance(resource.base_url, dg.EnvVar)  # resolved at run time, never in config
    ready = resource.process_config_and_initialize()
    assert ready.base_url == "http://127.0.0.1:9/search/api/v1/"
    assert (ready.rate_limit_per_minute, ready.backfill_days, ready.lookback_days) == (600, 7, 20)
    assert ready.backfill_start_date() == date(2024, 3, 1)
    assert (ready.reconcile_days, ready.reconcile_every_hours) == (90, 168)


def test_checks_on_the_raw_table(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE)
    client = cfpb.client()

    def match_api():
        return compare_with_api(client, warehouse, read=None, reachable_from=None, pass_name="t")

    assert cfpb_complaints_unique(warehouse=warehouse).passed is False  # no table yet
    assert match_api().passed
    load(cfpb, warehouse)
    unique = cfpb_complaints_unique(warehouse=warehouse)
    assert unique.passed and unique.metadata["rows"].value == len(expected(cfpb_sim))
    assert match_api().passed

    # a row whose typed column no longer says what its payload says fails the check
    warehouse.query(
        f"UPDATE {COMPLAINTS.name} SET date_received = date_received - 1"
        f" WHERE complaint_id = (SELECT min(complaint_id) FROM {COMPLAINTS.name})"
        " RETURNING complaint_id"
    )
    broken = cfpb_complaints_unique(warehouse=warehouse)
    assert not broken.passed and broken.metadata["date_differs_from_payload"].value == 1

    # complaints published since the load: the API has more than the warehouse
    cfpb_sim.now = NOW + timedelta(days=2)
    behind = match_api()
    assert not behind.passed and behind.metadata["missing"].value > 0
