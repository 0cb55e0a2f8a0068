"""A deterministic world of user actions, generated one UTC day at a time inside ClickHouse.

Every row is a pure function of (seed, day, row number): `INSERT INTO ... SELECT ... FROM
numbers(N)` with hash functions, never rows built in Python, so 10 M events take seconds.
Python only decides the small things (the day's volume, the diurnal curve as an
inverse-CDF table, lookup tables of demographics) and writes them into the SQL.

The world:
- `users` users with a profile derived from the user id alone (gender, age, country and
  city, os, traffic source, experiment group), so a user looks the same every day.
- Each day a subset of users is active: user u is active with probability
  `engagement_u ** beta` (engagement is part of the profile), so a core of engaged users
  comes back daily and the long tail appears now and then; the most engaged active users
  also act most often. The active share follows the day's volume (about 40 feed events
  and 8 messages per active user, capped).
- Volume per day: the configured mean times a weekday factor (weekends differ) and a
  +-4% deterministic noise. Times follow a smooth diurnal curve of a UTC+3 audience
  (night trough, evening peak; later mornings at weekends), by inverse-CDF sampling.
- A feed row is a like with a probability from the user's taste and the post's appeal,
  so likes/views is about 0.2 overall and varies by user and post. Posts are mostly
  recent ones. Messages go mostly to a small, stable circle of friends among the users who
  use the app (the most engaged 5% of the base), some to random users, a few to ids
  outside it.
- Anomalies thin (factor < 1) or multiply (factor > 1) one metric's events in a time
  window, in SQL: drops filter rows by a hash, spikes add generated rows in the window.

Landing a day builds it in a staging table and swaps it in with `REPLACE PARTITION`, so
a re-run replaces the day atomically (readers never see it half-built, and a failure
leaves the previous version) and, for a complete day, gives exactly the same rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from signalbox.checks.sql import latest_bucket
from signalbox.domains.user_activity import BUCKET, INGESTION_LAG
from signalbox.domains.user_activity.source import UserActionsSource
from signalbox.domains.user_activity.tables import (
    ACTION_TYPE,
    FEED_ACTIONS,
    FEED_COLUMNS,
    MESSAGE_ACTIONS,
    MESSAGE_COLUMNS,
    TABLES,
    LandedDay,
    count_day,
    create_tables,
    day_bounds,
)
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.stack import LocalStack, stand_in

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# --------------------------------------------------------------------------- the world's knobs

FEED_EVENTS_PER_ACTIVE_USER = 40
MESSAGES_PER_ACTIVE_SENDER = 8
MAX_ACTIVE_SHARE = {FEED_ACTIONS: 0.6, MESSAGE_ACTIONS: 0.3}
MIN_ACTIVE_SHARE = 0.002
# Monday .. Sunday: people scroll more and write more at weekends
FEED_WEEKDAY_FACTOR = (1.00, 1.01, 1.00, 0.99, 0.96, 1.07, 1.09)
MESSAGE_WEEKDAY_FACTOR = (1.00, 0.99, 1.00, 1.01, 1.05, 1.10, 1.03)
DAILY_NOISE = 0.04
AUDIENCE_UTC_OFFSET_HOURS = 3  # the curves below are in the audience's local time
POSTS_PER_DAY = 150
POST_POOL_DAYS = 7  # how far back a feed reaches for posts (recent ones are likelier)
FRIENDS_PER_USER = 12
# friends are people who use the app: drawn from the users whose feed engagement is in the
# top share (most of them show up with a profile of their own within days); the random and
# outside receivers are the ones a breakdown cannot place
FRIEND_POOL_SHARE = 0.05
OUTSIDE_RECEIVER_SHARE = 0.03  # messages to ids outside the user base
RANDOM_RECEIVER_SHARE = 0.05  # messages to a random user of the base
INVERSE_CDF_SIZE = 2048
ACTION_ENUM = "'" + ACTION_TYPE.replace("'", "\\'") + "'"
LOW_CARDINALITY_ARRAY = "Array(LowCardinality(String))"

# Profile: gender code 1 for about 55% of users; os iOS 35% / Android 65%; traffic source
# ads 55% / organic 45%; experiment groups 0-4 uniform; age and place from the tables below.
AGE_BANDS = ((14, 17, 0.05), (18, 24, 0.22), (25, 34, 0.30), (35, 44, 0.21))
AGE_BANDS += ((45, 54, 0.12), (55, 64, 0.07), (65, 80, 0.03))
PLACES = (
    ("Russia", "Moscow", 0.22),
    ("Russia", "Saint Petersburg", 0.11),
    ("Russia", "Novosibirsk", 0.05),
    ("Russia", "Yekaterinburg", 0.05),
    ("Russia", "Kazan", 0.04),
    ("Russia", "Nizhny Novgorod", 0.04),
    ("Russia", "Krasnodar", 0.04),
    ("Russia", "Samara", 0.03),
    ("Russia", "Rostov-on-Don", 0.03),
    ("Russia", "Omsk", 0.03),
    ("Russia", "Voronezh", 0.03),
    ("Russia", "Perm", 0.03),
    ("Russia", "Ufa", 0.02),
    ("Ukraine", "Kyiv", 0.04),
    ("Ukraine", "Kharkiv", 0.02),
    ("Ukraine", "Odesa", 0.015),
    ("Ukraine", "Dnipro", 0.015),
    ("Belarus", "Minsk", 0.04),
    ("Belarus", "Gomel", 0.01),
    ("Belarus", "Brest", 0.01),
    ("Kazakhstan", "Almaty", 0.025),
    ("Kazakhstan", "Astana", 0.015),
    ("Kazakhstan", "Karaganda", 0.01),
    ("Azerbaijan", "Baku", 0.03),
    ("Finland", "Helsinki", 0.015),
    ("Finland", "Espoo", 0.005),
    ("Turkey", "Istanbul", 0.012),
    ("Turkey", "Antalya", 0.008),
    ("Latvia", "Riga", 0.01),
)
LOOKUP_SLOTS = 1000
PROFILE_SALT = 0x5EED_0F_0A11_05E2  # profiles depend on the user id only, never the seed

# diurnal curves in local hours: (centre, width, height) bumps on a floor, wrapped at 24 h
WEEKDAY_CURVE = (0.05, ((8.5, 1.2, 0.35), (13.0, 1.6, 0.45), (17.0, 2.5, 0.45), (21.0, 1.9, 1.0)))
WEEKEND_CURVE = (0.07, ((11.0, 2.0, 0.50), (15.0, 2.6, 0.60), (21.5, 2.0, 1.0)))

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WorldSettings:
    """What the generated world looks like; the resource's fields map onto it."""

    users: int = 200_000
    feed_events_per_day: int = 300_000
    messages_per_day: int = 30_000
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("users", "feed_events_per_day", "messages_per_day"):
            if getattr(self, name) < 0 or (name == "users" and self.users < 2):
                raise ValueError(
                    f"generator setting {name} must be positive, got {getattr(self, name)}"
                )
        if self.users > 2**31:
            raise ValueError(f"generator setting users must fit UInt32 ids, got {self.users}")


