"""`signalbox demo`'s materialization: every asset and check once, on the local instance.

Each domain (asset group) runs in a process of its own, one per core, the biggest first:
the domains share no asset, and while one waits on an API's rate limit another builds
its dbt models (measured: 92 s one after the other, 68 s two at a time on two cores; four
at a time is slower, dbt's start-up is CPU-bound). Within a domain, its
partitioned assets go first as one single-run backfill over the last complete partitions
(a week for the daily report's week-over-week) and any still open (today's user
activity), then its unpartitioned ones.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import dagster as dg

# Dagster's run tags for a partition range (a single-run backfill)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# progress (pages crawled, models built) without per-event debug lines
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def materialize_all(recent_days: int = 8, send_alerts_now: bool = False) -> bool:
    """Materialize the whole graph, print one line per asset and check, and evaluate the
    sensors that react to runs (and, with `send_alerts_now`, the IQR alert sensor once)."""
    from signalbox.definitions import defs

    instance = dg.DagsterInstance.get()  # its storage exists before the runs start
    graph = defs.resolve_asset_graph()
    sizes: dict[str, int] = {}
    for key in graph.materializable_asset_keys:
        sizes[graph.get(key).group_name] = sizes.get(graph.get(key).group_name, 0) + 1
    groups = sorted(sizes, key=lambda group: -sizes[group])  # the biggest domain first
    spawn = multiprocessing.get_context("spawn")  # a fork would copy the simulators' threads
    run_ids: list[str] = []
    errors: list[str] = []
    workers = min(len(groups), os.cpu_count() or 2)  # dbt and Dagster keep a core busy each
    pool = spawn.Pool(workers)
    try:
        pending = {
            group: pool.apply_async(materialize_group, (group, recent_days)) for group in groups
        }
        for group, result in pending.items():
            try:
                run_ids += result.get()
            except Exception as exc:  # the process died: its runs are whatever was recorded
                errors.append(f"domain {group}: {type(exc).__name__}: {exc}")
        pool.close()
    except KeyboardInterrupt:
        pool.terminate()  # Ctrl-C or SIGTERM: stop the domains' runs too
        raise
    finally:
        pool.join()
    ok = print_statuses(graph, instance, run_ids) and not errors
    for error in errors:
        print(f"\n{error}")
    for line in evaluate_run_status_sensors(defs, instance, run_ids):
        print(line)
    if send_alerts_now:
        send_alerts_once(defs, instance)
    return ok


def materialize_group(group: str, recent_days: int) -> list[str]:
    """One domain's runs (in a process of its own): partitioned assets first, each
    partitions definition as one single-run backfill, then the unpartitioned ones."""
    from signalbox.definitions import defs

    instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    by_partitions: dict = {}
    for key in graph.materializable_asset_keys:
        if graph.get(key).group_name == group:
            by_partitions.setdefault(graph.get(key).partitions_def, []).append(key)
    run_ids = []
    for partitions_def, keys in sorted(by_partitions.items(), key=lambda kv: kv[0] is None):
        tags = {}
        if partitions_def is not None:
            chosen = recent_partitions(partitions_def, recent_days)
            tags = {RANGE_START_TAG: chosen[0], RANGE_END_TAG: chosen[-1]}
            print(f"{group}: materializing {len(keys)} assets for {chosen[0]}..{chosen[-1]}")
        else:
            print(f"{group}: materializing {len(keys)} assets")
        result = job.get_subset(asset_selection=set(keys)).execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, run_config=RUN_CONFIG
        )
        run_ids.append(result.run_id)
    return run_ids


def recent_partitions(partitions_def, count: int) -> list[str]:
    """The last `count` partition keys whose time window has ended, and any partition
    still open (a day being filled, as user activity's today: its 15-minute checks judge
    the buckets closed so far)."""
    now = datetime.now(UTC)
    keys = partitions_def.get_partition_keys(current_time=now)
    ended = [k for k in keys if partitions_def.time_window_for_partition_key(k).end <= now]
    return ended[-count:] + [k for k in keys if k not in ended]


def _events(instance: dg.DagsterInstance, run_ids: Iterable[str], kind: dg.DagsterEventType):
    for run_id in run_ids:
        yield from instance.all_logs(run_id, of_type=kind)


def print_statuses(graph, instance: dg.DagsterInstance, run_ids: Sequence[str]) -> bool:
    """One line per asset (status, partitions, last row count) and per check, from what
    the runs recorded in the instance; False if any run or asset failed."""
    materialized: dict = {}
    for entry in _events(instance, run_ids, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        materialized.setdefault(materialization.asset_key, []).append(materialization)
    checks = {}
    for entry in _events(instance, run_ids, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        check = entry.asset_check_evaluation
        checks[check.asset_check_key] = check
    failed = False
    print(f"\n{'asset':<60} {'status':<14} rows")
    for key in sorted(graph.materializable_asset_keys, key=str):
        events = materialized.get(key)
        if not events:
            failed = True
            print(f"{key.to_user_string():<60} {'FAILED':<14} -")
            continue
        status = "ok" if len(events) == 1 else f"ok ({len(events)} parts)"
        rows = events[-1].metadata.get("dagster/row_count")
        print(f"{key.to_user_string():<60} {status:<14} {rows.value if rows else '-'}")
    print(f"\n{'check':<80} status")
    for check in sorted(checks.values(), key=lambda c: (str(c.asset_key), c.check_name)):
        status = "passed" if check.passed else f"FAILED ({check.severity.value.lower()})"
        name = f"{check.asset_key.to_user_string()}:{check.check_name}"
        print(f"{name:<80} {status}")
    for entry in _events(instance, run_ids, dg.DagsterEventType.STEP_FAILURE):
        error = entry.get_dagster_event().event_specific_data.error
        print(f"\nstep {entry.step_key} failed: {error.message if error else '?'}")
    succeeded = all(
        instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS for run_id in run_ids
    )
    return succeeded and not failed


def evaluate_run_status_sensors(defs, instance, run_ids: Sequence[str]) -> list[str]:
    """One tick of every run-status sensor for each run executed here (the daemon only
    hears of runs that end after it starts, and these ended before `dagster dev` did);
    a line for each tick that said something."""
    lines = []
    sensors = [s for s in defs.sensors or [] if isinstance(s, dg.RunStatusSensorDefinition)]
    ended_by = {
        dg.DagsterRunStatus.SUCCESS: dg.DagsterEventType.RUN_SUCCESS,
        dg.DagsterRunStatus.FAILURE: dg.DagsterEventType.RUN_FAILURE,
    }
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run.status not in ended_by:
            continue
        (record,) = instance.get_records_for_run(run_id, of_type=ended_by[run.status]).records
        for sensor in sensors:
            with dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=run,
                dagster_event=record.event_log_entry.get_dagster_event(),
                resources=defs.resources,
            ) as context:
                outcome = sensor(context)
            if isinstance(outcome, dg.SkipReason):
                lines.append(f"{sensor.name}: {outcome.skip_message}")
    return lines


def send_alerts_once(defs, instance: dg.DagsterInstance) -> None:
    """What the alert sensors do every minute under `dagster dev`, once, right now: IQR
    breaches, and sources gone silent."""
    from signalbox.checks.iqr import iqr_check_keys
    from signalbox.platform.telegram import TelegramResource
    from signalbox.sensors.freshness_alerts import freshness_expectations, send_freshness_alerts
    from signalbox.sensors.iqr_alerts import send_alerts

    check_keys = iqr_check_keys(defs.asset_checks or [])
    with TelegramResource.from_env().process_config_and_initialize_cm() as telegram:
        tick = send_alerts(instance, telegram, None, check_keys=check_keys)
        print(f"\non-call chat (IQR alerts): {tick.summary}")
        expectations = freshness_expectations(defs.assets or [])
        silence = send_freshness_alerts(instance, telegram, None, expectations=expectations)
        print(f"on-call chat (freshness): {silence.summary}")
