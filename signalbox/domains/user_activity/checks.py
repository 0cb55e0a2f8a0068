"""The 15-minute IQR checks on the activity metrics (the seed's anomaly alert)."""

from datetime import timedelta

from signalbox.checks.iqr import IqrCheckSpec, IqrRule, iqr_checks
from signalbox.domains.user_activity.models import ACTIVITY_METRICS_15MIN

ACTIVITY_METRICS = (
    "feed_active_users",
    "views",
    "likes",
    "ctr",
    "messenger_active_users",
    "messages_sent",
)

# The seed's rule: n=5, a=3, raw bounds. It breaches 7-12 times per metric a day without
# an anomaly (notes/iqr.md); the alert sensor folds each run of breaches into one alert.
ACTIVITY_IQR = IqrCheckSpec(
    asset=ACTIVITY_METRICS_15MIN,
    engine="clickhouse",
    table="{database}_marts.activity_metrics_15min",
    time_column="bucket_start",
    metrics=ACTIVITY_METRICS,
    bucket=timedelta(minutes=15),
    rule=IqrRule(a=3.0, n=5, direction="both", smooth_bounds=False),
    description="The seed's 15-minute anomaly alert on feed and messenger activity.",
)

activity_iqr_checks = iqr_checks(ACTIVITY_IQR)
