"""IQR checks: the SQL of both engines against a pandas reference of the seed's rule on
hundreds of random series, and the check factory end to end on chDB and PostgreSQL."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2.extras
import pytest

from signalbox.checks.iqr import (
    BREACH,
    INSIDE,
    NO_DATA,
    NOT_JUDGED,
    IqrCheckSpec,
    IqrConfigError,
    IqrQuery,
    IqrRule,
    Metric,
    SeasonalRule,
    clickhouse_iqr_sql,
    evaluate,
    iqr_check_keys,
    iqr_checks,
    metadata_values,
    parse_rows,
    postgres_iqr_sql,
    run_iqr_query,
    series_from_metadata,
)
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.user_activity import Anomaly, parse_anomalies

BUCKET = timedelta(minutes=15)
BASE = datetime(2024, 3, 10, tzinfo=UTC)
GRID = 150  # buckets 0..149 complete, bucket 150 still filling at NOW
NOW = BASE + GRID * BUCKET + timedelta(minutes=7)
SERIES = 320
DATABASE = "test_iqr_checks"


# --------------------------------------------------------------------------- the reference


@pytest.fixture(scope="module")
def activity_checks(code_location):
    """The user-activity domain's IQR checks (its module needs the dbt manifest)."""
    from signalbox.domains.user_activity import checks

    return checks


@pytest.fixture(scope="module")
def mailbox_checks(code_location):
    from signalbox.domains.mailbox import checks

    return checks


def reference(
    frame: pd.DataFrame,
    metric: str,
    rule: IqrRule,
    bucket: timedelta,
    now,
    history,
    kind: str = "ratio",
) -> pd.DataFrame:
    """The seed's rule in pandas, written independently of the SQL. The bucket judged is
    the latest one complete at `now`, row or no row. Each series is laid on the time grid
    from its first row in the lookback (the buckets the band of every returned bucket
    reads) to that bucket: a ratio's missing bucket is NaN, a count's is 0 (a row's NaN
    is NaN for both). q25/q75 of
    `shift(1).rolling(n)` with pandas' linear interpolation; with `smooth_bounds`, the
    seed's `rolling(n, center=True, min_periods=1).mean()` of the bounds as it stands
    when each bucket is judged (see `seed_template_band`); every bucket of the last
    `history` up to the latest complete bucket (and that bucket whatever `history` is)."""
    step = pd.Timedelta(bucket)
    latest = pd.Timestamp(now).floor(step) - step
    history_s = max(int(history.total_seconds()), 1)
    back = math.ceil(history_s / step.total_seconds()) + rule.n + rule.smoothing_buckets
    frame = frame[(frame.ts >= latest - back * step) & (frame.ts <= latest)]
    if frame.empty:
        return pd.DataFrame()
    first = frame.groupby("sid").ts.min()
    spans = ((latest - first) // step + 1).to_numpy(dtype=int)
    steps = np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    grid = pd.DataFrame(
        {
            "sid": np.repeat(first.index.to_numpy(), spans),
            "ts": pd.DatetimeIndex(first.repeat(spans)) + steps * step,
        }
    )
    full = grid.merge(frame[["sid", "ts", metric]], on=["sid", "ts"], how="left", indicator=True)
    values = full[metric].astype(float)
    if kind == "count":  # a bucket without a row counts 0; a row's NaN stays NaN
        values = values.mask(full["_merge"] == "left_only", 0.0)
    previous = values.groupby(full.sid).shift(1)

    def rolling(series: pd.Series, min_periods: int, window: int = rule.n):
        return series.groupby(full.sid).rolling(window, min_periods=min_periods)

    def aligned(result: pd.Series) -> pd.Series:
        return result.reset_index(level=0, drop=True).reindex(full.index)

    q25 = aligned(rolling(previous, rule.n).quantile(0.25))
    q75 = aligned(rolling(previous, rule.n).quantile(0.75))
    iqr = q75 - q25
    lower, upper = q25 - rule.a * iqr, q75 + rule.a * iqr
    if rule.smooth_bounds:
        # A bucket judged is the last of the series, so the centered window of n has only
        # its n//2 buckets before (pandas' convention, odd and even n) and itself.
        kept = rule.n // 2 + 1
        lower = aligned(rolling(lower, 1, kept).mean())
        upper = aligned(rolling(upper, 1, kept).mean())
    below = (lower - values).clip(lower=0)
    above = (values - upper).clip(lower=0)
    distance = {"both": below.where(values < lower, above), "drop": below, "spike": above}
    distance = distance[rule.direction].where(lower.notna() & values.notna())
    deviation = ((values - previous) / previous.abs() * 100).where(previous != 0)
    result = pd.DataFrame(
        {
            "part": full.sid.astype(str),
            "ts": full.ts,
            "value": values,
            "q25": q25,
            "q75": q75,
            "lower": lower,
            "upper": upper,
            "distance": distance,
            "deviation_pct": deviation,
            "window_count": aligned(rolling(previous, 0).count()).astype(int),
            "breach": (distance > 0).fillna(False).astype(bool),
            "is_latest": full.ts == latest,
        }
    )
    keep = full.ts > latest - pd.Timedelta(seconds=history_s)
    return result[keep].sort_values(["part", "ts"], ignore_index=True)


def seed_template_band(values: pd.Series, n: int, a: float) -> tuple[float, float]:
    """The seed's alert DAG (karpov.courses template) verbatim, run on the series up to
    and including the bucket it judges (`iloc[-1]`): its band (low, up) for that bucket."""
    df = pd.DataFrame({"metric": values.to_numpy(dtype=float)})
    df["q25"] = df["metric"].shift(1).rolling(n).quantile(0.25)
    df["q75"] = df["metric"].shift(1).rolling(n).quantile(0.75)
    df["iqr"] = df["q75"] - df["q25"]
    df["up"] = df["q75"] + a * df["iqr"]
    df["low"] = df["q25"] - a * df["iqr"]
    df["up"] = df["up"].rolling(n, center=True, min_periods=1).mean()
    df["low"] = df["low"].rolling(n, center=True, min_periods=1).mean()
    return df["low"].iloc[-1], df["up"].iloc[-1]


_references: dict = {}


def cached_reference(frame, metric, rule, history, kind="ratio") -> pd.DataFrame:
    """The reference of the module's random series, computed once for both engines."""
    key = (metric, rule, history, kind)
    if key not in _references:
        _references[key] = reference(frame, metric, rule, BUCKET, NOW, history, kind)
    return _references[key]


def engine_frame(points) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "part": [p.partition for p in points],
            "ts": [pd.Timestamp(p.bucket_start) for p in points],
            "value": [p.value for p in points],
            "q25": [p.q25 for p in points],
            "q75": [p.q75 for p in points],
            "lower": [p.lower for p in points],
            "upper": [p.upper for p in points],
            "distance": [p.distance_outside for p in points],
            "deviation_pct": [p.deviation_pct for p in points],
            "window_count": [p.window_count for p in points],
            "breach": [p.breach for p in points],
            "is_latest": [p.is_latest for p in points],
        },
    ).astype({c: float for c in ("value", "q25", "q75", "lower", "upper", "distance")})