@dataclass(frozen=True)
class DayPlan:
    """The day's volumes and active shares before anomalies (pure; no engine)."""

    day: date
    feed_events: int
    messages: int
    feed_active_share: float
    messenger_active_share: float

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5


def stable_uniform(*parts: object) -> float:
    """A uniform [0, 1) number from its parts (for Python-side decisions)."""
    return stable_hash(*parts) / 2.0**64


def stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def active_share(events: int, users: int, per_active_user: int, cap: float) -> float:
    return min(cap, max(MIN_ACTIVE_SHARE, events / (users * per_active_user)))


def plan_day(settings: WorldSettings, day: date) -> DayPlan:
    weekday = day.weekday()
    noise = 1 + DAILY_NOISE * (2 * stable_uniform(settings.seed, day, "volume") - 1)
    feed = round(settings.feed_events_per_day * FEED_WEEKDAY_FACTOR[weekday] * noise)
    noise = 1 + DAILY_NOISE * (2 * stable_uniform(settings.seed, day, "messages") - 1)
    messages = round(settings.messages_per_day * MESSAGE_WEEKDAY_FACTOR[weekday] * noise)
    return DayPlan(
        day=day,
        feed_events=feed,
        messages=messages,
        feed_active_share=active_share(
            feed, settings.users, FEED_EVENTS_PER_ACTIVE_USER, MAX_ACTIVE_SHARE[FEED_ACTIONS]
        ),
        messenger_active_share=active_share(
            messages, settings.users, MESSAGES_PER_ACTIVE_SENDER, MAX_ACTIVE_SHARE[MESSAGE_ACTIONS]
        ),
    )


