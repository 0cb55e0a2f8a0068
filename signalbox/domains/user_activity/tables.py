"""The two user-action tables in ClickHouse (the dbt sources `activity.feed_actions` and
`activity.message_actions`), and what one landed day of them holds.

Both tables are partitioned by UTC day, so a day is replaced or dropped as a whole, and
ordered by time, so a time window (a 15-minute bucket, the tail of today) reads only its
own granules. The demographic columns are the acting user's (the sender's) profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FEED_ACTIONS = "feed_actions"
MESSAGE_ACTIONS = "message_actions"
TABLES = (FEED_ACTIONS, MESSAGE_ACTIONS)

ACTION_TYPE = "Enum8('view' = 1, 'like' = 2)"

# column -> ClickHouse type, in the seed's column order
FEED_COLUMNS: dict[str, str] = {
    "user_id": "UInt32",
    "post_id": "UInt32",
    "action": ACTION_TYPE,
    "time": "DateTime('UTC')",
    "gender": "UInt8",
    "age": "UInt8",
    "country": "LowCardinality(String)",
    "city": "LowCardinality(String)",
    "os": "LowCardinality(String)",
    "source": "LowCardinality(String)",
    "exp_group": "UInt8",
}
MESSAGE_COLUMNS: dict[str, str] = {
    "user_id": "UInt32",
    "receiver_id": "UInt32",
    "time": "DateTime('UTC')",
    "source": "LowCardinality(String)",
    "exp_group": "UInt8",
    "gender": "UInt8",
    "age": "UInt8",
    "country": "LowCardinality(String)",
    "city": "LowCardinality(String)",
    "os": "LowCardinality(String)",
}
COLUMNS = {FEED_ACTIONS: FEED_COLUMNS, MESSAGE_ACTIONS: MESSAGE_COLUMNS}

COMMENTS = {
    FEED_ACTIONS: "One row per view or like of a post in the news feed.",
    MESSAGE_ACTIONS: "One row per message sent in the messenger; profile columns are the sender's.",
}


class UserActionsMissing(LookupError):
    """A table or a day that should be in ClickHouse is not (production observation)."""


def create_table_sql(database: str, table: str) -> str:
    """`CREATE TABLE IF NOT EXISTS` for one of the two tables."""
    columns = ",\n    ".join(f"`{name}` {kind}" for name, kind in COLUMNS[table].items())
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` (\n    {columns}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toDate(time)\n"
        "ORDER BY (time, user_id)\n"
        f"COMMENT '{_escape(COMMENTS[table])}'"
    )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def create_tables(client: Client, database: str) -> None:
    for table in TABLES:
        client.command(create_table_sql(database, table))


def existing_tables(client: Client, database: str) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables"
        " WHERE database = {db:String} AND name IN {names:Array(String)}",
        parameters={"db": database, "names": list(TABLES)},
    ).result_rows
    return {name for (name,) in rows}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


# --------------------------------------------------------------------------- a day's counts


@dataclass(frozen=True)
class FeedDay:
    rows: int
    views: int
    likes: int
    users: int
    first_time: datetime | None
    last_time: datetime | None

    @property
    def ctr(self) -> float | None:
        return self.likes / self.views if self.views else None


@dataclass(frozen=True)
class MessageDay:
    rows: int
    senders: int
    receivers: int
    first_time: datetime | None
    last_time: datetime | None


@dataclass(frozen=True)
class LandedDay:
    """What one UTC day of the two tables holds after landing (or observing) it; the
    same structure whichever source resource produced it."""

    day: date
    feed: FeedDay
    messages: MessageDay
    source: str  # how the day got there: "generated (...)" or "observed (...)"
    anomalies: tuple[str, ...] = ()  # injected into this day (generator only)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def count_day(client: Client, database: str, day: date) -> tuple[FeedDay, MessageDay]:
    """Counts of one day, computed in the engine (two scans of the day's partition)."""
    params = {"day": day}
    feed = client.query(
        "SELECT count(), countIf(action = 'view'), countIf(action = 'like'),"
        " uniqExact(user_id), if(count() = 0, NULL, min(time)), if(count() = 0, NULL, max(time))"
        f" FROM `{database}`.`{FEED_ACTIONS}` WHERE toDate(time) = {{day:Date}}",
        parameters=params,
    ).result_rows[0]
    messages = client.query(
        "SELECT count(), uniqExact(user_id), uniqExact(receiver_id),"
        " if(count() = 0, NULL, min(time)), if(count() = 0, NULL, max(time))"
        f" FROM `{database}`.`{MESSAGE_ACTIONS}` WHERE toDate(time) = {{day:Date}}",
        parameters=params,
    ).result_rows[0]
    return (
        FeedDay(*map(int, feed[:4]), _utc(feed[4]), _utc(feed[5])),
        MessageDay(*map(int, messages[:3]), _utc(messages[3]), _utc(messages[4])),
    )


def newest_event(client: Client, database: str, table: str) -> datetime | None:
    """The time of the table's newest row, any day (None for an empty table): when the
    source last produced data, which a landing run on a clock does not tell."""
    (value,) = client.query(
        f"SELECT if(count() = 0, NULL, max(time)) FROM `{database}`.`{table}`"
    ).result_rows[0]
    return _utc(value)


def latest_rows(client: Client, database: str, table: str, day: date, limit: int = 5) -> list:
    """The day's last few rows (column names first), for a preview in the UI."""
    result = client.query(
        f"SELECT * FROM `{database}`.`{table}` WHERE toDate(time) = {{day:Date}}"
        " ORDER BY time DESC, user_id DESC LIMIT {limit:UInt32}",
        parameters={"day": day, "limit": limit},
    )
    return [list(result.column_names), *[list(row) for row in result.result_rows]]