def assert_same(engine: pd.DataFrame, expected: pd.DataFrame, what: str) -> None:
    engine = engine.sort_values(["part", "ts"], ignore_index=True)
    assert len(engine) == len(expected), what
    assert (engine.part == expected.part).all() and (engine.ts == expected.ts).all(), what
    for column in ("value", "q25", "q75", "lower", "upper", "distance", "deviation_pct"):
        got = engine[column].astype(float).to_numpy()
        want = expected[column].astype(float).to_numpy()
        close = np.isclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)
        assert close.all(), (
            f"{what}: {column} differs at "
            f"{engine.loc[~close, ['part', 'ts']].head().to_dict('records')}: "
            f"{got[~close][:5]} vs {want[~close][:5]}"
        )
    for column in ("window_count", "breach", "is_latest"):
        same = engine[column].to_numpy() == expected[column].to_numpy()
        assert same.all(), f"{what}: {column} differs at {engine.loc[~same, ['part', 'ts']]}"


# --------------------------------------------------------------------------- random series

KINDS = ("gauss", "ties", "zeros", "constant", "negative", "shifted", "nulls", "gaps", "short")


def random_series(seed: int) -> pd.DataFrame:
    """One series of a kind picked by the seed; most run up to the still-filling bucket,
    some stop earlier (then they are not judged), some are shorter than any window."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    length = int(rng.integers(1, 9)) if kind == "short" else int(rng.integers(20, 140))
    end = GRID if rng.random() < 0.8 else int(rng.integers(length, GRID + 1))
    start = max(0, end - length + 1)
    steps = np.arange(start, end + 1)
    if kind == "ties":
        values = rng.integers(0, 4, len(steps)).astype(float)
    elif kind == "zeros":
        values = (rng.random(len(steps)) < 0.1).astype(float)
    elif kind == "constant":
        values = np.full(len(steps), 7.0)
    elif kind == "negative":
        values = np.round(rng.normal(-50, 20, len(steps)), 3)
    else:
        values = np.round(rng.normal(100, 15, len(steps)), 3)
    if kind == "shifted" or rng.random() < 0.3:  # a drop or a spike somewhere near the end
        at = int(rng.integers(max(0, len(steps) - 6), len(steps)))
        values[at] *= rng.choice([0.2, 3.0])
    frame = pd.DataFrame(
        {
            "sid": seed,
            "ts": [BASE + int(s) * BUCKET for s in steps],
            "v": values,
            "c": rng.poisson(3, len(steps)).astype(np.int64),
        }
    )
    if kind == "nulls":
        frame.loc[rng.random(len(frame)) < 0.2, "v"] = np.nan
    if kind == "gaps":
        frame = frame[rng.random(len(frame)) >= 0.1]
    frame["ts"] = pd.to_datetime(frame.ts, utc=True)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return pd.concat([random_series(seed) for seed in range(SERIES)], ignore_index=True)


BASE_RULES = [
    (IqrRule(), timedelta(days=2)),  # the rule, every bucket of the table
    (IqrRule(a=1.5, n=3, direction="drop"), timedelta(days=2)),
    (IqrRule(a=0.0, n=1, direction="spike"), timedelta(days=2)),
    (IqrRule(a=2.0, n=4, direction="both"), timedelta(days=2)),  # even n: 2 before
    (IqrRule(a=0.5, n=8, direction="both"), timedelta(hours=6)),
    (IqrRule(a=3.0, n=2, direction="spike"), timedelta(0)),  # the latest bucket only
]
# every rule with raw bounds (the default, the literal rule) and smoothed ones
RULES = [
    (replace(rule, smooth_bounds=smooth), history)
    for rule, history in BASE_RULES
    for smooth in (False, True)
]


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def clickhouse(clickhouse_database) -> Iterator[ClickHouseResource]:
    """The session's chDB directory, in a database of this module's own."""
    with clickhouse_database(DATABASE) as resource:
        yield resource


@pytest.fixture(scope="module")
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as resource:
        yield resource


def load_clickhouse(resource: ClickHouseResource, table: str, frame: pd.DataFrame) -> None:
    with resource.client("test load") as client:
        client.command(f"DROP TABLE IF EXISTS {table}")
        client.command(
            f"CREATE TABLE {table} (sid UInt32, ts DateTime('UTC'), v Nullable(Float64),"
            " c UInt32) ENGINE = MergeTree ORDER BY (ts, sid)"
        )
        if len(frame):
            rows = [
                [
                    int(r.sid),
                    r.ts.to_pydatetime(),
                    None if math.isnan(r.v) else float(r.v),
                    int(r.c),
                ]
                for r in frame.itertuples()
            ]
            client.insert(table, rows, column_names=["sid", "ts", "v", "c"])


def load_postgres(resource: WarehouseResource, table: str, frame: pd.DataFrame) -> None:
    with resource.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS test")
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(
            f"CREATE TABLE {table} (sid int, ts timestamptz, v float8, c bigint,"
            " PRIMARY KEY (sid, ts))"
        )
        rows = [
            (int(r.sid), r.ts.to_pydatetime(), None if math.isnan(r.v) else float(r.v), int(r.c))
            for r in frame.itertuples()
        ]
        psycopg2.extras.execute_values(cur, f"INSERT INTO {table} VALUES %s", rows, page_size=5000)


def query_clickhouse(resource, query: IqrQuery, now, history):
    with resource.client("test query") as client:
        result = client.query(clickhouse_iqr_sql(query, now, history))
        return parse_rows(query.names, result.column_names, result.result_rows)


def query_postgres(resource, query: IqrQuery, now, history):
    with resource.connect() as conn, conn.cursor() as cur:
        cur.execute(postgres_iqr_sql(query, now, history))
        return parse_rows(query.names, [d.name for d in cur.description], cur.fetchall())


# ClickHouse embedded (chDB in this process) and as a server over HTTP, and PostgreSQL
ENGINES: dict[str, tuple[Callable, Callable, str]] = {
    "clickhouse": (load_clickhouse, query_clickhouse, f"{DATABASE}.series"),
    "clickhouse-http": (load_clickhouse, query_clickhouse, f"{DATABASE}.series"),
    "postgres": (load_postgres, query_postgres, "test.series"),
}


@pytest.fixture(scope="module")
def clickhouse_http(clickhouse_server_database) -> Iterator[ClickHouseResource]:
    with clickhouse_server_database(DATABASE) as resource:
        yield resource


@pytest.fixture(scope="module")
def engines(clickhouse, clickhouse_http, warehouse) -> dict[str, tuple[object, str]]:
    """Each engine's resource and the schema of the test's tables there."""
    return {
        "clickhouse": (clickhouse, DATABASE),
        "clickhouse-http": (clickhouse_http, DATABASE),
        "postgres": (warehouse, "test"),
    }


@contextmanager
def warm(resource) -> Iterator[None]:
    """Keep chDB up across a test's many short clients: closing the process's last client
    shuts the embedded engine down, and restarting it costs about 0.3 s each time."""
    if isinstance(resource, ClickHouseResource):
        with resource.client("test: keep the engine up"):
            yield
    else:
        yield


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request, series, engines):
    load, run, table = ENGINES[request.param]
    resource, _ = engines[request.param]
    with warm(resource):
        load(resource, table, series)
        yield request.param, resource, run, table


# --------------------------------------------------------------------------- SQL vs pandas


@pytest.mark.parametrize(("rule", "history"), RULES, ids=[r.describe() for r, _ in RULES])
def test_sql_equals_the_pandas_reference_on_random_series(engine, series, rule, history):
    name, resource, run, table = engine
    # v a ratio (its gaps and NULLs are no data), c a count (its gaps are 0)
    metrics = (Metric("v", "ratio"), Metric("c", "count"))
    query = IqrQuery(table, "ts", metrics, BUCKET, rule, partition_column="sid")
    points = run(resource, query, NOW, history)
    for metric in metrics:
        expected = cached_reference(series, metric.name, rule, history, metric.kind)
        assert_same(engine_frame(points[metric.name]), expected, f"{name} {metric} {rule}")
    latest = [p for p in points["v"] if p.is_latest]
    assert {p.bucket_start for p in latest} == {BASE + (GRID - 1) * BUCKET}  # never bucket 150
    assert any(p.breach for p in latest) or rule.direction != "both"


@pytest.mark.parametrize("smooth", [True, False])
def test_the_random_series_cover_every_case(series, smooth):
    rule = IqrRule(smooth_bounds=smooth)
    expected = cached_reference(series, "v", rule, timedelta(days=2))
    latest = expected[expected.is_latest]
    assert latest.breach.sum() >= 15 and (~latest.breach & latest.distance.notna()).sum() >= 20
    assert latest.distance.isna().sum() >= 10  # not judged: short history, nulls, gaps
    assert (latest.q25 == latest.q75).sum() >= 10  # ties and constant series: IQR = 0
    assert expected.window_count.lt(rule.n).sum() > 100
    assert (series.v < 0).sum() > 100 and (series.v == 0).sum() > 100
    assert latest.value.isna().sum() >= 5  # series that stop before the latest bucket
    raw = cached_reference(series, "v", replace(rule, smooth_bounds=False), timedelta(days=2))
    judged_alone = expected.lower.notna() & expected.q25.isna()
    if smooth:  # what the smoothing changes is exercised, at the latest bucket too
        changed = ~np.isclose(expected.lower, raw.lower, equal_nan=True)
        assert changed.sum() > 5000 and (changed & expected.is_latest).sum() >= 50
        assert (expected.breach != raw.breach).sum() > 300
        # judged with the raw bands of the buckets before, its own window being short
        assert judged_alone.sum() > 100 and (judged_alone & expected.is_latest).sum() >= 3
    else:
        assert not judged_alone.any()
        assert expected.lower.equals(expected.q25 - 3 * (expected.q75 - expected.q25))


def test_smoothing_is_the_seed_template_run_at_each_bucket(series):
    """The reference's smoothing is the seed's code as it runs every 15 minutes: the
    template verbatim on the series up to each bucket gives that bucket's band, for odd
    and even n (pandas' centered window keeps n//2 buckets before the last one)."""
    kinds = ("gauss", "ties", "zeros", "constant", "negative", "shifted", "nulls")
    sids = [sid for sid in range(2 * len(KINDS)) if KINDS[sid % len(KINDS)] in kinds]
    for n in (1, 2, 3, 4, 5, 8):
        rule = IqrRule(a=2.5, n=n, smooth_bounds=True)
        for sid in sids[: len(kinds)] if n == 5 else sids[n : n + 1]:
            frame = series[series.sid == sid].reset_index(drop=True)
            now = frame.ts.iloc[-1].to_pydatetime() + timedelta(minutes=7)  # last one filling
            expected = reference(frame, "v", rule, BUCKET, now, timedelta(days=2))
            last = len(frame) - 1  # the short history at the start, and the end
            for t in [*range(min(12, last)), *range(max(12, last - 12), last)]:
                low, up = seed_template_band(frame.v.iloc[: t + 1], n, rule.a)
                got = expected.iloc[t]
                assert np.isclose(got.lower, low, equal_nan=True), (n, sid, t)
                assert np.isclose(got.upper, up, equal_nan=True), (n, sid, t)


@pytest.mark.parametrize("name", list(ENGINES))
def test_each_series_alone_matches_the_reference(name, engines, series):
    """Without a partition column (one series per table): the band of its own latest."""
    load, run, _ = ENGINES[name]
    resource, schema = engines[name]
    table = f"{schema}.single"
    with warm(resource):
        for seed in range(len(KINDS)):
            frame = series[series.sid == seed].reset_index(drop=True)
            load(resource, table, frame)
            for rule, history in RULES[:2]:  # the rule, raw and smoothed
                query = IqrQuery(table, "ts", (Metric("v", "ratio"),), BUCKET, rule)
                got = engine_frame(run(resource, query, NOW, history)["v"])
                expected = reference(frame, "v", rule, BUCKET, NOW, history).assign(part="")
                assert_same(got, expected, f"{name} seed {seed} {rule}")


# --------------------------------------------------------------------------- hand cases


def hand_frame(values, *, end_filling: bool = True) -> pd.DataFrame:
    """Buckets 0..len-1; NOW falls inside the last one when `end_filling`."""
    return pd.DataFrame(
        {
            "sid": 1,
            "ts": pd.to_datetime([BASE + i * BUCKET for i in range(len(values))], utc=True),
            "v": [np.nan if v is None else float(v) for v in values],
            "c": 0,
        }
    )


def now_for(frame: pd.DataFrame, filling: bool = True) -> datetime:
    last = frame.ts.max().to_pydatetime()
    return last + (timedelta(minutes=7) if filling else BUCKET)


SMOOTHED = IqrRule(smooth_bounds=True)  # the seed DAG's bound smoothing (an option)
CASES = {
    # the seed's example: steady, then a spike in the latest complete bucket
    "spike": ([10, 12, 11, 13, 12, 50, 11], IqrRule(), BREACH, 50.0),
    "drop_on_spike_rule": ([10, 12, 11, 13, 12, 1, 11], IqrRule(direction="spike"), INSIDE, 1.0),
    "drop": ([10, 12, 11, 13, 12, 1, 11], IqrRule(direction="drop"), BREACH, 1.0),
    "inside": ([10, 12, 11, 13, 12, 12.5, 11], IqrRule(), INSIDE, 12.5),
    # the bucket still filling is never judged, however extreme
    "filling_bucket": ([10, 12, 11, 13, 12, 12, 999], IqrRule(), INSIDE, 12.0),
    "short_history": ([10, 12, 11, 50, 1], IqrRule(), NOT_JUDGED, 50.0),
    "null_in_window": ([10, 12, None, 13, 12, 50, 1], IqrRule(), NOT_JUDGED, 50.0),
    "constant_then_same": ([5, 5, 5, 5, 5, 5, 9], IqrRule(), INSIDE, 5.0),
    "constant_then_other": ([5, 5, 5, 5, 5, 5.001, 9], IqrRule(), BREACH, 5.001),
    "empty": ([], IqrRule(), NO_DATA, None),
    # the seed's smoothing: the band of the latest bucket is the mean of its raw band and
    # those of the 2 buckets before. Here its own raw band is [20, 20] (five 20s before
    # it), the one of 2 buckets before is [-60, 80] (0, 0, 20, 20, 20): smoothed band
    # [-6.7, 40], so 21 is inside; the literal rule says breach.
    "smoothed_inside": ([0, 0, 20, 20, 20, 20, 20, 21, 99], SMOOTHED, INSIDE, 21.0),
    "raw_breach": ([0, 0, 20, 20, 20, 20, 20, 21, 99], IqrRule(), BREACH, 21.0),
    # a NULL 2 buckets back leaves the latest bucket's own window short, but the raw band
    # of the bucket 2 before it is complete: smoothed, it is judged (min_periods=1)
    "smoothed_judged": ([10, 12, 11, 13, 12, 11, None, 12, 60, 1], SMOOTHED, BREACH, 60.0),
    "raw_not_judged": ([10, 12, 11, 13, 12, 11, None, 12, 60, 1], IqrRule(), NOT_JUDGED, 60.0),
    # the bucket still filling never enters the mean: 999 there changes nothing
    "smoothed_filling": ([10, 12, 11, 13, 12, 11, 12, 999], SMOOTHED, INSIDE, 12.0),
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_hand_cases(name, engines):
    load, run, _ = ENGINES[name]
    resource, schema = engines[name]
    table = f"{schema}.hand"
    with warm(resource):
        check_hand_cases(load, run, resource, table)


def check_hand_cases(load, run, resource, table) -> None:
    for case, (values, rule, status, value) in CASES.items():
        frame = hand_frame(values)
        load(resource, table, frame)
        now = now_for(frame) if len(frame) else NOW
        query = IqrQuery(table, "ts", (Metric("v", "ratio"),), BUCKET, rule)
        outcome = evaluate("v", run(resource, query, now, timedelta(days=1))["v"])
        assert outcome.status == status, case
        assert (outcome.headline.value if outcome.headline else None) == value, case
        assert outcome.passed == (status != BREACH), case


@pytest.mark.parametrize("name", list(ENGINES))
def test_a_nan_in_the_latest_bucket_is_reported_never_a_crash(name, engines):
    """A NaN stored in the engine (0/0 upstream), not a NULL: for either kind of metric
    and rule the latest bucket has no value, the check says so and passes; a NaN inside
    the history is left out of the band like a gap."""
    load, run, _ = ENGINES[name]
    resource, schema = engines[name]
    table = f"{schema}.nan"
    values = [10, 12, 11, 13, 12, 11, 12, 13, 12, 11]
    with warm(resource):
        load(resource, table, hand_frame([*values, 0, 1]))
        last = int((BASE + len(values) * BUCKET).timestamp())
        if name.startswith("clickhouse"):
            with resource.client("test") as client:
                client.command(
                    f"ALTER TABLE {table} UPDATE v = nan WHERE ts = toDateTime({last}, 'UTC')"
                    " SETTINGS mutations_sync = 2"
                )
        else:
            with resource.connect() as conn, conn.cursor() as cur:
                cur.execute(f"UPDATE {table} SET v = 'NaN' WHERE ts = to_timestamp({last})")
        now = BASE + (len(values) + 1) * BUCKET + timedelta(minutes=7)
        for kind in ("count", "ratio"):
            for rule in (IqrRule(), SeasonalRule(period=timedelta(hours=1), min_volume=0)):
                query = IqrQuery(table, "ts", (Metric("v", kind),), BUCKET, rule)
                points = run(resource, query, now, timedelta(hours=6))["v"]
                outcome = evaluate("v", points)
                assert outcome.status == NO_DATA and outcome.passed, (name, kind, rule, points[-3:])
                assert points[-1].value is None and not points[-1].breach


# --------------------------------------------------------------------------- a seasonal curve

SEASONAL_FROM = datetime(2024, 5, 6, tzinfo=UTC)
SEASONAL_DAYS = 3
SEASONAL_BUCKETS = 96 * SEASONAL_DAYS
# A daily curve in UTC hours like the generator's, (centre, width, height) Gaussian bumps
# on a floor, scaled to 10,000 and rounded to integers: no noise at all.
SEASONAL_CURVE = (0.08, ((5.5, 1.2, 0.35), (10.0, 1.6, 0.45), (14.0, 2.5, 0.45), (18.0, 1.9, 1.0)))
SEASONAL_SCALE = 10_000
# (day, first bucket, buckets, factor): at daytime buckets, away from the curve's turns
SEASONAL_ANOMALIES = (
    (0, "10:00", 1, 0.3),  # a one-bucket drop
    (1, "10:00", 2, 0.3),  # a half-hour drop
    (1, "16:00", 1, 4.0),  # a one-bucket spike
    (2, "15:00", 4, 4.0),  # an hour-long spike
)
# What the rule fires on, per setting (False: raw bounds, the default; True: smoothed).
# - The curve alone, every day: its turns. Near an extremum the 5 previous values are
#   nearly level while the curve bends away; on a parabola -c*t^2 (extremum at bucket 0)
#   bucket 4 has the band [-13c, ...] and the value -16c, whatever c and the width. Each
#   turn breach is 4-5 buckets after an extremum of the curve (smoothed: 4-10, the mean
#   of 3 bands lags). Times of day (UTC).
# - With the anomalies, besides the turns: the first bucket of each; the second bucket
#   of the half-hour drop and of the hour-long spike (one odd value among the previous 5
#   moves neither q25 nor q75), not their later ones (two odd values: q25 or q75 is one,
#   the band is wide); raw, the 2 buckets after the hour-long spike, below: their previous
#   5 buckets are mostly x4, so the band sits there (the anomaly's echo). Smoothed, the
#   mean with the wide bands of the spike's 3rd-4th buckets hides the echo.
SEASONAL_TURNS = {
    False: (("02:00", "02:15", "08:15", "13:30", "18:30"), range(4, 6)),
    True: (
        ("02:00", "02:15", "02:30", "02:45", "03:00", "03:15", "03:30")
        + ("08:15", "08:30", "13:45", "14:00", "18:30", "18:45", "19:00"),
        range(4, 11),
    ),
}
_ANOMALY_BREACHES = ((0, "10:00", "drop"), (1, "10:00", "drop"), (1, "10:15", "drop"))
_ANOMALY_BREACHES += ((1, "16:00", "spike"), (2, "15:00", "spike"), (2, "15:15", "spike"))
SEASONAL_BREACHES = {
    False: _ANOMALY_BREACHES + ((2, "16:00", "drop"), (2, "16:15", "drop")),
    True: _ANOMALY_BREACHES,
}


def seasonal_bucket(day: int, clock: str) -> int:
    hours, minutes = map(int, clock.split(":"))
    return 96 * day + 4 * hours + minutes // 15


def seasonal_frame() -> pd.DataFrame:
    """sid 1: the curve alone; sid 2: the same curve with SEASONAL_ANOMALIES."""
    hours = (np.arange(SEASONAL_BUCKETS) * 15 + 7.5) / 60 % 24  # bucket middles
    floor, bumps = SEASONAL_CURVE
    curve = np.full(SEASONAL_BUCKETS, floor)
    for centre, width, height in bumps:
        distance = np.abs((hours - centre + 12) % 24 - 12)
        curve += height * np.exp(-0.5 * (distance / width) ** 2)
    clean = np.round(SEASONAL_SCALE * curve)
    anomalous = clean.copy()
    for day, first, count, factor in SEASONAL_ANOMALIES:
        k = seasonal_bucket(day, first)
        anomalous[k : k + count] = np.round(clean[k : k + count] * factor)
    ts = pd.to_datetime([SEASONAL_FROM + k * BUCKET for k in range(SEASONAL_BUCKETS)], utc=True)
    return pd.concat(
        [
            pd.DataFrame({"sid": sid, "ts": ts, "v": v, "c": 0})
            for sid, v in ((1, clean), (2, anomalous))
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize("name", list(ENGINES))
def test_a_seasonal_curve_breaches_at_its_turns_and_at_the_injected_anomalies(name, engines):
    """Every complete bucket of 3 days of a noise-free daily curve, judged as the check
    judges it (only the data up to that bucket), with and without injected anomalies: the
    breaches are exactly the curve's turns (without anomalies) and, with them, those plus
    SEASONAL_BREACHES, on the side each anomaly moves. Both settings, both engines, the
    engine's bands equal to the pandas reference."""
    load, run, _ = ENGINES[name]
    resource, schema = engines[name]
    table = f"{schema}.seasonal"
    frame = seasonal_frame()
    end = SEASONAL_FROM + SEASONAL_BUCKETS * BUCKET  # every bucket complete
    history = timedelta(days=SEASONAL_DAYS)
    clean = frame[frame.sid == 1].v.to_numpy()
    rises = np.sign(np.diff(clean))
    extrema = [k for k in range(1, SEASONAL_BUCKETS - 1) if rises[k - 1] * rises[k] < 0]
    with warm(resource):
        load(resource, table, frame)
        for smooth in (False, True):
            rule = IqrRule(smooth_bounds=smooth)
            query = IqrQuery(table, "ts", ("v",), BUCKET, rule, partition_column="sid")
            points = run(resource, query, end, history)["v"]
            expected = reference(frame, "v", rule, BUCKET, end, history)
            assert_same(engine_frame(points), expected, f"{name} seasonal {rule}")
            by_part = {sid: [p for p in points if p.partition == sid] for sid in ("1", "2")}
            assert all(len(ps) == SEASONAL_BUCKETS for ps in by_part.values())
            # judged from the 6th bucket on (5 previous ones), every bucket after it
            assert all(p.judged == (k >= 5) for ps in by_part.values() for k, p in enumerate(ps))
            breached = {
                sid: [k for k, p in enumerate(ps) if p.breach] for sid, ps in by_part.items()
            }
            clocks, lags = SEASONAL_TURNS[smooth]
            turns = sorted(seasonal_bucket(d, c) for d in range(SEASONAL_DAYS) for c in clocks)
            assert breached["1"] == turns, (smooth, breached["1"])
            for k in turns:
                assert k - max(e for e in extrema if e < k) in lags, (smooth, k)
            sides = {seasonal_bucket(d, c): side for d, c, side in SEASONAL_BREACHES[smooth]}
            assert breached["2"] == sorted([*turns, *sides]), (smooth, breached["2"])
            for k, side in sides.items():
                point = by_part["2"][k]
                assert point.value < point.lower if side == "drop" else point.value > point.upper
            if smooth:
                continue
            # the band drawn is the band judged: the check's own run a minute after the
            # bucket closed, with the bucket the latest, at every breach and 12 more
            for k in sorted({*breached["2"], *range(5, SEASONAL_BUCKETS, 24)}):
                now = SEASONAL_FROM + (k + 1) * BUCKET + timedelta(minutes=1)
                judged = run(resource, query, now, timedelta(0))["v"]
                assert [p.bucket_start for p in judged] == [SEASONAL_FROM + k * BUCKET] * 2
                for p in judged:
                    drawn = by_part[p.partition][k]
                    assert (p.lower, p.upper) == pytest.approx((drawn.lower, drawn.upper))
                    assert p.breach == drawn.breach, (p.partition, k)


# --------------------------------------------------------------------------- the factory


def test_rule_and_spec_validation():
    with pytest.raises(IqrConfigError, match="IqrRule.n"):
        IqrRule(n=0)
    with pytest.raises(IqrConfigError, match="IqrRule.a"):
        IqrRule(a=-1)
    with pytest.raises(IqrConfigError, match="direction"):
        IqrRule(direction="up")
    with pytest.raises(IqrConfigError, match="smooth_bounds"):
        IqrRule(smooth_bounds="yes")
    assert IqrRule().describe() == "a=3, n=5, direction=both, raw bounds"
    assert SMOOTHED.describe() == "a=3, n=5, direction=both, smoothed bounds"
    assert (
        IqrRule(n=4, smooth_bounds=True).smoothing_buckets,
        SMOOTHED.smoothing_buckets,
        IqrRule().smoothing_buckets,
    ) == (2, 2, 0)
    with pytest.raises(IqrConfigError, match="table"):
        IqrQuery("marts.x; DROP TABLE y", "ts", ("v",), BUCKET)
    with pytest.raises(IqrConfigError, match="metrics"):
        IqrQuery("marts.x", "ts", ("v", "v"), BUCKET)
    with pytest.raises(IqrConfigError, match="bucket"):
        IqrQuery("marts.x", "ts", ("v",), timedelta(0))
    with pytest.raises(IqrConfigError, match="engine"):
        IqrCheckSpec(dg.AssetKey("x"), "duckdb", "t", "ts", ("v",), BUCKET)
    with pytest.raises(IqrConfigError, match="timezone-aware"):
        clickhouse_iqr_sql(IqrQuery("t", "ts", ("v",), BUCKET), datetime(2024, 1, 1), BUCKET)


def test_applied_checks_names_and_keys(mailbox_checks, activity_checks):
    from signalbox.domains.user_activity import schedules

    applied = [*activity_checks.activity_iqr_checks, *mailbox_checks.mailbox_iqr_checks]
    assert activity_checks.ACTIVITY_IQR.asset == dg.AssetKey(["marts", "activity_metrics_15min"])
    assert mailbox_checks.MAILBOX_IQR.asset == dg.AssetKey(["marts", "mailbox_emails_hourly"])
    keys = {(k.asset_key.to_user_string(), k.name) for k in iqr_check_keys(applied)}
    assert keys == {
        ("marts/activity_metrics_15min", f"iqr_{m}")
        for m in ("feed_active_users", "views", "likes", "ctr", "messenger_active_users")
        + ("messages_sent",)
    } | {("marts/mailbox_emails_hourly", "iqr_emails_received")}
    defs = dg.Definitions(
        asset_checks=applied,
        jobs=[schedules.activity_iqr_job],
        schedules=[schedules.activity_iqr_schedule],
        resources={"clickhouse": ClickHouseResource(), "warehouse": WarehouseResource()},
    )
    assert defs.resolve_job_def("activity_iqr_checks") is not None
    spec = activity_checks.activity_iqr_checks[0].check_specs_by_output_name
    assert all(not s.blocking for s in spec.values())


def activity_rows(days: int, now: datetime, drop_at_latest: float | None = None) -> list[list]:
    """`activity_metrics_15min` rows for `days` days up to the bucket filling at `now`."""
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    count = days * 96
    rng = np.random.default_rng(5)
    rows = []
    for i in range(count + 1):
        start = end - (count - i) * BUCKET
        hour = start.hour + start.minute / 60
        level = 1 + 0.5 * math.sin((hour - 6) / 24 * 2 * math.pi)
        users = int(10000 * level + rng.normal(0, 10))
        views = int(users * 6 + rng.normal(0, 30))
        likes = int(views * 0.2 + rng.normal(0, 10))
        senders = int(users * 0.1 + rng.normal(0, 3))
        sent = int(senders * 3 + rng.normal(0, 8))
        if drop_at_latest is not None and i == count - 1:
            views, likes = int(views * drop_at_latest), int(likes * drop_at_latest)
        rows.append(
            [
                start.date(),
                start,
                start + BUCKET,
                users,
                views,
                likes,
                likes / views if views else None,
                senders,
                sent,
            ]  # fmt: skip
        )
    return rows


ACTIVITY_COLUMNS = [
    "bucket_date", "bucket_start", "bucket_end", "feed_active_users", "views", "likes", "ctr",
    "messenger_active_users", "messages_sent",
]  # fmt: skip


def create_activity_table(resource: ClickHouseResource, rows: list[list]) -> None:
    with resource.client("test activity table") as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}_marts")
        client.command(f"DROP TABLE IF EXISTS {DATABASE}_marts.activity_metrics_15min")
        client.command(
            f"CREATE TABLE {DATABASE}_marts.activity_metrics_15min (bucket_date Date,"
            " bucket_start DateTime, bucket_end DateTime, feed_active_users UInt64,"
            " views UInt64, likes UInt64, ctr Nullable(Float64), messenger_active_users"
            " UInt64, messages_sent UInt64) ENGINE = MergeTree"
            " PARTITION BY bucket_date ORDER BY bucket_start"
        )
        client.insert(
            f"{DATABASE}_marts.activity_metrics_15min", rows, column_names=ACTIVITY_COLUMNS
        )


def run_checks(spec: IqrCheckSpec, resources: dict) -> dict[str, dg.AssetCheckEvaluation]:
    """Materialize a stand-in for the checked asset (the table exists) and its checks."""

    @dg.asset(key=spec.asset)
    def stand_in() -> None:
        return None

    result = dg.materialize([stand_in, *iqr_checks(spec)], resources=resources)
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_activity_checks_on_chdb_flag_the_dropped_bucket_only(activity_checks, clickhouse):
    now = datetime(2024, 3, 14, 10, 7, tzinfo=UTC)  # 09:45-10:00 is the bucket due by now
    # eight days: the default rule's band is the same bucket a week before
    create_activity_table(clickhouse, activity_rows(8, now, drop_at_latest=0.3))
    spec = replace(activity_checks.ACTIVITY_IQR, clock=lambda: now)
    evaluations = run_checks(spec, {"clickhouse": clickhouse})
    assert set(evaluations) == {f"iqr_{m}" for m in activity_checks.ACTIVITY_METRICS}
    failed = {name for name, e in evaluations.items() if not e.passed}
    assert failed == {"iqr_views", "iqr_likes"}
    views = metadata_values(evaluations["iqr_views"].metadata)
    assert views["status"] == BREACH and views["metric"] == "views"
    assert views["bucket_start"] == datetime(2024, 3, 14, 9, 45, tzinfo=UTC).timestamp()
    assert views["value"] < views["lower"] <= views["upper"]
    assert views["distance_outside"] == pytest.approx(views["lower"] - views["value"])
    assert -80 < views["deviation_pct"] < -60
    assert evaluations["iqr_views"].severity == dg.AssetCheckSeverity.WARN
    series = series_from_metadata(views["series"])[""]
    assert len(series) == 96 and series[-1].bucket_start.timestamp() == views["bucket_start"]
    assert series[-1].value == views["value"] and series[-1].lower == pytest.approx(views["lower"])
    ctr = metadata_values(evaluations["iqr_ctr"].metadata)
    assert ctr["status"] == INSIDE and 0.1 < ctr["value"] < 0.3

    create_activity_table(clickhouse, activity_rows(8, now))  # the same days without the drop
    assert all(e.passed for e in run_checks(spec, {"clickhouse": clickhouse}).values())


def test_mailbox_check_on_postgres_bands_each_mailbox(mailbox_checks, warehouse):
    now = datetime(2024, 3, 14, 10, 20, tzinfo=UTC)
    latest = datetime(2024, 3, 14, 9, tzinfo=UTC)
    rng = np.random.default_rng(3)
    rows = []
    for mailbox in (101, 102, 103):
        for h in range(72, -2, -1):  # up to the hour still filling
            hour = latest - timedelta(hours=h)
            count = int(rng.poisson(4 + 3 * math.sin(hour.hour / 24 * 2 * math.pi)))
            if mailbox == 102 and hour == latest:
                count = 60  # a burst after a market event
            if mailbox == 103 and h > 10:
                continue  # a new mailbox: too little history to judge
            rows.append((mailbox, hour, count))
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA IF NOT EXISTS marts; DROP TABLE IF EXISTS marts.mailbox_emails_hourly"
        )
        cur.execute(
            "CREATE TABLE marts.mailbox_emails_hourly (mailbox_id bigint, mailbox_name text,"
            " hour_start timestamptz, emails_received bigint, PRIMARY KEY (mailbox_id, hour_start))"
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO marts.mailbox_emails_hourly (mailbox_id, hour_start, emails_received)"
            " VALUES %s",
            rows,
        )
    spec = replace(mailbox_checks.MAILBOX_IQR, clock=lambda: now)
    evaluation = run_checks(spec, {"warehouse": warehouse})["iqr_emails_received"]
    meta = metadata_values(evaluation.metadata)
    assert not evaluation.passed and meta["status"] == BREACH
    assert meta["partition_column"] == "mailbox_id" and meta["partition"] == "102"
    assert meta["judged_partitions"] == 2 and meta["breach_count"] == 1
    assert [b["partition"] for b in meta["breaches"]] == ["102"]
    assert meta["value"] == 60 and meta["bucket_start"] == latest.timestamp()
    assert len(series_from_metadata(meta["series"])["102"]) == 24


GENERATED = "test_iqr_generated"
# The demo's anomalies for a demo started at DEMO_START (see demo_anomalies): with
# D = TODAY, the feed loses 60% of its users on D-2 14:00-15:00 UTC, and from D-1's last
# bucket (the one judged right after the demo) views drop to 30% while messages go x4.
# A week before D-2 is landed as history (the seasonal rule's same bucket a week ago).
TODAY = date(2026, 11, 19)
DEMO_START = datetime(TODAY.year, TODAY.month, TODAY.day, 0, 7, tzinfo=UTC)
GENERATED_DAYS = [TODAY - timedelta(days=k) for k in range(9, 0, -1)]
JUDGED_DAYS = GENERATED_DAYS[-2:]  # every complete bucket of these is judged
JUDGED_FROM = datetime(JUDGED_DAYS[0].year, JUDGED_DAYS[0].month, JUDGED_DAYS[0].day, tzinfo=UTC)
JUDGED_BUCKETS = 96 * len(JUDGED_DAYS)
# the metrics each kind of injected anomaly moves (a views drop moves CTR = likes/views)
EFFECTS = {
    "feed_users": ("feed_active_users", "views", "likes", "ctr"),
    "views": ("views", "ctr"),
    "messages": ("messages_sent", "messenger_active_users"),
}


@pytest.fixture(scope="module")
def generated(signalbox_home: Path) -> Iterator[tuple[ClickHouseResource, list[Anomaly]]]:
    """The whole path on chDB, once per module: the demo's generated world (its default
    volume: 200,000 users, ~300,000 feed events and ~30,000 messages a day) with the demo
    anomalies, landed for nine days, then the dbt model `activity_metrics_15min`."""
    from signalbox.simulators.user_activity import GeneratedUserActions, demo_anomalies

    world = GeneratedUserActions(anomalies=demo_anomalies(DEMO_START))  # else the defaults
    assert world.feed_events_per_day == 300_000
    anomalies = parse_anomalies(world.anomalies, TODAY)
    assert {a.start.date() for a in anomalies} <= set(JUDGED_DAYS)
    resource = ClickHouseResource(database=GENERATED, lock_timeout_seconds=120)
    landed_at = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC)
    for d in GENERATED_DAYS:
        world.land(resource, d, now=landed_at)
    project = Path(__file__).resolve().parents[2] / "dbt_project" / "activity"
    window = f"{{min_date: '{GENERATED_DAYS[0]}', max_date: '{GENERATED_DAYS[-1]}'}}"
    with resource.dbt_lock("test: dbt run") as env:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "dbt"), "run", "-s", "+activity_metrics_15min"]
            + ["--vars", window, "--project-dir", str(project), "--profiles-dir", str(project)]
            + ["--target-path", str(signalbox_home / "dbt-target-iqr")]
            + ["--log-path", str(signalbox_home / "dbt-logs-iqr")],
            cwd=project,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    try:
        yield resource, anomalies
    finally:
        with resource.client("test cleanup") as client:
            for suffix in ("", "_staging", "_intermediate", "_marts"):
                client.command(f"DROP DATABASE IF EXISTS `{GENERATED}{suffix}`")