# --------------------------------------------------------------------------- diurnal curve


@lru_cache(maxsize=4)
def diurnal_weights(weekend: bool) -> tuple[float, ...]:
    """Relative intensity of each UTC minute of the day (1440 values, peak 1-ish)."""
    floor, bumps = WEEKEND_CURVE if weekend else WEEKDAY_CURVE
    local_hours = (np.arange(1440) + 0.5) / 60 + AUDIENCE_UTC_OFFSET_HOURS
    weights = np.full(1440, floor)
    for centre, width, height in bumps:
        distance = np.abs((local_hours - centre + 12) % 24 - 12)
        weights += height * np.exp(-0.5 * (distance / width) ** 2)
    return tuple(weights.tolist())


@lru_cache(maxsize=4)
def _cdf(weekend: bool) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(diurnal_weights(weekend)))
    return np.concatenate([[0.0], cumulative / cumulative[-1]])


def cdf_at(weekend: bool, second_of_day: float) -> float:
    """Share of a day's events before `second_of_day` (piecewise linear per minute)."""
    return float(np.interp(second_of_day, np.arange(1441) * 60.0, _cdf(weekend)))


@lru_cache(maxsize=4)
def inverse_cdf(weekend: bool, size: int = INVERSE_CDF_SIZE) -> tuple[float, ...]:
    """Second of the day at quantiles 0, 1/size, ..., 1: the generator interpolates
    between neighbours, so a uniform number maps to a time on the curve."""
    quantiles = np.linspace(0.0, 1.0, size + 1)
    return tuple(np.interp(quantiles, _cdf(weekend), np.arange(1441) * 60.0).tolist())


# --------------------------------------------------------------------------- anomalies


@dataclass(frozen=True)
class _Target:
    table: str
    action: str | None  # feed rows of this action only
    unit: str  # "event": thin/add single events; "user": thin/add whole users


ANOMALY_METRICS: dict[str, _Target] = {
    "views": _Target(FEED_ACTIONS, "view", "event"),
    "likes": _Target(FEED_ACTIONS, "like", "event"),
    "feed_events": _Target(FEED_ACTIONS, None, "event"),
    "feed_users": _Target(FEED_ACTIONS, None, "user"),
    "messages": _Target(MESSAGE_ACTIONS, None, "event"),
    "messenger_users": _Target(MESSAGE_ACTIONS, None, "user"),
}


class AnomalySpecError(ValueError):
    """An anomaly spec that cannot be used; the message quotes it."""


_SPEC = re.compile(
    r"^\s*(?P<metric>\w+)\s+x(?P<factor>\d+(?:\.\d*)?|\.\d+)"
    r"\s+(?P<start>\S+)\s*/\s*(?P<end>\S+)\s*$"
)
_RELATIVE = re.compile(r"^D(?P<offset>[+-]\d+)?T(?P<hour>\d{1,2}):(?P<minute>\d{2})$")


@dataclass(frozen=True)
class Anomaly:
    """Multiply `metric`'s events in [start, end) by `factor` (< 1 a drop, > 1 a spike).

    metric: views, likes, feed_events (both), feed_users (whole users leave or extra
    users arrive, so the active-user count moves too), messages, messenger_users."""

    metric: str
    start: datetime
    end: datetime
    factor: float

    def __post_init__(self) -> None:
        if self.metric not in ANOMALY_METRICS:
            raise AnomalySpecError(
                f"anomaly metric {self.metric!r} is not one of {', '.join(ANOMALY_METRICS)}"
            )
        object.__setattr__(self, "start", _as_utc(self.start))
        object.__setattr__(self, "end", _as_utc(self.end))
        if not self.end > self.start:
            raise AnomalySpecError(
                f"anomaly {self.metric}: end {self.end} is not after start {self.start}"
            )
        if not 0 <= self.factor <= 1000:
            raise AnomalySpecError(
                f"anomaly {self.metric}: factor {self.factor} is not in [0, 1000]"
            )

    @property
    def target(self) -> _Target:
        return ANOMALY_METRICS[self.metric]

    @property
    def is_spike(self) -> bool:
        return self.factor > 1

    def __str__(self) -> str:
        return f"{self.metric} x{self.factor:g} {_stamp(self.start)}/{_stamp(self.end)}"

    @classmethod
    def parse(cls, spec: str, today: date) -> Anomaly:
        """`<metric> x<factor> <start>/<end>`; times are UTC, either absolute
        (`2026-11-23T18:00`) or relative to `today` (`D-1T18:00`, `D-1T24:00` = midnight)."""
        match = _SPEC.match(spec)
        if not match:
            raise AnomalySpecError(
                f"anomaly {spec!r}: expected '<metric> x<factor> <start>/<end>',"
                " e.g. 'views x0.3 D-1T18:00/D-1T20:00'"
            )
        start = _parse_time(match["start"], today, spec)
        end = _parse_time(match["end"], today, spec)
        try:
            return cls(match["metric"], start, end, float(match["factor"]))
        except AnomalySpecError as exc:
            raise AnomalySpecError(f"anomaly {spec!r}: {exc}") from None

    def clipped(self, start: datetime, end: datetime) -> Anomaly | None:
        """This anomaly within [start, end), or None when they do not overlap."""
        low, high = max(self.start, start), min(self.end, end)
        return Anomaly(self.metric, low, high, self.factor) if high > low else None


