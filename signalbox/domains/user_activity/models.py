"""The dbt-clickhouse activity project as daily-partitioned Dagster assets.

Partitions are the user-actions days; a run (or a single-run backfill of many days) builds
its window with `--vars {min_date, max_date}`, and the models replace exactly those days.
dbt runs as a subprocess, so the embedded chDB engine is held for it (`dbt_lock`) and not
opened in this process meanwhile.
"""

import json
from datetime import timedelta

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from signalbox.domains.user_activity.raw import USER_ACTIVITY_DAILY
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.dbt import (
    SignalboxDbtTranslator,
    activity_project,
    invocation_environ,
    model_key,
    prune_invocations,
)


def window_vars(window: dg.TimeWindow) -> dict[str, str]:
    """dbt vars of a partition window: both dates inclusive."""
    return {
        "min_date": window.start.date().isoformat(),
        "max_date": (window.end - timedelta(days=1)).date().isoformat(),
    }


@dbt_assets(
    manifest=activity_project.manifest_path,
    project=activity_project,
    dagster_dbt_translator=SignalboxDbtTranslator(),
    name="activity_dbt_models",
    partitions_def=USER_ACTIVITY_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def activity_dbt_models(
    context: dg.AssetExecutionContext,
    activity_dbt: DbtCliResource,
    clickhouse: ClickHouseResource,
):
    dbt_vars = window_vars(context.partition_time_window)
    context.log.info(f"dbt activity window {dbt_vars['min_date']}..{dbt_vars['max_date']}")
    with clickhouse.dbt_lock("dbt activity build") as env:
        with invocation_environ(env):
            build = activity_dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
        yield from build.stream()
    prune_invocations(build)


ACTIVITY_METRICS_15MIN = model_key(activity_dbt_models, "activity_metrics_15min")
ACTIVITY_KPIS_DAILY = model_key(activity_dbt_models, "activity_kpis_daily")