def test_the_seed_rule_on_the_dbt_model_built_from_generated_actions(activity_checks, generated):
    """The seed's rule on the activity checks, a minute after the demo's last anomaly
    bucket closed: messages x4 and views at 30% in D-1's last bucket."""
    resource, anomalies = generated
    last = max(anomalies, key=lambda a: a.start)
    spec = replace(
        activity_checks.ACTIVITY_IQR,
        rule=IqrRule(),
        lag=timedelta(0),
        clock=lambda: last.start + BUCKET + timedelta(minutes=1),
    )
    evaluations = run_checks(spec, {"clickhouse": resource})
    sent = metadata_values(evaluations["iqr_messages_sent"].metadata)
    assert not evaluations["iqr_messages_sent"].passed and sent["status"] == BREACH
    assert sent["bucket_start"] == last.start.timestamp()
    assert sent["value"] > sent["upper"] and sent["deviation_pct"] > 100
    assert sent["rule"] == "a=3, n=5, direction=both, raw bounds"
    assert sent["lower"] == pytest.approx(sent["q25"] - 3 * (sent["q75"] - sent["q25"]))
    series = series_from_metadata(sent["series"])[""]
    assert len(series) == 96 and series[-1].upper == pytest.approx(sent["upper"])
    ctr = metadata_values(evaluations["iqr_ctr"].metadata)  # likes / views x3.3
    assert ctr["status"] == BREACH and ctr["value"] > ctr["upper"]
    # views at 30% are not outside their band: at night the previous 5 buckets fall
    # steeply, their IQR is wide and 30% stays inside
    views = metadata_values(evaluations["iqr_views"].metadata)
    assert views["status"] == INSIDE and views["deviation_pct"] < -60