def parse_anomalies(specs: str | Iterable[str], today: date) -> list[Anomaly]:
    """Specs separated by `;` (or a list of them); blanks are ignored."""
    items = specs.split(";") if isinstance(specs, str) else list(specs)
    return [Anomaly.parse(item, today) for item in items if item.strip()]


def _parse_time(text: str, today: date, spec: str) -> datetime:
    relative = _RELATIVE.match(text)
    try:
        if relative:
            day = today + timedelta(days=int(relative["offset"] or 0))
            hour, minute = int(relative["hour"]), int(relative["minute"])
            if hour > 24 or minute > 59 or (hour == 24 and minute):
                raise ValueError(f"bad time of day {hour}:{minute:02d}")
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                hours=hour, minutes=minute
            )
        return _as_utc(datetime.fromisoformat(text))
    except ValueError as exc:
        raise AnomalySpecError(
            f"anomaly {spec!r}: time {text!r} is neither ISO (2026-11-23T18:00) nor"
            f" relative to today (D-1T18:00): {exc}"
        ) from None


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S").removesuffix(":00")


# --------------------------------------------------------------------------- SQL pieces


def _uniform(expr: str) -> str:
    """A UInt64 hash -> a uniform Float64 in [0, 1) (its top 53 bits)."""
    return f"(bitShiftRight({expr}, 11) / 9007199254740992.0)"


def _array(values: Sequence[object]) -> str:
    def literal(value: object) -> str:
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    return "[" + ",".join(map(literal, values)) + "]"


def _slots(weights: Sequence[float]) -> list[int]:
    """LOOKUP_SLOTS indexes into `weights`, each index as often as its weight says."""
    cumulative = np.cumsum(np.asarray(weights, dtype=float))
    cumulative /= cumulative[-1]
    quantiles = (np.arange(LOOKUP_SLOTS) + 0.5) / LOOKUP_SLOTS
    return np.searchsorted(cumulative, quantiles).tolist()


@lru_cache(maxsize=1)
def _profile_tables() -> tuple[str, str, str]:
    ages = [a for low, high, _ in AGE_BANDS for a in range(low, high + 1)]
    age_weights = [w / (high - low + 1) for low, high, w in AGE_BANDS for _ in range(low, high + 1)]
    age_slots = [ages[i] for i in _slots(age_weights)]
    place_slots = _slots([w for _, _, w in PLACES])
    return (
        _array(age_slots),
        _array([PLACES[i][0] for i in place_slots]),
        _array([PLACES[i][1] for i in place_slots]),
    )


def profile_columns(user_id: str = "user_id") -> dict[str, str]:
    """SQL expressions of a user's profile from the user id expression alone.

    `p1`/`p2` are helper hashes; `user_ctr` (taste for liking) and `engagement_*` are
    hidden traits the generator uses but never stores."""
    ages, countries, cities = _profile_tables()
    return {
        "p1": f"intHash64(bitXor(toUInt64({user_id}), {PROFILE_SALT}))",
        "p2": "intHash64(p1)",
        "gender": "toUInt8(p1 % 100 < 55)",
        "age": f"arrayElement({ages}, 1 + intDiv(p1, 100) % {LOOKUP_SLOTS})",
        "place": f"1 + intDiv(p1, 100000) % {LOOKUP_SLOTS}",
        "country": f"arrayElement(CAST({countries}, '{LOW_CARDINALITY_ARRAY}'), place)",
        "city": f"arrayElement(CAST({cities}, '{LOW_CARDINALITY_ARRAY}'), place)",
        "os": "toLowCardinality(if(intDiv(p1, 100000000) % 100 < 35, 'iOS', 'Android'))",
        "source": "toLowCardinality(if(intDiv(p1, 10000000000) % 100 < 55, 'ads', 'organic'))",
        "exp_group": "toUInt8(intDiv(p1, 1000000000000) % 5)",
        "user_ctr": f"(0.08 + 0.24 * {_uniform('p2')})",
        "engagement_feed": _uniform("intHash64(p2 + 1)"),
        "engagement_messages": _uniform("intHash64(p2 + 2)"),
    }


