"""Constants and helpers the game-timelines tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import dagster as dg
from chat_support import CHAT_TOKEN

from signalbox.domains.game_timelines import checks, raw, sensors
from signalbox.simulators.neople_world import KST, NeopleWorld

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=KST)
DAYS = [date(2026, 11, 16), date(2026, 11, 17), date(2026, 11, 19)]  # Mon, Tue, Thu (reset)
BUCKET = "signalbox-game-timelines"
CHAT_ID = "-1001000000042"
BOT_TOKEN = CHAT_TOKEN  # the session's chat simulator (tests/conftest.py)
MAIL_TO = "oncall@example.com"

ASSETS = [raw.neople_timeline_events, checks.neople_timeline_parquet_matches_postgres,
          checks.neople_timeline_rows_for_active_characters,
          checks.neople_timeline_codes_known]  # fmt: skip


def character_list(world: NeopleWorld) -> str:
    """NEOPLE_CHARACTERS for every character of the world, as `serverId:characterId`."""
    return ",".join(f"{c.server_id}:{c.character_id}" for c in world.specs)


def materialize(
    resources: dict[str, Any],
    day: date | None = None,
    *,
    days: tuple[date, date] | None = None,
    refetch: bool = False,
    notify: bool = True,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInJobResult:
    """One run of the raw asset and its checks for a day (or a range of days); with
    `notify`, then the tick of the notification sensor that the run's end triggers."""
    instance = instance or dg.DagsterInstance.ephemeral()
    run_config = {"ops": {"raw__neople_timeline_events": {"config": {"refetch": refetch}}}}
    tags = {}
    if days is not None:
        tags = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[1].isoformat(),
        }
    result = dg.materialize(
        ASSETS,
        resources=resources,
        partition_key=day.isoformat() if day else None,
        tags=tags,
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
    )
    if notify:
        announce(result, instance, resources)
    return result


def announce(
    result: dg.ExecuteInJobResult, instance: dg.DagsterInstance, resources: dict[str, Any]
) -> str:
    """Evaluate the run-status sensor the run's end triggers, as the daemon would; what
    it says it sent (or why nothing)."""
    run = result.dagster_run
    kind = dg.DagsterEventType.RUN_SUCCESS if result.success else dg.DagsterEventType.RUN_FAILURE
    (record,) = instance.get_records_for_run(run.run_id, of_type=kind).records
    with dg.build_run_status_sensor_context(
        sensor_name="notice",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=record.event_log_entry.dagster_event,
        resources={"email": resources["email"], "telegram": resources["telegram"]},
    ) as context:
        if result.success:
            outcome = sensors.game_timelines_loaded_notice(context)
        else:
            outcome = sensors.game_timelines_failed_notice(context.for_run_failure())
    return outcome.skip_message if outcome is not None else ""


def expected_rows(world: NeopleWorld, day: date, **faults: bool) -> dict[str, list[dict]]:
    """The API's rows of every character for a KST day, straight from the world."""
    start, end = (
        datetime(day.year, day.month, day.day, 0, 0),
        datetime(day.year, day.month, day.day, 23, 59),
    )
    return {
        spec.character_id: world.timeline(spec.character_id, start, end, now=NOW, **faults)
        for spec in world.specs
    }
