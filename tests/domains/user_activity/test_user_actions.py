"""User actions on embedded chDB: the in-engine generator (determinism, idempotent
re-runs, stable profiles, CTR, daily and weekly cycles, anomalies), the two source
resources, the Dagster assets, and the dbt daily table against a pandas computation."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pandas as pd
import pytest

from signalbox.domains.user_activity.raw import (
    FEED_ACTIONS_KEY,
    MESSAGE_ACTIONS_KEY,
    USER_ACTIVITY_DAILY,
    activity_user_actions,
)
from signalbox.domains.user_activity.source import ExistingUserActions
from signalbox.domains.user_activity.tables import UserActionsMissing
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.simulators.user_activity import (
    DEMO_HISTORY,
    Anomaly,
    AnomalySpecError,
    GeneratedUserActions,
    WorldSettings,
    cdf_at,
    demo_anomalies,
    inverse_cdf,
    parse_anomalies,
    plan_day,
    user_profiles_sql,
)

ROOT = Path(__file__).resolve().parents[3]
ACTIVITY_PROJECT = ROOT / "dbt_project" / "activity"
DBT = str(Path(sys.executable).parent / "dbt")

DATABASE = "user_activity_test"  # the `clickhouse` fixture's database (conftest.py)
SMALL = {"users": 20_000, "feed_events_per_day": 60_000, "messages_per_day": 6_000, "seed": 11}
MONDAY, TUESDAY, SATURDAY = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 7)
DBT_DAY, ANOMALY_DAY, CUTOFF_DAY = date(2026, 11, 4), date(2026, 11, 5), date(2026, 11, 6)
EMPTY_DAY = date(2026, 11, 20)
FEED = f"`{DATABASE}`.feed_actions"
MESSAGES = f"`{DATABASE}`.message_actions"


def at(day: date, hh_mm: str) -> datetime:
    hour, minute = map(int, hh_mm.split(":"))
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        hours=hour, minutes=minute
    )


def generated(**overrides) -> GeneratedUserActions:
    return GeneratedUserActions(**{**SMALL, "anomalies": "", **overrides})


def checksum(clickhouse: ClickHouseResource, day: date, before: datetime | None = None) -> tuple:
    """(rows, order-independent hash of every column) of both tables for a day."""
    cutoff = f" AND time < toDateTime({int(before.timestamp())}, 'UTC')" if before else ""
    sums = []
    for table in (FEED, MESSAGES):
        sums += clickhouse.query(
            f"SELECT count(), sum(cityHash64(*)) FROM {table}"
            f" WHERE toDate(time) = {{d:Date}}{cutoff}",
            {"d": day},
        )[0]
    return tuple(sums)


def parts(clickhouse: ClickHouseResource, settle: bool = False) -> list:
    """The source tables' active parts; `settle` first merges each table's parts (FINAL), so
    a background merge cannot change the list while a test compares it."""
    if settle:
        for table in ("feed_actions", "message_actions"):
            clickhouse.command(f"OPTIMIZE TABLE `{DATABASE}`.{table} FINAL")
    return clickhouse.query(
        "SELECT table, name, rows, modification_time FROM system.parts"
        " WHERE database = {db:String} AND active ORDER BY table, name",
        {"db": DATABASE},
    )


def materialize(clickhouse: ClickHouseResource, source, day: date) -> dict:
    """Materialize both assets for `day` through Dagster; metadata per asset key."""
    result = dg.materialize(
        [activity_user_actions],
        partition_key=day.isoformat(),
        resources={"clickhouse": clickhouse, "user_actions": source},
    )
    assert result.success
    return {
        event.asset_key: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


# --------------------------------------------------------------------------- pure parts


def test_anomaly_specs_absolute_relative_and_errors():
    today = date(2026, 11, 25)
    drop = Anomaly.parse("views x0.3 D-1T23:30/D-1T24:00", today)
    assert (drop.start, drop.end) == (at(date(2026, 11, 24), "23:30"), at(today, "00:00"))
    assert drop.factor == 0.3 and not drop.is_spike
    spike = Anomaly.parse("messages x4 2026-11-05T14:00/2026-11-05T14:30", today)
    assert spike.is_spike and str(spike) == "messages x4 2026-11-05T14:00/2026-11-05T14:30"
    assert Anomaly.parse(str(spike), today) == spike  # str() round-trips
    assert parse_anomalies(" ; ", today) == []
    for bad, reason in [
        ("clicks x2 D-1T10:00/D-1T11:00", "'clicks' is not one of"),
        ("views x2 D-1T11:00/D-1T10:00", "is not after start"),
        ("views x2 D-1T25:00/D-1T26:00", "time 'D-1T25:00'"),
        ("views 2 D-1T10:00/D-1T11:00", "expected '<metric> x<factor>"),
    ]:
        with pytest.raises(AnomalySpecError, match=reason) as error:
            Anomaly.parse(bad, today)
        assert bad in str(error.value) or "clicks" in str(error.value)


@pytest.mark.parametrize(
    ("started", "judged"),
    [("10:03", "09:30"), ("10:07", "09:45"), ("00:04", "23:30"), ("00:05", "23:45")],
)
def test_demo_anomalies_fill_the_bucket_the_checks_judge_after_the_demo(started, judged):
    """A drop of views and a spike of messages over the latest bucket complete at the
    stack's start minus the checks' ingestion lag, and the next; the history as is."""
    today = date(2026, 11, 25)
    now = at(today, started)
    first = at(today if judged < started else today - timedelta(days=1), judged)
    anomalies = parse_anomalies(demo_anomalies(now), today)
    assert anomalies[0] == parse_anomalies(DEMO_HISTORY, today)[0]
    live = anomalies[1:]
    assert {(a.metric, a.is_spike) for a in live} == {("views", False), ("messages", True)}
    assert {(a.start, a.end) for a in live} == {(first, first + timedelta(minutes=30))}


def test_day_volumes_follow_the_week_with_mild_deterministic_noise():
    world = WorldSettings()
    days = [date(2026, 11, 2) + timedelta(days=i) for i in range(28)]
    plans = [plan_day(world, day) for day in days]
    assert plans == [plan_day(world, day) for day in days]
    feed = pd.Series([p.feed_events for p in plans], index=[d.weekday() for d in days])
    by_weekday = feed.groupby(level=0).mean()
    assert by_weekday[[5, 6]].mean() > 1.04 * by_weekday[[0, 1, 2, 3]].mean()  # weekends
    assert (abs(feed / world.feed_events_per_day - 1) < 0.15).all()
    assert feed.groupby(level=0).std().max() / feed.mean() < 0.05  # mild noise
    assert plan_day(WorldSettings(seed=8), days[0]) != plans[0]


def test_diurnal_curve_is_a_monotone_inverse_cdf():
    table = inverse_cdf(False)
    assert table[0] == 0 and table[-1] == 86400
    assert all(b >= a for a, b in zip(table, table[1:], strict=False))
    # night (00-03 UTC = 03-06 MSK) is quiet, the evening (16-19 UTC) is the peak
    night = cdf_at(False, 3 * 3600)
    evening = cdf_at(False, 19 * 3600) - cdf_at(False, 16 * 3600)
    assert night < 0.05 < 0.25 < evening
    # weekends start later (share of the day before 08:00 in Moscow)
    assert cdf_at(True, 5 * 3600) < 0.85 * cdf_at(False, 5 * 3600)


# --------------------------------------------------------------------------- generator


def test_generation_is_deterministic_and_a_rerun_replaces_the_day(clickhouse):
    source = generated()
    landed = source.land(clickhouse, MONDAY)
    first = checksum(clickhouse, MONDAY)
    assert first[0] == landed.feed.rows and first[2] == landed.messages.rows
    assert landed.feed.rows > 50_000 and landed.messages.rows > 5_000
    assert source.land(clickhouse, MONDAY) == landed
    assert checksum(clickhouse, MONDAY) == first  # replaced, not appended
    generated(seed=12).land(clickhouse, MONDAY)
    assert checksum(clickhouse, MONDAY) != first
    source.land(clickhouse, MONDAY)
    assert checksum(clickhouse, MONDAY) == first
    staging = clickhouse.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE '%landing%'",
        {"db": DATABASE},
    )
    assert staging == []


def test_profiles_are_stable_per_user_across_days_and_tables(clickhouse):
    source = generated()
    for day in (TUESDAY, SATURDAY):
        source.land(clickhouse, day)
    profile = "gender, age, country, city, os, source, exp_group"
    both = (
        f"SELECT user_id, {profile} FROM {FEED} WHERE toDate(time) IN ({{a:Date}}, {{b:Date}})"
        f" UNION ALL SELECT user_id, {profile} FROM {MESSAGES}"
        " WHERE toDate(time) IN ({a:Date}, {b:Date})"
    )
    days = {"a": TUESDAY, "b": SATURDAY}
    unstable = clickhouse.scalar(
        f"SELECT countIf(n > 1) FROM (SELECT user_id, uniqExact(({profile})) AS n"
        f" FROM ({both}) GROUP BY user_id)",
        days,
    )
    assert unstable == 0
    mismatched = clickhouse.scalar(
        f"SELECT count() FROM (SELECT DISTINCT * FROM ({both})) AS acted"
        f" LEFT ANTI JOIN ({user_profiles_sql(SMALL['users'])}) AS base"
        f" USING (user_id, {profile})",
        days,
    )
    assert mismatched == 0
    acted_on_both_days = clickhouse.scalar(
        f"SELECT count() FROM (SELECT user_id FROM {FEED} WHERE toDate(time) IN"
        " ({a:Date}, {b:Date}) GROUP BY user_id HAVING uniqExact(toDate(time)) = 2)",
        days,
    )
    assert acted_on_both_days > 300  # a core of engaged users comes back
    # realistic shares over the whole user base
    shares = clickhouse.query(
        "SELECT avg(os = 'iOS'), avg(gender = 1), median(age), avg(country = 'Russia'),"
        " uniqExact(exp_group), avg(source = 'ads')"
        f" FROM ({user_profiles_sql(SMALL['users'])})"
    )[0]
    ios, male, age, russia, groups, ads = shares
    assert 0.32 < ios < 0.38 and 0.52 < male < 0.58 and 25 <= age <= 35
    assert 0.68 < russia < 0.76 and groups == 5 and 0.5 < ads < 0.6


def test_ctr_is_realistic_and_varies_by_user_and_post(clickhouse):
    generated().land(clickhouse, MONDAY)
    ctr, user_spread, post_spread = clickhouse.query(
        "SELECT"
        f" (SELECT countIf(action = 'like') / countIf(action = 'view') FROM {FEED}"
        "   WHERE toDate(time) = {d:Date}),"
        " (SELECT stddevPop(c) FROM (SELECT countIf(action = 'like') / countIf(action = 'view') c"
        f"   FROM {FEED} WHERE toDate(time) = {{d:Date}} GROUP BY user_id"
        "   HAVING countIf(action = 'view') >= 50)),"
        " (SELECT stddevPop(c) FROM (SELECT countIf(action = 'like') / countIf(action = 'view') c"
        f"   FROM {FEED} WHERE toDate(time) = {{d:Date}} GROUP BY post_id"
        "   HAVING countIf(action = 'view') >= 300))",
        {"d": MONDAY},
    )[0]
    assert 0.16 < ctr < 0.24
    assert user_spread > 0.04 and post_spread > 0.02


def test_messages_go_mostly_to_friends_in_the_user_base(clickhouse):
    generated().land(clickhouse, MONDAY)
    in_base, to_self, receivers_per_sender = clickhouse.query(
        "SELECT avg(receiver_id <= {users:UInt32}), countIf(receiver_id = user_id),"
        " uniqExact(user_id, receiver_id) / uniqExact(user_id)"
        f" FROM {MESSAGES} WHERE toDate(time) = {{d:Date}}",
        {"d": MONDAY, "users": SMALL["users"]},
    )[0]
    assert 0.95 < in_base < 0.99 and to_self == 0 and receivers_per_sender < 8


def test_events_follow_the_daily_cycle(clickhouse):
    generated().land(clickhouse, MONDAY)
    hourly = dict(
        clickhouse.query(
            f"SELECT toHour(time), count() FROM {FEED} WHERE toDate(time) = {{d:Date}}"
            " GROUP BY 1 ORDER BY 1",
            {"d": MONDAY},
        )
    )
    night = sum(hourly[h] for h in (0, 1, 2)) / 3  # 03-06 in Moscow
    evening = sum(hourly[h] for h in (16, 17, 18)) / 3  # 19-22 in Moscow
    assert len(hourly) == 24 and night < 0.25 * evening
    assert max(hourly, key=hourly.get) in range(15, 20)


def test_a_day_still_running_gets_its_events_up_to_now(clickhouse):
    now = at(CUTOFF_DAY, "12:34")
    source = generated()
    partial = source.land(clickhouse, CUTOFF_DAY, now=now)
    so_far = checksum(clickhouse, CUTOFF_DAY)
    assert partial.feed.last_time < now and partial.messages.last_time < now
    source.land(clickhouse, CUTOFF_DAY)  # the day is over: all of it
    assert checksum(clickhouse, CUTOFF_DAY, before=now) == so_far  # the same rows before now
    assert checksum(clickhouse, CUTOFF_DAY)[0] > so_far[0]
    future = source.land(clickhouse, CUTOFF_DAY, now=at(CUTOFF_DAY, "00:00"))
    assert (future.feed.rows, future.messages.rows) == (0, 0)
    assert checksum(clickhouse, CUTOFF_DAY)[::2] == (0, 0)


# --------------------------------------------------------------------------- anomalies


def bucket_counts(clickhouse: ClickHouseResource, day: date) -> pd.DataFrame:
    feed = clickhouse.query(
        "SELECT toStartOfFifteenMinutes(time) AS b, countIf(action = 'view'),"
        f" countIf(action = 'like'), uniqExact(user_id) FROM {FEED}"
        " WHERE toDate(time) = {d:Date} GROUP BY b",
        {"d": day},
    )
    messages = clickhouse.query(
        f"SELECT toStartOfFifteenMinutes(time) AS b, count() FROM {MESSAGES}"
        " WHERE toDate(time) = {d:Date} GROUP BY b",
        {"d": day},
    )
    frame = pd.DataFrame(feed, columns=["bucket", "views", "likes", "feed_users"])
    frame = frame.merge(pd.DataFrame(messages, columns=["bucket", "messages"]), how="outer")
    frame["bucket"] = pd.to_datetime(frame.bucket, utc=True)
    return frame.set_index("bucket").sort_index().fillna(0)


def test_anomalies_show_in_15_minute_counts_only_in_their_windows(clickhouse):
    day = ANOMALY_DAY
    windows = {
        "views x0.3": ("10:00", "11:00", "views", 0.3, (0.22, 0.38)),
        "messages x4": ("14:00", "14:30", "messages", 4, (3.2, 4.8)),
        "feed_users x0.4": ("18:00", "19:00", "feed_users", 0.4, (0.3, 0.5)),
        "likes x2.5": ("20:00", "20:30", "likes", 2.5, (2.0, 3.0)),
    }
    specs = "; ".join(
        f"{metric} x{factor} {day}T{start}/{day}T{end}"
        for start, end, metric, factor, _ in windows.values()
    )
    generated().land(clickhouse, day)
    normal = bucket_counts(clickhouse, day)
    landed = generated(anomalies=specs).land(clickhouse, day)
    assert len(landed.anomalies) == 4
    changed = bucket_counts(clickhouse, day)
    assert list(changed.index) == list(normal.index)

    inside = pd.Series(False, index=normal.index)
    for start, end, metric, _, (low, high) in windows.values():
        window = (normal.index >= at(day, start)) & (normal.index < at(day, end))
        inside |= window
        ratio = changed.loc[window, metric] / normal.loc[window, metric]
        assert ratio.between(low, high).all(), (metric, ratio.round(2).tolist())
        others = {"views", "likes", "messages"} - {metric}
        if metric == "feed_users":  # users leave with all their events
            others -= {"views", "likes"}
        for other in others:
            assert (changed.loc[window, other] == normal.loc[window, other]).all(), (metric, other)
    # outside the windows every bucket is exactly as before
    pd.testing.assert_frame_equal(changed[~inside], normal[~inside])


# --------------------------------------------------------------------------- Dagster assets


def test_partitions_are_utc_days_from_the_start_date_including_today():
    assert USER_ACTIVITY_DAILY.timezone == "UTC"
    keys = USER_ACTIVITY_DAILY.get_partition_keys()
    assert keys[0] == "2026-11-01" and keys[-1] == datetime.now(UTC).date().isoformat()


def test_materializing_a_partition_twice_lands_the_same_day(clickhouse):
    generated().land(clickhouse, TUESDAY)
    neighbour = checksum(clickhouse, TUESDAY)
    source = generated(anomalies=f"views x0.5 {MONDAY}T12:00/{MONDAY}T13:00")
    first = materialize(clickhouse, source, MONDAY)
    sums = checksum(clickhouse, MONDAY)
    second = materialize(clickhouse, source, MONDAY)
    assert checksum(clickhouse, MONDAY) == sums and second == first
    assert checksum(clickhouse, TUESDAY) == neighbour  # other days untouched

    feed, messages = first[FEED_ACTIONS_KEY], first[MESSAGE_ACTIONS_KEY]
    assert feed["dagster/row_count"] == sums[0] == feed["views"] + feed["likes"]
    assert messages["dagster/row_count"] == messages["messages"] == sums[2]
    assert 0.16 < feed["ctr"] < 0.24 and feed["users"] > 1000 and messages["senders"] > 100
    assert feed["first_event"] >= at(MONDAY, "00:00").timestamp()
    assert feed["last_event"] < at(TUESDAY, "00:00").timestamp()
    assert "views x0.5 2026-11-02T12:00" in feed["injected_anomalies"]
    assert "generated (seed 11" in feed["source"]
    assert "| action " in feed["preview"] and "receiver_id" in messages["preview"]


def test_existing_user_actions_only_observe(clickhouse):
    generated().land(clickhouse, MONDAY)
    before, sums = parts(clickhouse, settle=True), checksum(clickhouse, MONDAY)
    observed = materialize(clickhouse, ExistingUserActions(), MONDAY)
    assert parts(clickhouse) == before and checksum(clickhouse, MONDAY) == sums
    assert observed[FEED_ACTIONS_KEY]["dagster/row_count"] == sums[0]
    assert observed[MESSAGE_ACTIONS_KEY]["dagster/row_count"] == sums[2]
    assert observed[FEED_ACTIONS_KEY]["source"] == f"observed ({clickhouse.describe()})"
    assert "injected_anomalies" not in observed[FEED_ACTIONS_KEY]

    with pytest.raises(UserActionsMissing, match=f"0 rows for {EMPTY_DAY}"):
        ExistingUserActions().land(clickhouse, EMPTY_DAY)
    assert parts(clickhouse) == before

    empty = on_database(clickhouse, f"{DATABASE}_empty")
    with pytest.raises(UserActionsMissing, match=f"no table {DATABASE}_empty.feed_actions"):
        ExistingUserActions().land(empty, MONDAY)
    tables = empty.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", {"db": f"{DATABASE}_empty"}
    )
    assert tables == []


def on_database(resource: ClickHouseResource, database: str) -> ClickHouseResource:
    """The same engine, another database (on a server, created first: its owner's job)."""
    if resource.is_embedded:
        return ClickHouseResource(database=database)
    resource.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    return ClickHouseResource(url=urlunsplit(urlsplit(resource.url)._replace(path=database)))


# --------------------------------------------------------------------------- dbt daily table


def own_profiles(feed: pd.DataFrame, messages: pd.DataFrame) -> pd.DataFrame:
    """Each user's profile from their latest own row of the day (feed or sent message), as
    text like dbt's toString ('1', '25'); ties in time go to the highest profile."""
    own_rows = pd.concat([feed, messages])[["user_id", "time", "os", "gender", "age"]]
    ordered = own_rows.sort_values(["time", "os", "gender", "age"])
    return ordered.groupby("user_id").last()[["os", "gender", "age"]].astype(str)


def expected_daily_dimensions(
    feed: pd.DataFrame, messages: pd.DataFrame, known: pd.DataFrame | None = None
) -> dict:
    """The seed's computation in pandas: per user, then summed by the user's profile: their
    own (latest own row of the day), else `known` (the latest from earlier days, as
    `own_profiles` gives them), else 'unknown'."""
    views = feed[feed.action == "view"].groupby("user_id").size().rename("views")
    likes = feed[feed.action == "like"].groupby("user_id").size().rename("likes")
    sent = messages.groupby("user_id").agg(
        messages_sent=("receiver_id", "size"), users_sent=("receiver_id", "nunique")
    )
    received = (
        messages.groupby("receiver_id")
        .agg(messages_received=("user_id", "size"), users_received=("user_id", "nunique"))
        .rename_axis("user_id")
    )
    users = pd.concat([views, likes, sent, received, own_profiles(feed, messages)], axis=1)
    metrics = ["views", "likes", "messages_received", "messages_sent"]
    metrics += ["users_received", "users_sent"]
    users[metrics] = users[metrics].fillna(0).astype(int)
    profile = ["os", "gender", "age"]
    if known is not None:
        users[profile] = users[profile].fillna(known.reindex(users.index)[profile])
    users[profile] = users[profile].fillna("unknown")
    expected = {}
    for dimension in profile:
        for value, row in users.groupby(dimension)[metrics].sum().iterrows():
            expected[(dimension, value)] = tuple(int(row[m]) for m in metrics)
    return expected


def test_daily_dimensions_from_dbt_equal_pandas_on_generated_data(clickhouse, signalbox_home):
    world = {"users": 3_000, "feed_events_per_day": 20_000, "messages_per_day": 3_000}
    GeneratedUserActions(**world, seed=5, anomalies="").land(clickhouse, DBT_DAY)
    expected = expected_daily_dimensions(*raw_day(clickhouse, DBT_DAY))
    assert ("os", "unknown") in expected and len(expected) > 60  # every age, os, gender

    dbt_build(clickhouse, signalbox_home, DBT_DAY, DBT_DAY, "+activity_daily_dimensions")
    assert daily_dimensions(clickhouse, DBT_DAY) == expected


def dbt_build(
    clickhouse, signalbox_home: Path, first: date, last: date, select: str, more_vars: str = ""
) -> None:
    vars_ = f"{{min_date: '{first}', max_date: '{last}'{more_vars}}}"
    with clickhouse.dbt_lock("test: dbt build") as env:
        result = subprocess.run(
            [DBT, "build", "--select", select, "--vars", vars_]
            # tests whose parents are all selected (a singular test also reads the KPIs)
            + ["--indirect-selection", "cautious"]
            + ["--project-dir", str(ACTIVITY_PROJECT), "--profiles-dir", str(ACTIVITY_PROJECT)]
            + ["--target-path", str(signalbox_home / "dbt-target-user-activity")]
            + ["--log-path", str(signalbox_home / "dbt-logs-user-activity")],
            cwd=ACTIVITY_PROJECT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def daily_dimensions(clickhouse, day: date) -> dict:
    rows = clickhouse.query(
        "SELECT dimension, dimension_value, views, likes, messages_received, messages_sent,"
        f" users_received, users_sent FROM `{DATABASE}_marts`.activity_daily_dimensions"
        " WHERE event_date = {d:Date}",
        {"d": day},
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def raw_day(clickhouse, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    with clickhouse.client("test: raw rows for pandas") as client:
        feed = client.query_df(
            "SELECT user_id, toString(action) AS action, time, os, gender, age"
            f" FROM {FEED} WHERE toDate(time) = {{d:Date}}",
            parameters={"d": day},
        )
        messages = client.query_df(
            "SELECT user_id, receiver_id, time, os, gender, age"
            f" FROM {MESSAGES} WHERE toDate(time) = {{d:Date}}",
            parameters={"d": day},
        )
    return feed, messages


def test_a_run_drops_what_killed_builds_left_once_no_run_can_still_own_it(
    clickhouse, signalbox_home
):
    """A build killed between creating `<model>__dbt_new_data_<id>` and swapping it in
    leaves that table; the next run drops it once older than `dead_build_hours` (a run
    still building is younger), and nothing else."""
    GeneratedUserActions(users=500, feed_events_per_day=2_000, messages_per_day=300,
                         seed=3, anomalies="").land(clickhouse, DBT_DAY)  # fmt: skip
    left = [
        f"`{DATABASE}_marts`.activity_kpis_daily__dbt_new_data_0f3a",
        f"`{DATABASE}_marts`.activity_metrics_15min__dbt_backup",
    ]  # of models this run does not build (dbt drops a built model's own `__dbt_tmp`)
    kept = f"`{DATABASE}_marts`.kpis_by_hand"  # a table of someone's own
    clickhouse.command(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}_marts`")
    for table in (*left, kept):
        clickhouse.command(f"CREATE TABLE {table} (n UInt8) ENGINE = MergeTree ORDER BY n")

    def tables() -> set[str]:
        return {
            f"`{database}`.{name}"
            for database, name in clickhouse.query(
                "SELECT database, name FROM system.tables WHERE database LIKE {d:String}",
                {"d": f"{DATABASE}%"},
            )
        }

    model = "+int_activity__user_daily"
    dbt_build(clickhouse, signalbox_home, DBT_DAY, DBT_DAY, model)  # 6 h: too young
    assert {*left, kept} <= tables()
    dbt_build(clickhouse, signalbox_home, DBT_DAY, DBT_DAY, model, ", dead_build_hours: 0")
    assert not set(left) & tables() and kept in tables()
    clickhouse.command(f"DROP TABLE {kept}")


def test_receivers_take_their_latest_profile_and_the_marts_reach_the_warehouse(
    clickhouse, signalbox_home, fresh_database
):
    """Day 2's receivers without a row of their own are placed by their day-1 profile (the
    user dimension), so `unknown` shrinks to users never seen with one; the publish asset
    copies the day's marts into PostgreSQL for the dashboards, replacing them on a re-run,
    with the unknown share in its metadata."""
    from signalbox.domains.user_activity.publish import SCHEMA, activity_marts_published

    first, second = date(2026, 11, 10), date(2026, 11, 11)
    world = {"users": 3_000, "feed_events_per_day": 20_000, "messages_per_day": 3_000}
    for day in (first, second):
        GeneratedUserActions(**world, seed=5, anomalies="").land(clickhouse, day)
    marts = "+activity_daily_dimensions +activity_kpis_daily +activity_metrics_15min"
    dbt_build(clickhouse, signalbox_home, first, second, marts)
    # the profiles known before the second day: from every day built so far (other tests
    # of this module build days of this database too), the latest day winning
    built = clickhouse.query(
        f"SELECT DISTINCT event_date FROM `{DATABASE}_intermediate`.int_activity__user_daily"
        " WHERE event_date < {d:Date} ORDER BY event_date",
        {"d": second},
    )
    assert first in {row[0] for row in built}
    known = None
    for (day,) in built:
        profiles = own_profiles(*raw_day(clickhouse, day))
        known = profiles if known is None else profiles.combine_first(known)
    feed, messages = raw_day(clickhouse, second)
    expected = expected_daily_dimensions(feed, messages, known)
    assert daily_dimensions(clickhouse, second) == expected
    alone = expected_daily_dimensions(feed, messages)  # as if day 1 had never been seen
    received = 2  # the index of messages_received in the figures
    assert expected[("os", "unknown")][received] < alone[("os", "unknown")][received]

    with fresh_database() as warehouse:
        for _ in range(2):  # a re-run replaces the day
            result = dg.materialize(
                [activity_marts_published],
                partition_key=second.isoformat(),
                resources={"clickhouse": clickhouse, "warehouse": warehouse},
            )
            assert result.success
        published = warehouse.query(
            f"select dimension, dimension_value, views, likes, messages_received,"
            f" messages_sent, users_received, users_sent from {SCHEMA}.daily_dimensions"
            " where event_date = %s",
            (second,),
        )
        assert {(r[0], r[1]): tuple(int(v) for v in r[2:]) for r in published} == expected
        buckets = warehouse.scalar(f"select count(*) from {SCHEMA}.metrics_15min")
        assert buckets == 96
        long = warehouse.scalar(f"select count(distinct metric) from {SCHEMA}.metrics_15min_long")
        assert long == 6  # feed users, views, likes, ctr, messenger users, messages sent
        metadata = {
            event.asset_key.path[-1]: event.materialization.metadata
            for event in result.get_asset_materialization_events()
        }
        share = metadata["activity_daily_dimensions"]["unknown_share_messages_received"].value
        total = sum(v[received] for (d, _), v in expected.items() if d == "os")
        assert share == round(expected[("os", "unknown")][received] / total, 4)