def user_profiles_sql(users: int) -> str:
    """Every user's stored profile (user_id, gender, age, country, city, os, source,
    exp_group): for tests and for anyone who wants a users dimension."""
    profile = profile_columns("number + 1")
    helper = ", ".join(f"{profile[name]} AS {name}" for name in ("p1", "p2", "place"))
    stored = ", ".join(
        f"{profile[name]} AS {name}"
        for name in ("gender", "age", "country", "city", "os", "source", "exp_group")
    )
    return (
        f"SELECT toUInt32(number + 1) AS user_id, {stored} "
        f"FROM (SELECT number, {helper} FROM numbers({users}))"
    )


def _active_users_sql(settings: WorldSettings, day: date, table: str, share: float) -> str:
    """Scalar subquery: the day's active users of a table, most engaged first."""
    engagement = "engagement_feed" if table == FEED_ACTIONS else "engagement_messages"
    profile = profile_columns("user_id")
    beta = 1 / share - 1  # E[engagement ** beta] = 1 / (beta + 1) = share
    salt = stable_hash(settings.seed, day, table, "active")
    today = _uniform(f"intHash64(bitXor(toUInt64(user_id), {salt}))")
    return (
        "(SELECT if(empty(active), [toUInt32(1)], active) FROM ("
        "SELECT arrayMap(pair -> pair.2, arraySort(groupArray((rank, user_id)))) AS active"
        f" FROM (SELECT user_id, {profile['p1']} AS p1, {profile['p2']} AS p2,"
        f" {profile[engagement]} AS engagement, -engagement AS rank"
        f" FROM (SELECT toUInt32(number + 1) AS user_id FROM numbers({settings.users}))"
        f" WHERE {today} < pow(engagement, {beta:.6f}))))"
    )


def _friend_pool_sql(settings: WorldSettings) -> str:
    """Scalar subquery: the users friends are drawn from (the most engaged on the feed, in
    id order: the same every day)."""
    profile = profile_columns("user_id")
    return (
        "(SELECT if(empty(pool), [toUInt32(1)], pool) FROM ("
        "SELECT arraySort(groupArray(user_id)) AS pool"
        f" FROM (SELECT user_id, {profile['p1']} AS p1, {profile['p2']} AS p2"
        f" FROM (SELECT toUInt32(number + 1) AS user_id FROM numbers({settings.users}))"
        f" WHERE {profile['engagement_feed']} >= {1 - FRIEND_POOL_SHARE!r})))"
    )


@dataclass(frozen=True)
class _Batch:
    """One generated batch of rows: the day's base rows or one spike's extra rows."""

    rows: int
    salt: int
    window: tuple[int, int]  # [first, last] second of the day the rows may fall in
    quantiles: tuple[float, float]  # the part of the diurnal curve they are drawn from
    action: str | None = None  # feed rows: force this action (spikes of views or likes)
    uniform_users: bool = False  # spikes of users: anyone in the base, once each


def _time_sql(day_start: int, batch: _Batch) -> tuple[str, str]:
    """(quantile position, time): `u_time` mapped onto the batch's part of the curve, then
    through the inverse-CDF table (linear between its points), clamped to the window."""
    low, high = batch.quantiles
    first, last = batch.window
    position = f"({low!r} + {high - low!r} * u_time) * {INVERSE_CDF_SIZE}"
    at = "arrayElement(inverse_cdf, q_index + {})".format
    second = f"{at(1)} + ({at(2)} - {at(1)}) * (q_position - q_index)"
    second = f"greatest({first}, least({last}, floor({second})))"
    return position, f"toDateTime({day_start} + toUInt32({second}), 'UTC')"


