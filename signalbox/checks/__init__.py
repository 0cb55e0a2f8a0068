"""The IQR checks signalbox runs, and the schedule that re-judges the 15-minute buckets.

The machinery is in `signalbox.checks.iqr`; this module only says what is watched.
Importing it touches no engine (Dagster loads it at code-location load): the checks
open ClickHouse or PostgreSQL only when they run.

Asset keys are dagster-dbt's defaults, `[configured schema, model]`: the activity
project's marts folder sets `+schema: marts` (dbt_project/activity/dbt_project.yml), so
its models are `["marts", <model>]` like the warehouse marts, while the tables live in
the ClickHouse database `<database>_marts` (dbt's `<target schema>_<custom schema>`).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from signalbox.checks.iqr import IqrCheckSpec, IqrRule, iqr_checks

ACTIVITY_METRICS_15MIN = dg.AssetKey(["marts", "activity_metrics_15min"])
ACTIVITY_KPIS_DAILY = dg.AssetKey(["marts", "activity_kpis_daily"])
MAILBOX_EMAILS_HOURLY = dg.AssetKey(["marts", "mailbox_emails_hourly"])

ACTIVITY_METRICS = (
    "feed_active_users",
    "views",
    "likes",
    "ctr",
    "messenger_active_users",
    "messages_sent",
)

ACTIVITY_IQR = IqrCheckSpec(
    asset=ACTIVITY_METRICS_15MIN,
    engine="clickhouse",
    table="{database}_marts.activity_metrics_15min",
    time_column="bucket_start",
    metrics=ACTIVITY_METRICS,
    bucket=timedelta(minutes=15),
    # the seed's alert DAG as its code runs: n=5, a=3, bounds smoothed (see checks.iqr
    # for what the smoothing does and does not do on this daily curve)
    rule=IqrRule(a=3.0, n=5, direction="both", smooth_bounds=True),
    description="The seed's 15-minute anomaly alert on feed and messenger activity.",
)

# Hourly arrivals are small counts with a strong daily curve: over the previous 5 hours
# every morning's ramp-up would breach. The previous 24 hours (one daily cycle) give a
# band the ramp stays inside, while a burst after a market event (2-3x the peak) leaves
# it; only spikes page, as a quiet hour is not an incident for support. Smoothed like the
# activity checks; each raw band here already spans a day, so averaging the last 13 moves
# the upper bound by 7% (median) and false spikes on Poisson arrivals stay at 0.03 a day.
MAILBOX_IQR = IqrCheckSpec(
    asset=MAILBOX_EMAILS_HOURLY,
    engine="postgres",
    table="marts.mailbox_emails_hourly",
    time_column="hour_start",
    metrics=("emails_received",),
    bucket=timedelta(hours=1),
    rule=IqrRule(a=3.0, n=24, direction="spike", smooth_bounds=True),
    partition_column="mailbox_id",
    description="Support-load spikes per mailbox (customer emails received per hour).",
)

activity_iqr_checks = iqr_checks(ACTIVITY_IQR)
mailbox_iqr_checks = iqr_checks(MAILBOX_IQR)

IQR_SPECS = (ACTIVITY_IQR, MAILBOX_IQR)
IQR_CHECK_KEYS = tuple(key for spec in IQR_SPECS for key in spec.check_keys())

# The 15-minute buckets close every quarter hour: judge the one that just closed (a
# minute late, so the dbt run loading it has usually finished); checks only, no rebuild.
# The mailbox checks run with their mart (materializing an asset runs its checks).
activity_iqr_job = dg.define_asset_job(
    "activity_iqr_checks",
    selection=dg.AssetSelection.checks(*activity_iqr_checks),
    description="Judge the latest complete 15-minute bucket of the activity metrics.",
)
activity_iqr_schedule = dg.ScheduleDefinition(
    name="activity_iqr_checks_every_15_minutes",
    job=activity_iqr_job,
    cron_schedule="1-59/15 * * * *",
)
