"""User actions in ClickHouse as daily-partitioned raw assets: `raw/activity_feed_actions`
and `raw/activity_message_actions` (the dbt sources of dbt_project/activity map onto these
keys). One run lands a UTC day of both: generated in the demo and tests, observed in
production; the `user_actions` resource decides which.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg

from signalbox.domains.user_activity import GROUP
from signalbox.domains.user_activity.source import UserActionsSource
from signalbox.domains.user_activity.tables import (
    COMMENTS,
    FEED_ACTIONS,
    FEED_COLUMNS,
    MESSAGE_ACTIONS,
    MESSAGE_COLUMNS,
    LandedDay,
    latest_rows,
    newest_event,
)
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.settings import start_date

FEED_ACTIONS_KEY = dg.AssetKey(["raw", f"activity_{FEED_ACTIONS}"])
MESSAGE_ACTIONS_KEY = dg.AssetKey(["raw", f"activity_{MESSAGE_ACTIONS}"])

# First day of user activity (SIGNALBOX_ACTIVITY_START_DATE, YYYY-MM-DD). UTC days; the
# current day is a partition too (end_offset=1): landing it takes the events so far, so a
# schedule can refresh today for the 15-minute checks. The dbt activity assets share it.
ACTIVITY_START_DATE = start_date("SIGNALBOX_ACTIVITY_START_DATE", "2026-11-01")
USER_ACTIVITY_DAILY = dg.DailyPartitionsDefinition(
    start_date=ACTIVITY_START_DATE, timezone="UTC", end_offset=1
)

# Events arrive all day, every minute, and today is landed every 15 minutes: a source with
# nothing new for half an hour has stopped. The sensors/freshness_alerts sensor judges this
# on the newest event (`dagster/last_updated_timestamp`), as a landing run on a clock
# materializes the day even when the source sent nothing.
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30))
LAST_UPDATED = "dagster/last_updated_timestamp"  # Dagster's key for "the data last changed"

_COLUMN_NOTES = {
    "user_id": "The acting user (the sender for messages).",
    "post_id": "The post viewed or liked.",
    "action": "'view' or 'like'.",
    "receiver_id": "The receiver of the message.",
    "time": "When it happened (UTC).",
    "gender": "The acting user's gender code.",
    "age": "The acting user's age in years.",
    "country": "The acting user's country.",
    "city": "The acting user's city.",
    "os": "The acting user's operating system.",
    "source": "How the acting user came to the product (ads, organic).",
    "exp_group": "The acting user's A/B experiment group.",
}


def _spec(key: dg.AssetKey, table: str, columns: dict[str, str]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=f"{COMMENTS[table]} ClickHouse `activity.{table}`, partitioned by UTC day.",
        group_name=GROUP,
        kinds={"clickhouse"},
        partitions_def=USER_ACTIVITY_DAILY,
        freshness_policy=FRESHNESS,
        metadata={
            "dagster/table_name": f"activity.{table}",
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name, kind, description=_COLUMN_NOTES.get(name))
                    for name, kind in columns.items()
                ]
            ),
        },
    )


@dg.multi_asset(
    name="activity_user_actions",
    specs=[
        _spec(FEED_ACTIONS_KEY, FEED_ACTIONS, FEED_COLUMNS),
        _spec(MESSAGE_ACTIONS_KEY, MESSAGE_ACTIONS, MESSAGE_COLUMNS),
    ],
    partitions_def=USER_ACTIVITY_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Land one UTC day of feed and messenger actions in ClickHouse.",
)
def activity_user_actions(
    context: dg.AssetExecutionContext,
    clickhouse: ClickHouseResource,
    user_actions: UserActionsSource,
) -> Iterator[dg.MaterializeResult]:
    # one day per run normally; a single-run backfill hands over a range of days
    window = context.partition_time_window
    days = [
        window.start.date() + timedelta(days=d) for d in range((window.end - window.start).days)
    ]
    for day in days:
        landed = user_actions.land(clickhouse, day)
        context.log.info(
            f"user actions {day}: {landed.feed.rows:,} feed rows, {landed.messages.rows:,} "
            f"messages ({landed.source}); anomalies: {', '.join(landed.anomalies) or 'none'}"
        )
    database = clickhouse.target_database()
    with clickhouse.client("user actions: preview") as client:
        feed_preview = latest_rows(client, database, FEED_ACTIONS, day)
        message_preview = latest_rows(client, database, MESSAGE_ACTIONS, day)
        feed_newest = newest_event(client, database, FEED_ACTIONS)
        message_newest = newest_event(client, database, MESSAGE_ACTIONS)
    yield dg.MaterializeResult(
        asset_key=FEED_ACTIONS_KEY,
        metadata={**feed_metadata(landed, feed_preview), **_last_updated(feed_newest)},
    )
    yield dg.MaterializeResult(
        asset_key=MESSAGE_ACTIONS_KEY,
        metadata={**message_metadata(landed, message_preview), **_last_updated(message_newest)},
    )


def feed_metadata(landed: LandedDay, preview: list) -> dict[str, object]:
    feed = landed.feed
    return {
        "dagster/row_count": feed.rows,
        "views": feed.views,
        "likes": feed.likes,
        **({"ctr": round(feed.ctr, 4)} if feed.ctr is not None else {}),
        "users": feed.users,
        **_time_range(feed.first_time, feed.last_time),
        **_origin(landed),
        "preview": _markdown(preview),
    }


def message_metadata(landed: LandedDay, preview: list) -> dict[str, object]:
    messages = landed.messages
    return {
        "dagster/row_count": messages.rows,
        "messages": messages.rows,
        "senders": messages.senders,
        "receivers": messages.receivers,
        **_time_range(messages.first_time, messages.last_time),
        **_origin(landed),
        "preview": _markdown(preview),
    }


def _time_range(first: datetime | None, last: datetime | None) -> dict[str, object]:
    if first is None or last is None:
        return {"first_event": "-", "last_event": "-"}
    return {
        "first_event": dg.MetadataValue.timestamp(first),
        "last_event": dg.MetadataValue.timestamp(last),
    }


def _last_updated(newest: datetime | None) -> dict[str, object]:
    """The table's newest event, any day: when the source last sent something."""
    return {} if newest is None else {LAST_UPDATED: dg.MetadataValue.timestamp(newest)}


def _origin(landed: LandedDay) -> dict[str, object]:
    origin: dict[str, object] = {"source": landed.source}
    if landed.anomalies:
        origin["injected_anomalies"] = dg.MetadataValue.md(
            "\n".join(f"- `{anomaly}`" for anomaly in landed.anomalies)
        )
    return origin


def _markdown(rows: list) -> dg.MetadataValue:
    import pandas as pd

    header, *body = rows
    if not body:
        return dg.MetadataValue.md("_no rows this day_")
    frame = pd.DataFrame(body, columns=header)
    return dg.MetadataValue.md("Latest rows of the day:\n\n" + frame.to_markdown(index=False))
