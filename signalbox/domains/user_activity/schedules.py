"""Every 15 minutes: land today's user actions so far and rebuild today's activity models;
the IQR checks on the 15-minute metrics run in the same run, right after the models."""

from datetime import UTC

import dagster as dg

from signalbox.domains.user_activity.checks import activity_iqr_checks
from signalbox.domains.user_activity.raw import (
    FEED_ACTIONS_KEY,
    MESSAGE_ACTIONS_KEY,
    USER_ACTIVITY_DAILY,
)
from signalbox.domains.user_activity.report import REPORT_KEY
from signalbox.platform.settings import engine_tags

user_activity_job = dg.define_asset_job(
    "user_activity",
    selection=dg.AssetSelection.assets(FEED_ACTIONS_KEY, MESSAGE_ACTIONS_KEY).downstream()
    - dg.AssetSelection.assets(REPORT_KEY),
    partitions_def=USER_ACTIVITY_DAILY,
    description="User actions of a day, the activity dbt models, and their checks.",
    tags=engine_tags("clickhouse"),
)


@dg.schedule(
    job=user_activity_job,
    cron_schedule="1-59/15 * * * *",  # a minute after each bucket closes
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def user_activity_every_15_minutes(context: dg.ScheduleEvaluationContext):
    moment = context.scheduled_execution_time.astimezone(UTC)
    today = moment.strftime("%Y-%m-%d")  # the UTC day partition being filled
    return dg.RunRequest(run_key=f"{today}@{moment:%H:%M}", partition_key=today)


# The 15-minute buckets close every quarter hour; the checks judge the latest bucket closed
# INGESTION_LAG ago, so they run that long after each close (checks only, no rebuild): a
# source that went silent shows up here even when the landing run itself failed.
activity_iqr_job = dg.define_asset_job(
    "activity_iqr_checks",
    selection=dg.AssetSelection.checks(*activity_iqr_checks),
    description="Judge the latest complete 15-minute bucket of the activity metrics.",
    tags=engine_tags("clickhouse"),
)
activity_iqr_schedule = dg.ScheduleDefinition(
    name="activity_iqr_checks_every_15_minutes",
    job=activity_iqr_job,
    cron_schedule="6-59/15 * * * *",
)
