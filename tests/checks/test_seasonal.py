"""The seasonal rule in SQL, on ClickHouse and PostgreSQL, against a pandas computation
written from its definition (signalbox/checks/rules.py), on four weeks of 15-minute
series with a daily and weekly cycle, noise, gaps, NaN, a stop and a spike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from test_iqr import assert_same, engine_frame, load_clickhouse, load_postgres, warm

from signalbox.checks.iqr import Metric, evaluate, parse_rows
from signalbox.checks.rules import IqrQuery, SeasonalRule
from signalbox.checks.sql import clickhouse_iqr_sql, postgres_iqr_sql
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.warehouse import WarehouseResource

BUCKET = timedelta(minutes=15)
START = datetime(2024, 4, 1, tzinfo=UTC)  # a Monday
DAYS = 28
NOW = START + timedelta(days=DAYS, minutes=3)  # the last bucket of day 27 is due
DATABASE = "test_seasonal"
RULES = {
    "default": SeasonalRule(),
    "daily k=7, quartile floor, no guard": SeasonalRule(
        period=timedelta(days=1), k=7, min_seasons=3, relative_floor=0.05, min_volume=0.0
    ),
    "weekly k=2, no level, drops only": SeasonalRule(k=2, level_buckets=0, direction="drop"),
    "tight clamp, spikes only": SeasonalRule(level_clamp=(0.9, 1.1), a=2.0, direction="spike"),
}


def make_series(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = DAYS * 96
    index = np.arange(n)
    hours = (index % 96) / 4
    weekend = ((index // 96) % 7 >= 5).astype(float)
    level = [3.0, 40.0, 800.0][seed % 3]
    mean = level * (1.2 + np.sin((hours - 8) / 24 * 2 * np.pi)) * (1 + 0.3 * weekend)
    values = rng.poisson(mean).astype(float)
    values[n - 5 : n - 2] = 0  # a stop near the end
    values[n - 40] *= 4  # a spike
    frame = pd.DataFrame(
        {"sid": seed, "ts": [START + int(i) * BUCKET for i in index], "v": values, "c": 0}
    )
    frame.loc[rng.random(n) < 0.02, "v"] = np.nan  # NaN and NULL values
    frame = frame[rng.random(n) >= 0.03]  # missing rows
    frame["ts"] = pd.to_datetime(frame.ts, utc=True)
    return frame.reset_index(drop=True)


def seasonal_reference(frame, rule: SeasonalRule, kind: str, now, history) -> pd.DataFrame:
    """Every bucket of the last `history` up to the one due by `now`, from the rule's
    definition: the median (and quartiles) of the same bucket k periods back, scaled by
    the clamped level ratio of the previous `level_buckets` buckets, the band expected
    plus or minus a x the larger floor, a count within min_volume of expected not judged."""
    step = pd.Timedelta(BUCKET)
    latest = pd.Timestamp(now).floor(step) - step
    history_s = max(int(history.total_seconds()), 1)
    per = int(rule.period_seconds // step.total_seconds())
    back = math.ceil(history_s / step.total_seconds()) + rule.k * per + rule.level_buckets
    frame = frame[(frame.ts >= latest - back * step) & (frame.ts <= latest)]
    rows = []
    for sid, part in frame.groupby("sid"):
        grid = pd.date_range(part.ts.min(), latest, freq=step)
        values = part.set_index("ts").v.reindex(grid).astype(float)
        if kind == "count":  # a bucket without a row counts 0; a row's NaN stays NaN
            values[~grid.isin(part.ts)] = 0.0
        v = values.to_numpy()
        n = len(v)
        g = np.full((n, 3), np.nan)
        counts = np.zeros(n, int)
        for t in range(n):
            seasons = [v[t - j * per] for j in range(1, rule.k + 1) if t - j * per >= 0]
            seasons = [x for x in seasons if not np.isnan(x)]
            counts[t] = len(seasons)
            if len(seasons) >= rule.min_seasons:
                g[t] = np.quantile(seasons, [0.25, 0.5, 0.75])
        low, high = rule.level_clamp
        for t in range(n):
            lv = lm = 0.0
            for b in range(max(0, t - rule.level_buckets), t):
                if not np.isnan(v[b]) and not np.isnan(g[b, 1]):
                    lv, lm = lv + v[b], lm + g[b, 1]
            r = min(max(lv / lm, low), high) if lm > 0 else 1.0
            e = r * g[t, 1]
            spread = rule.relative_floor * abs(e)
            judge = True
            if kind == "count":
                spread = max(spread, rule.count_noise * math.sqrt(max(e, 0.0)))
                judge = abs(v[t] - e) >= rule.min_volume
            lower, upper = e - rule.a * spread, e + rule.a * spread
            value = v[t]
            judged = not np.isnan(lower) and not np.isnan(value) and judge
            below = max(lower - value, 0.0) if judged else np.nan
            above = max(value - upper, 0.0) if judged else np.nan
            distance = {
                "both": below if judged and value < lower else above,
                "drop": below,
                "spike": above,
            }[rule.direction]
            previous = v[t - 1] if t else np.nan
            deviation = (
                (value - previous) / abs(previous) * 100
                if not np.isnan(previous) and previous != 0
                else np.nan
            )
            rows.append(
                {
                    "part": str(sid),
                    "ts": grid[t],
                    "value": value,
                    "q25": r * g[t, 0],
                    "q75": r * g[t, 2],
                    "lower": lower,
                    "upper": upper,
                    "distance": distance,
                    "deviation_pct": deviation,
                    "window_count": counts[t],
                    "breach": bool(judged and distance > 0),
                    "is_latest": grid[t] == latest,
                }
            )
    result = pd.DataFrame(rows)
    keep = result.ts > latest - pd.Timedelta(seconds=history_s)
    return result[keep].sort_values(["part", "ts"], ignore_index=True)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return pd.concat([make_series(seed) for seed in range(6)], ignore_index=True)


@pytest.fixture(scope="module")
def clickhouse(clickhouse_database) -> Iterator[ClickHouseResource]:
    with clickhouse_database(DATABASE) as resource:
        yield resource


@pytest.fixture(scope="module")
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as resource:
        yield resource


def run(engine: str, resource, query: IqrQuery, history: timedelta) -> dict:
    if engine == "clickhouse":
        with resource.client("test seasonal") as client:
            result = client.query(clickhouse_iqr_sql(query, NOW, history))
            return parse_rows(query.names, result.column_names, result.result_rows)
    with resource.connect() as conn, conn.cursor() as cur:
        cur.execute(postgres_iqr_sql(query, NOW, history))
        return parse_rows(query.names, [d.name for d in cur.description], cur.fetchall())


@pytest.mark.parametrize("engine", ["clickhouse", "postgres"])
def test_seasonal_bands_equal_the_pandas_reference_on_both_engines(
    engine, series, clickhouse, warehouse
):
    resource = clickhouse if engine == "clickhouse" else warehouse
    table = f"{DATABASE}.seasonal" if engine == "clickhouse" else "test.seasonal"
    load = load_clickhouse if engine == "clickhouse" else load_postgres
    history = timedelta(days=3)
    metrics = (Metric("v", "count"),)
    with warm(resource):
        load(resource, table, series)
        for name, rule in RULES.items():
            for kind in ("count", "ratio"):
                metrics = (Metric("v", kind),)
                query = IqrQuery(table, "ts", metrics, BUCKET, rule, partition_column="sid")
                got = engine_frame(run(engine, resource, query, history)["v"])
                expected = seasonal_reference(series, rule, kind, NOW, history)
                assert len(got) == 6 * 3 * 96, name
                assert_same(got, expected, f"{engine} {name} {kind}")


def test_the_series_exercise_what_the_rule_decides(series):
    """Breaches both ways, buckets under the volume guard, short seasons, NaN values."""
    rule = RULES["default"]
    counts = seasonal_reference(series, rule, "count", NOW, timedelta(days=3))
    judged = counts.distance.notna()
    assert counts.breach.sum() >= 5 and (counts.value < counts.lower).sum() >= 3
    assert (counts.lower.notna() & ~judged).sum() > 100  # within min_volume of expected
    ratios = seasonal_reference(series, rule, "ratio", NOW, timedelta(days=3))
    assert ratios.value.isna().sum() > 20  # gaps and NaN are no data for a ratio
    daily = seasonal_reference(series, RULES["daily k=7, quartile floor, no guard"], "count",
                               START + timedelta(days=2), timedelta(days=2))  # fmt: skip
    assert daily.lower.isna().any()  # too few seasons at the start


def test_a_stopped_source_breaches_until_data_flows_again(clickhouse):
    """Counts stop (no rows at all) an hour before now: every bucket since is judged as 0
    and breaches, the stop does not widen its own band; the ratio has no data."""
    rng = np.random.default_rng(3)
    n = 15 * 96
    ts = [START + i * BUCKET for i in range(n)]
    hours = np.array([(t.hour + t.minute / 60) for t in ts])
    views = rng.poisson(500 * (1.2 + np.sin((hours - 8) / 24 * 2 * np.pi))).astype(float)
    frame = pd.DataFrame({"sid": 1, "ts": ts, "v": views, "c": 0})
    stopped = START + timedelta(days=15) - timedelta(hours=1)
    frame = frame[frame.ts < stopped]
    frame["ts"] = pd.to_datetime(frame.ts, utc=True)
    table = f"{DATABASE}.stopped"
    now = START + timedelta(days=15, minutes=6)
    with warm(clickhouse):
        load_clickhouse(clickhouse, table, frame)
        for kind, expected in (("count", "breach"), ("ratio", "no_data")):
            query = IqrQuery(table, "ts", (Metric("v", kind),), BUCKET, SeasonalRule())
            with clickhouse.client("test") as client:
                result = client.query(clickhouse_iqr_sql(query, now, timedelta(hours=2)))
                points = parse_rows(("v",), result.column_names, result.result_rows)["v"]
            outcome = evaluate("v", points)
            assert outcome.status == expected, (kind, outcome)
            after = [p for p in points if p.bucket_start >= stopped]
            assert len(after) == 4
            if kind == "count":
                assert all(p.value == 0 and p.breach for p in after)
            else:
                assert all(p.value is None and not p.breach for p in after)
