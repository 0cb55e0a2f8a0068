"""Where user actions come from: the environment picks one of these resources for the
`user_actions` key, and the asset calls `land()` without knowing which.

- `GeneratedUserActions` (demo, tests): generates the day inside ClickHouse and swaps it
  into the tables, with the configured anomalies.
- `ExistingUserActions` (production): the tables are filled by the product; landing a
  day only observes it (counts, first and last event) and never writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
from pydantic import Field

from signalbox.assets.user_activity.generator import (
    ANOMALY_METRICS,
    WorldSettings,
    generate_day,
    parse_anomalies,
)
from signalbox.assets.user_activity.tables import (
    FEED_ACTIONS,
    TABLES,
    LandedDay,
    UserActionsMissing,
    count_day,
    existing_tables,
)
from signalbox.platform.clickhouse import ClickHouseResource

# The demo's anomalies, relative to the day the run happens (D = today, UTC): an outage
# that halves the feed's active users for an hour two days ago, and at the very end of
# yesterday (its last two 15-minute buckets, so the latest complete buckets of the last
# complete day breach their band) views drop to 30% while messages spike to 4x.
# The checks judge the latest complete bucket; a sustained anomaly is caught on its first
# bucket, after which it is part of the next band's history. So the demo's live ones fill
# exactly the last bucket of yesterday, which is the latest complete one after the demo.
DEMO_ANOMALIES = (
    "feed_users x0.4 D-2T14:00/D-2T15:00; "
    "views x0.3 D-1T23:45/D-1T24:00; "
    "messages x4 D-1T23:45/D-1T24:00"
)


class UserActionsSource(dg.ConfigurableResource):
    """Lands (or observes) one UTC day of `feed_actions` and `message_actions`."""

    def land(
        self, clickhouse: ClickHouseResource, day: date, now: datetime | None = None
    ) -> LandedDay:
        raise NotImplementedError


class GeneratedUserActions(UserActionsSource):
    """A deterministic generated world: same settings and day, same rows."""

    users: int = Field(default=200_000, description="Size of the user base (ids 1..users).")
    feed_events_per_day: int = Field(
        default=300_000,
        description="Mean feed events (views + likes) per day; weekdays and noise vary it.",
    )
    messages_per_day: int = Field(default=30_000, description="Mean messages per day.")
    seed: int = Field(default=7, description="Seed of the events (profiles depend on ids only).")
    anomalies: str = Field(
        default=DEMO_ANOMALIES,
        description=(
            "Injected anomalies separated by ';', each '<metric> x<factor> <start>/<end>' in "
            "UTC, absolute (2026-11-23T18:00) or relative to today (D-1T18:00); metrics: "
            + ", ".join(ANOMALY_METRICS)
            + ". Empty for none."
        ),
    )

    def settings(self) -> WorldSettings:
        return WorldSettings(
            users=self.users,
            feed_events_per_day=self.feed_events_per_day,
            messages_per_day=self.messages_per_day,
            seed=self.seed,
        )

    def describe(self) -> str:
        return (
            f"generated (seed {self.seed}, {self.users:,} users, ~{self.feed_events_per_day:,}"
            f" feed events and ~{self.messages_per_day:,} messages a day)"
        )

    def land(
        self, clickhouse: ClickHouseResource, day: date, now: datetime | None = None
    ) -> LandedDay:
        """Replace the day with its generated rows; a day not over yet gets its events up
        to `now` only (default: the clock)."""
        now = now or datetime.now(UTC)
        anomalies = parse_anomalies(self.anomalies, today=now.astimezone(UTC).date())
        database = clickhouse.target_database()
        with clickhouse.client("user actions: generate a day") as client:
            applied = generate_day(client, database, self.settings(), day, anomalies, until=now)
            feed, messages = count_day(client, database, day)
        return LandedDay(day, feed, messages, self.describe(), tuple(map(str, applied)))


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
