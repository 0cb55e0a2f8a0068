"""E-mail and chat notices after each run that loads Neople timelines: one on success
(when days were loaded or reloaded) and one on failure, naming every day of the run.

Run-status sensors, so the load never waits on or fails for a notification. They read
what the run recorded: its partition tags for the days, each day's materialization
metadata for the counts, and the step failure for the error. A run tagged
`signalbox/notify: false` is not announced.
"""

from collections.abc import Sequence
from datetime import date

import dagster as dg

from signalbox.domains.game_timelines import notify
from signalbox.domains.game_timelines.raw import NEOPLE_DAILY, RAW_TIMELINE_EVENTS
from signalbox.platform.email import EmailResource
from signalbox.platform.telegram import TelegramResource

NOTIFY_TAG = "signalbox/notify"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_days(run: dg.DagsterRun) -> list[date]:
    """The KST days a run was asked to load, from its partition tags."""
    tags = run.tags
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        keys = NEOPLE_DAILY.get_partition_keys_in_range(
            dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
        )
    elif "dagster/partition" in tags:
        keys = [tags["dagster/partition"]]
    else:
        keys = []
    return [date.fromisoformat(key) for key in keys]


def _records(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return list(instance.get_records_for_run(run_id, of_type=kind).records)


def loads_timelines(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    planned = _records(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    return any(
        r.event_log_entry.get_dagster_event().asset_key == RAW_TIMELINE_EVENTS for r in planned
    )


def run_outcomes(
    instance: dg.DagsterInstance, run: dg.DagsterRun, error: str | None = None
) -> list[notify.DayOutcome]:
    """Every day of the run: stored ones from their metadata; on failure the first day
    without a materialization failed and the days after it were not tried."""
    stored: dict[date, notify.DayOutcome] = {}
    for record in _records(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or materialization.asset_key != RAW_TIMELINE_EVENTS:
            continue
        if materialization.partition is None:
            continue
        day = date.fromisoformat(materialization.partition)
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        stored[day] = notify.DayOutcome.from_metadata(day, metadata)
    outcomes, failed = [], False
    for day in run_days(run) or sorted(stored):
        if day in stored:
            outcomes.append(stored[day])
        elif error is not None and not failed:
            outcomes.append(notify.DayOutcome(day, "failed", error=error))
            failed = True
        elif error is not None:
            outcomes.append(notify.DayOutcome(day, "not tried"))
    return outcomes


def step_error(failure_events: Sequence[dg.DagsterEvent], fallback: str) -> str:
    """The user code's own error of the first failed step (not Dagster's wrapper)."""
    for event in failure_events:
        error = event.step_failure_data.error
        while error is not None and error.cls_name.startswith("Dagster") and error.cause:
            error = error.cause
        if error is not None:
            name, _, message = error.message.strip().partition(": ")
            return message if name.endswith(error.cls_name) and message else error.message.strip()
    return fallback


def _announce(
    context: dg.RunStatusSensorContext,
    email: EmailResource,
    telegram: TelegramResource,
    error: str | None,
) -> dg.SkipReason | None:
    """The notice for a timelines run; None for any other run (or one in another state,
    when evaluated by hand as the CLI does)."""
    run = context.dagster_run
    expected = dg.DagsterRunStatus.SUCCESS if error is None else dg.DagsterRunStatus.FAILURE
    if run.status != expected or not loads_timelines(context.instance, run):
        return None
    if run.tags.get(NOTIFY_TAG, "").lower() == "false":
        return dg.SkipReason(f"run {run.run_id}: notifications are off ({NOTIFY_TAG})")
    outcomes = run_outcomes(context.instance, run, error)
    if error is None and not any(o.status in ("loaded", "restored") for o in outcomes):
        return dg.SkipReason(f"run {run.run_id}: every day was already stored")
    sent = notify.send(notify.compose(outcomes), email, telegram, context.log)
    summary = ", ".join(f"{channel}: {result}" for channel, result in sent.items())
    context.log.info(f"neople timelines run {run.run_id}: {summary}")
    return dg.SkipReason(f"run {run.run_id} announced ({summary})")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="game_timelines_loaded_notice",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="E-mail and chat when a run loads Neople timeline days.",
)
def game_timelines_loaded_notice(
    context: dg.RunStatusSensorContext, email: EmailResource, telegram: TelegramResource
):
    return _announce(context, email, telegram, error=None)


@dg.run_failure_sensor(
    name="game_timelines_failed_notice",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="E-mail and chat when a Neople timelines run fails: which day, why, what is left.",
)
def game_timelines_failed_notice(
    context: dg.RunFailureSensorContext, email: EmailResource, telegram: TelegramResource
):
    fallback = context.failure_event.message or "the run failed"
    return _announce(
        context, email, telegram, step_error(context.get_step_failure_events(), fallback)
    )