def test_the_default_rule_alerts_on_the_demos_drop_of_views_itself(activity_checks, generated):
    """The activity checks as they ship (seasonal rule, 5 minutes' lag), run when the demo
    has landed its data: the bucket judged is the one the demo's views drop (x0.3) and
    messages spike (x4) fill, and both breach on their own metric; the feed outage two
    days before breaches the feed's users and views in its first bucket."""
    resource, anomalies = generated
    live = [a for a in anomalies if a.metric in ("views", "messages")]
    spec = replace(activity_checks.ACTIVITY_IQR, clock=lambda: DEMO_START)
    evaluations = run_checks(spec, {"clickhouse": resource})
    views = metadata_values(evaluations["iqr_views"].metadata)
    assert views["rule"].startswith("seasonal")
    assert views["bucket_start"] == live[0].start.timestamp()
    assert views["status"] == BREACH and views["value"] < views["lower"]
    assert views["deviation_pct"] < -60
    sent = metadata_values(evaluations["iqr_messages_sent"].metadata)
    assert sent["status"] == BREACH and sent["value"] > sent["upper"]
    (outage,) = [a for a in anomalies if a.metric == "feed_users"]
    spec = replace(spec, clock=lambda: outage.start + BUCKET + spec.lag)
    evaluations = run_checks(spec, {"clickhouse": resource})
    for metric in ("feed_active_users", "views"):
        reading = metadata_values(evaluations[f"iqr_{metric}"].metadata)
        assert reading["bucket_start"] == outage.start.timestamp()
        assert reading["status"] == BREACH and reading["value"] < reading["lower"], metric