def _keep_sql(drops: Sequence[Anomaly], table: str, until: int) -> str:
    """WHERE of a batch: before the cutoff and not thinned out by a drop."""
    conditions = [f"time < toDateTime({until}, 'UTC')"]
    for anomaly in drops:
        target = anomaly.target
        if target.table != table:
            continue
        key = "h" if target.unit == "event" else "toUInt64(user_id)"
        salt = stable_hash(str(anomaly), "drop")
        window = (
            f"time >= toDateTime({int(anomaly.start.timestamp())}, 'UTC')"
            f" AND time < toDateTime({int(anomaly.end.timestamp())}, 'UTC')"
        )
        if target.action:
            window += f" AND action = '{target.action}'"
        thinned = f"{_uniform(f'intHash64(bitXor({key}, {salt}))')} >= {anomaly.factor!r}"
        conditions.append(f"NOT ({window} AND {thinned})")
    return " AND ".join(conditions)


def feed_insert_sql(
    target: str,
    settings: WorldSettings,
    plan: DayPlan,
    batch: _Batch,
    drops: Sequence[Anomaly],
    until: int,
) -> str:
    """INSERT of one batch of feed actions into `target` (a table name)."""
    day_start = int(day_bounds(plan.day)[0].timestamp())
    position_sql, time_sql = _time_sql(day_start, batch)
    profile = profile_columns("user_id")
    if batch.uniform_users:
        user_sql = f"toUInt32(1 + floor({settings.users} * u_user))"
    else:
        # u^1.5: the most engaged of the day's active users act most (pow() is slow)
        user_sql = (
            "arrayElement(active, 1 + toUInt32(floor(length(active) * u_user * sqrt(u_user))))"
        )
    if batch.action:
        action_sql = f"CAST('{batch.action}', {ACTION_ENUM})"
    else:  # a row is a like with odds like_rate : 1, so likes / views ~ like_rate
        action_sql = f"CAST(1 + (u_like * (1 + like_rate) < like_rate), {ACTION_ENUM})"
    day_index = (plan.day - date(2020, 1, 1)).days
    newest_post = (day_index + 1) * POSTS_PER_DAY
    post_pool = POST_POOL_DAYS * POSTS_PER_DAY  # u^2.5: mostly the newest posts
    post_appeal = _uniform(
        f"intHash64(bitXor(toUInt64(post_id), {stable_hash(settings.seed, 'posts')}))"
    )
    columns = ", ".join(FEED_COLUMNS)
    active = (
        _active_users_sql(settings, plan.day, FEED_ACTIONS, plan.feed_active_share)
        if not batch.uniform_users
        else "[toUInt32(1)]"
    )
    return f"""
INSERT INTO {target} ({columns})
WITH
    {_array(inverse_cdf(plan.weekend))} AS inverse_cdf,
    {active} AS active
SELECT {columns}
FROM (
    SELECT
        intHash64(number + {batch.salt}) AS h,
        {_uniform("h")} AS u_time,
        {_uniform("intHash64(h + 1)")} AS u_user,
        {_uniform("intHash64(h + 2)")} AS u_post,
        {_uniform("intHash64(h + 3)")} AS u_like,
        {user_sql} AS user_id,
        {profile["p1"]} AS p1,
        {profile["p2"]} AS p2,
        {profile["place"]} AS place,
        toUInt32({newest_post} - floor({post_pool} * u_post * u_post * sqrt(u_post))) AS post_id,
        {profile["user_ctr"]} * (0.6 + 0.8 * {post_appeal}) AS like_rate,
        {action_sql} AS action,
        {position_sql} AS q_position,
        toUInt32(floor(q_position)) AS q_index,
        {time_sql} AS time,
        {profile["gender"]} AS gender,
        {profile["age"]} AS age,
        {profile["country"]} AS country,
        {profile["city"]} AS city,
        {profile["os"]} AS os,
        {profile["source"]} AS source,
        {profile["exp_group"]} AS exp_group
    FROM numbers({batch.rows})
)
WHERE {_keep_sql(drops, FEED_ACTIONS, until)}
"""


