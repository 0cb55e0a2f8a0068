"""Where user actions come from: the environment picks a resource for the `user_actions`
key, and the asset calls `land()` without knowing which.

- `ExistingUserActions` (production): the tables are filled by the product; landing a
  day only observes it (counts, first and last event) and never writes.
- `GeneratedUserActions` (local stand-in, signalbox.simulators.user_activity): generates
  the day inside ClickHouse with the configured anomalies.
"""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
from pydantic import Field

from signalbox.domains.user_activity.tables import (
    FEED_ACTIONS,
    TABLES,
    LandedDay,
    UserActionsMissing,
    count_day,
    existing_tables,
)
from signalbox.platform.clickhouse import ClickHouseResource


class UserActionsSource(dg.ConfigurableResource):
    """Lands (or observes) one UTC day of `feed_actions` and `message_actions`."""

    def land(
        self, clickhouse: ClickHouseResource, day: date, now: datetime | None = None
    ) -> LandedDay:
        raise NotImplementedError


class ExistingUserActions(UserActionsSource):
    """Production: the product writes the tables; a day is observed, never written."""

    min_feed_rows: int = Field(
        default=1,
        description="A day with fewer feed rows than this fails (its load is late or broken).",
    )

    def land(
        self, clickhouse: ClickHouseResource, day: date, now: datetime | None = None
    ) -> LandedDay:
        database = clickhouse.target_database()
        with clickhouse.client("user actions: observe a day") as client:
            missing = [t for t in TABLES if t not in existing_tables(client, database)]
            if missing:
                raise UserActionsMissing(
                    f"ClickHouse {clickhouse.describe()} has no table "
                    + ", ".join(f"{database}.{t}" for t in missing)
                    + ": production user actions are written by the product, not by signalbox"
                )
            feed, messages = count_day(client, database, day)
        if feed.rows < self.min_feed_rows:
            raise UserActionsMissing(
                f"{database}.{FEED_ACTIONS} has {feed.rows} rows for {day} in "
                f"{clickhouse.describe()}, fewer than min_feed_rows={self.min_feed_rows}"
            )
        return LandedDay(day, feed, messages, f"observed ({clickhouse.describe()})")