_verdicts: dict[IqrRule, dict[str, list[tuple[datetime, bool]]]] = {}


def judge_every_bucket(
    spec: IqrCheckSpec, resource, rule: IqrRule
) -> dict[str, list[tuple[datetime, bool]]]:
    """metric -> (bucket, breached) for every complete bucket of the judged days.

    Each bucket's row carries the band it is judged by when it is the latest complete
    bucket (its quantiles use the buckets before it only; smoothed, the raw bands of
    n//2 buckets before it and its own), so one query over the two days gives the verdict
    of every bucket. Checked here against the schedule's own runs (a minute after a bucket
    closed, that bucket the latest) at breaches of the views and messages checks and a
    spread of quiet buckets, all six metrics each: the band drawn is the band judged. (A
    run costs 0.1-0.3 s on chDB: 192 per rule would not fit this module's budget.)"""
    if rule in _verdicts:
        return _verdicts[rule]
    spec = replace(spec, rule=rule, lag=timedelta(0))
    end = JUDGED_FROM + JUDGED_BUCKETS * BUCKET
    days = timedelta(days=len(JUDGED_DAYS))
    series = run_iqr_query(replace(spec, history=days), resource, end + timedelta(minutes=1))
    verdicts = {}
    for metric, points in series.items():
        assert [p.bucket_start for p in points] == [
            JUDGED_FROM + k * BUCKET for k in range(JUDGED_BUCKETS)
        ]
        assert all(p.judged for p in points), metric  # every bucket has a band
        verdicts[metric] = [(p.bucket_start, p.breach) for p in points]
    breaches = sorted({b for m in ("views", "messages_sent") for b, hit in verdicts[m] if hit})
    quiet = [JUDGED_FROM + k * BUCKET for k in range(0, JUDGED_BUCKETS, 47)]
    latest_only = replace(spec, history=timedelta(0))
    with warm(resource):
        for bucket in sorted({*breaches[:: max(1, len(breaches) // 4)], *quiet}):
            now = bucket + BUCKET + timedelta(minutes=1)
            run = run_iqr_query(latest_only, resource, now)
            for metric, points in run.items():
                (judged,) = points
                drawn = series[metric][(bucket - JUDGED_FROM) // BUCKET]
                assert judged.bucket_start == drawn.bucket_start == bucket
                assert (judged.lower, judged.upper) == pytest.approx((drawn.lower, drawn.upper))
                assert judged.breach == drawn.breach, (metric, bucket)
    _verdicts[rule] = verdicts
    return verdicts


# Of the metrics each demo anomaly moves (EFFECTS), the ones that breach at its first
# bucket, exactly, raw and smoothed. A feed outage (users x0.4) moves users, views and
# likes, and they breach; CTR, in EFFECTS only to excuse its breaches in the window,
# barely moves when whole users leave. The views drop to 30% at 23:45 is not outside the
# views band: the night decline makes the previous 5 buckets' IQR wide (see the test
# above); it shows in CTR = likes / views (x3.3) only. Other metrics may breach in the
# same bucket by chance (raw: messenger users at 14:00): the false-alarm test counts them.
FIRST_BUCKET_BREACHES = {
    "feed_users": {"feed_active_users", "views", "likes"},
    "views": {"ctr"},
    "messages": {"messages_sent", "messenger_active_users"},
}


@pytest.mark.parametrize("smooth", [False, True], ids=["raw", "smoothed"])
def test_every_bucket_of_generated_days_catches_the_injected_anomalies(
    activity_checks, generated, smooth
):
    """Every injected anomaly breaches, in its first bucket judged as the check judges
    it, the bands of exactly the metrics FIRST_BUCKET_BREACHES lists for it."""
    resource, anomalies = generated
    verdicts = judge_every_bucket(
        activity_checks.ACTIVITY_IQR, resource, IqrRule(smooth_bounds=smooth)
    )
    caught = {
        str(a): {m for m in EFFECTS[a.metric] for b, hit in verdicts[m] if hit and b == a.start}
        for a in anomalies
    }
    assert caught == {str(a): FIRST_BUCKET_BREACHES[a.metric] for a in anomalies}


# After an anomaly ends, the band is still judged from its buckets for a while: a drop
# of 4 buckets leaves 4 low values among the 5 previous ones, so q25 and q75 are both low
# and the return to normal reads as a spike for the next 1-2 buckets (raw; the smoothed
# band averages those raw bands with the ones before it). That is the rule working as
# written, the anomaly's own echo, not noise: 2 buckets after an end count as inside.
AFTER_ANOMALY = 2 * BUCKET
# The bound on breaches outside the anomalies, per metric, as a share of its judged
# buckets: the rule's measured property on these days (raw 7.7-10.9 a day, 8-11%;
# smoothed 7.8-16.6, 8-17%) with some room, so a much noisier check fails here.
FALSE_ALARM_BOUND = {False: 0.15, True: 0.20}


def explained(metric: str, bucket: datetime, anomalies) -> bool:
    return any(
        metric in EFFECTS[a.metric] and a.start <= bucket < a.end + AFTER_ANOMALY for a in anomalies
    )


@pytest.mark.parametrize("smooth", [False, True], ids=["raw", "smoothed"])
def test_false_alarms_on_generated_days_stay_at_the_rules_known_rate(
    activity_checks, generated, smooth, capsys
):
    """Outside the injected anomalies the seed's rule still breaches, about 8% of buckets
    on any noise (see signalbox/checks/iqr.py): bounded here per metric, and printed with
    what the alert sensor would send for them (anomalies included): an alert when a run of
    consecutive breaches starts and a recovery when it ends, one message per bucket for
    all the metrics concerned."""
    resource, anomalies = generated
    verdicts = judge_every_bucket(
        activity_checks.ACTIVITY_IQR, resource, IqrRule(smooth_bounds=smooth)
    )
    rates, starts, ends = {}, {}, {}
    for metric, marks in verdicts.items():
        outside = [hit for b, hit in marks if not explained(metric, b, anomalies)]
        rates[metric] = sum(outside) / len(outside)
        pairs = list(itertools.pairwise([(None, False), *marks]))
        starts[metric] = {b for (_, before), (b, hit) in pairs if hit and not before}
        ends[metric] = {b for (_, before), (b, hit) in pairs if before and not hit}
    days = len(JUDGED_DAYS)
    with capsys.disabled():
        print(f"\nsmooth_bounds={smooth}: breaches outside the anomalies a day (share), episodes")
        for metric, rate in rates.items():
            print(f"  {metric:24} {rate * 96:5.1f} ({rate:5.1%}) {len(starts[metric]) / days:5.1f}")
        alerts, recoveries = (len(set().union(*x.values())) / days for x in (starts, ends))
        print(f"  messages a day: {alerts:.1f} alerts, {recoveries:.1f} recoveries")
    assert all(rate <= FALSE_ALARM_BOUND[smooth] for rate in rates.values()), rates