def message_insert_sql(
    target: str,
    settings: WorldSettings,
    plan: DayPlan,
    batch: _Batch,
    drops: Sequence[Anomaly],
    until: int,
) -> str:
    """INSERT of one batch of messages into `target`."""
    day_start = int(day_bounds(plan.day)[0].timestamp())
    position_sql, time_sql = _time_sql(day_start, batch)
    profile = profile_columns("user_id")
    if batch.uniform_users:
        user_sql = f"toUInt32(1 + floor({settings.users} * u_user))"
    else:
        user_sql = "arrayElement(active, 1 + toUInt32(floor(length(active) * u_user * u_user)))"
    active = (
        _active_users_sql(settings, plan.day, MESSAGE_ACTIONS, plan.messenger_active_share)
        if not batch.uniform_users
        else "[toUInt32(1)]"
    )
    users = settings.users
    outside = max(1, users // 20)
    friend_salt = stable_hash(settings.seed, "friends")
    # the k-th friend of a user is a hash of (user, k); favourite friends (small k) get more
    pick = f"toUInt64(floor({FRIENDS_PER_USER} * u_friend * u_friend))"
    friend_hash = f"intHash64(toUInt64(user_id) * 64 + {pick} + {friend_salt})"
    friend = f"arrayElement(friend_pool, 1 + {friend_hash} % length(friend_pool))"
    in_base = 1 - OUTSIDE_RECEIVER_SHARE
    columns = ", ".join(MESSAGE_COLUMNS)
    return f"""
INSERT INTO {target} ({columns})
WITH
    {_array(inverse_cdf(plan.weekend))} AS inverse_cdf,
    {active} AS active,
    {_friend_pool_sql(settings)} AS friend_pool
SELECT {columns}
FROM (
    SELECT
        intHash64(number + {batch.salt}) AS h,
        {_uniform("h")} AS u_time,
        {_uniform("intHash64(h + 1)")} AS u_user,
        {_uniform("intHash64(h + 4)")} AS u_kind,
        {_uniform("intHash64(h + 5)")} AS u_friend,
        {user_sql} AS user_id,
        multiIf(
            u_kind < {in_base - RANDOM_RECEIVER_SHARE!r}, {friend},
            u_kind < {in_base!r}, 1 + intHash64(h + 6) % {users},
            {users} + 1 + intHash64(h + 6) % {outside}
        ) AS picked,
        toUInt32(if(picked = user_id, picked % {users} + 1, picked)) AS receiver_id,
        {position_sql} AS q_position,
        toUInt32(floor(q_position)) AS q_index,
        {time_sql} AS time,
        {profile["p1"]} AS p1,
        {profile["place"]} AS place,
        {profile["source"]} AS source,
        {profile["exp_group"]} AS exp_group,
        {profile["gender"]} AS gender,
        {profile["age"]} AS age,
        {profile["country"]} AS country,
        {profile["city"]} AS city,
        {profile["os"]} AS os
    FROM numbers({batch.rows})
)
WHERE {_keep_sql(drops, MESSAGE_ACTIONS, until)}
"""


# --------------------------------------------------------------------------- landing a day


INSERT_SETTINGS = {"max_insert_threads": 2, "max_threads": 2}


def generate_day(
    client: Client,
    database: str,
    settings: WorldSettings,
    day: date,
    anomalies: Sequence[Anomaly] = (),
    until: datetime | None = None,
) -> list[Anomaly]:
    """Replace `day` in both tables with its generated rows; rows at or after `until`
    (e.g. now, for a day still running) are left out. Returns the anomalies applied,
    clipped to the day."""
    create_tables(client, database)
    plan = plan_day(settings, day)
    start, end = day_bounds(day)
    cutoff = min(end, _as_utc(until)) if until else end
    applied = [a for a in (x.clipped(start, cutoff) for x in anomalies) if a is not None]
    for table in TABLES:
        _land_table(client, database, table, settings, plan, applied, cutoff)
    return applied


def _land_table(
    client: Client,
    database: str,
    table: str,
    settings: WorldSettings,
    plan: DayPlan,
    anomalies: Sequence[Anomaly],
    cutoff: datetime,
) -> None:
    target = f"`{database}`.`{table}`"
    staging = f"`{database}`.`{table}__landing_{plan.day:%Y%m%d}`"
    build = feed_insert_sql if table == FEED_ACTIONS else message_insert_sql
    rows = plan.feed_events if table == FEED_ACTIONS else plan.messages
    mine = [a for a in anomalies if a.target.table == table]
    drops = [a for a in mine if a.factor < 1]
    day_start = int(day_bounds(plan.day)[0].timestamp())
    until = int(cutoff.timestamp())
    client.command(f"DROP TABLE IF EXISTS {staging}")
    client.command(f"CREATE TABLE {staging} AS {target}")
    try:
        if until > day_start:
            base = _Batch(rows, stable_hash(settings.seed, plan.day, table), (0, 86399), (0.0, 1.0))
            client.command(
                build(staging, settings, plan, base, drops, until), settings=INSERT_SETTINGS
            )
            for number, spike in enumerate(a for a in mine if a.is_spike):
                extra = _spike_batch(client, staging, settings, plan, spike, number)
                if extra.rows:
                    sql = build(staging, settings, plan, extra, drops, until)
                    client.command(sql, settings=INSERT_SETTINGS)
        landed = client.command(f"SELECT count() FROM {staging}")
        partition = f"'{plan.day.isoformat()}'"
        if int(landed):
            client.command(f"ALTER TABLE {target} REPLACE PARTITION {partition} FROM {staging}")
        else:  # nothing to swap in: the day is empty now
            client.command(f"ALTER TABLE {target} DROP PARTITION {partition}")
    finally:
        client.command(f"DROP TABLE IF EXISTS {staging}")


def _spike_batch(
    client: Client,
    staging: str,
    settings: WorldSettings,
    plan: DayPlan,
    spike: Anomaly,
    number: int,
) -> _Batch:
    """Extra rows making `spike.factor` times the base in the spike's window: per event,
    (factor - 1) x the base events there; per user, (factor - 1) x the base's active users
    summed over its 15-minute buckets, each extra event by a user drawn from the whole base."""
    target = spike.target
    window = (
        f"time >= toDateTime({int(spike.start.timestamp())}, 'UTC')"
        f" AND time < toDateTime({int(spike.end.timestamp())}, 'UTC')"
    )
    if target.action:
        window += f" AND action = '{target.action}'"
    if target.unit == "event":
        base = client.command(f"SELECT count() FROM {staging} WHERE {window}")
    else:
        base = client.command(
            f"SELECT sum(users) FROM (SELECT uniqExact(user_id) AS users FROM {staging}"
            f" WHERE {window} GROUP BY toStartOfFifteenMinutes(time))"
        )
    day_start = day_bounds(plan.day)[0]
    first = int((spike.start - day_start).total_seconds())
    last = int((spike.end - day_start).total_seconds()) - 1
    return _Batch(
        rows=round((spike.factor - 1) * int(base or 0)),
        salt=stable_hash(settings.seed, plan.day, str(spike), number, "spike"),
        window=(first, last),
        quantiles=(cdf_at(plan.weekend, first), cdf_at(plan.weekend, last + 1)),
        action=target.action,
        uniform_users=target.unit == "user",
    )


# --------------------------------------------------------------------------- the resource

# The demo's anomalies. History, relative to the day of the run (D = today, UTC): an
# outage that takes 60% of the feed's users away for an hour two days ago. Live, set by
# the local stack when it starts (demo_anomalies): views drop to 30% and messages spike
# to 4x in the bucket the activity checks judge right after the demo's runs, and the
# next one (a quarter-hour may turn while the demo runs), so they alert on both.
DEMO_HISTORY = "feed_users x0.4 D-2T14:00/D-2T15:00"


def demo_anomalies(now: datetime) -> str:
    """DEMO_HISTORY and, in absolute UTC times, the live drop and spike for a demo that
    starts at `now`: over the latest bucket complete at now - INGESTION_LAG and the next."""
    step = int(BUCKET.total_seconds())
    judged = latest_bucket(now, INGESTION_LAG, step)
    start = datetime.fromtimestamp(judged, UTC)
    window = f"{_stamp(start)}/{_stamp(start + 2 * BUCKET)}"
    return f"{DEMO_HISTORY}; views x0.3 {window}; messages x4 {window}"


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
        default=DEMO_HISTORY,
        description=(
            "Injected anomalies separated by ';', each '<metric> x<factor> <start>/<end>' in "
            "UTC, absolute (2026-11-23T18:00) or relative to today (D-1T18:00); metrics: "
            + ", ".join(ANOMALY_METRICS)
            + ". Empty for none. The local stack adds the demo's live ones (demo_anomalies)."
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


@stand_in("user actions (generated in embedded chDB)", unless="SIGNALBOX_CLICKHOUSE_URL")
def _local_user_actions(stack: LocalStack) -> str:
    stack.default(
        SIGNALBOX_USER_ACTIONS="generated",
        SIGNALBOX_ACTIVITY_ANOMALIES=demo_anomalies(datetime.now(UTC)),
    )
    return str(stack.home / "clickhouse")
