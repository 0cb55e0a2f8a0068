"""The 15-minute anomaly checks on the activity metrics (the seed's alert, on a seasonal
band): one check per metric, judging the bucket that should have landed by now."""

from signalbox.checks.iqr import IqrCheckSpec, Metric, SeasonalRule, iqr_checks
from signalbox.domains.user_activity import BUCKET, INGESTION_LAG
from signalbox.domains.user_activity.models import ACTIVITY_METRICS_15MIN

# The rule the activity metrics are judged by. benchmarks/alerts.py measures it on a
# labelled evaluation set beside the seed's rule (`IqrRule()`: n=5, a=3 on the previous
# buckets, kept as an option): recall and false alarms per rule are in notes/iqr.md.
DEFAULT_RULE = SeasonalRule()

ACTIVITY_METRICS = (
    "feed_active_users",
    "views",
    "likes",
    "ctr",
    "messenger_active_users",
    "messages_sent",
)
RATIOS = frozenset({"ctr"})  # likes / views: a bucket without views has no ctr

ACTIVITY_IQR = IqrCheckSpec(
    asset=ACTIVITY_METRICS_15MIN,
    engine="clickhouse",
    table="{database}_marts.activity_metrics_15min",
    time_column="bucket_start",
    metrics=tuple(Metric(m, "ratio" if m in RATIOS else "count") for m in ACTIVITY_METRICS),
    bucket=BUCKET,
    rule=DEFAULT_RULE,
    lag=INGESTION_LAG,
    description="The seed's 15-minute anomaly alert on feed and messenger activity.",
)

activity_iqr_checks = iqr_checks(ACTIVITY_IQR)
