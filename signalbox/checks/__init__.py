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
    # the seed's rule as issue 3 words it: n=5, a=3, raw bounds. It breaches 7-12 times
    # per metric a day on the generated data without an anomaly (a property of the rule,
    # measured in checks.iqr); the alert sensor folds each run of breaches into one alert.
    rule=IqrRule(a=3.0, n=5, direction="both", smooth_bounds=False),
    description="The seed's 15-minute anomaly alert on feed and messenger activity.",
)

# Hourly arrivals are small counts with a strong daily curve: over the previous 5 hours
# every morning's ramp-up would breach. The previous 24 hours (one daily cycle) give a
# band the ramp stays inside, while a burst after a market event (2-3x the peak) leaves
# it; only spikes page, as a quiet hour is not an incident for support. Raw bounds, like
# the activity checks. False spikes, measured on Poisson arrivals over 200 weeks (pandas
# reference): 0.02 a day on the same daily curve every day at 4 an hour; at the Help Scout
# simulator's rates and shape (48 conversations a day x mailbox weight, weekday and
# weekend curves, Sunday 0.3x, Monday 1.15x) 2.3 (support) to 9.3 (campaigns) breached
# hours a week per mailbox, 1.6 to 6.5 episodes (alerts): Monday mornings, whose previous
# 24 hours are Sunday's, and weekend hours, where q75 is 0 or 1 and a handful of emails
# leave the band.
# Smoothed bounds: 3.7 to 10.6 breached hours a week.
MAILBOX_IQR = IqrCheckSpec(
    asset=MAILBOX_EMAILS_HOURLY,
    engine="postgres",
    table="marts.mailbox_emails_hourly",
    time_column="hour_start",
    metrics=("emails_received",),
    bucket=timedelta(hours=1),
    rule=IqrRule(a=3.0, n=24, direction="spike", smooth_bounds=False),
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
