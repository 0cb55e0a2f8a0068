"""The bands in SQL: one statement per check run, the same stages on ClickHouse and
PostgreSQL, returning only the banded buckets of the last `history` (never raw rows).

1. dense: every bucket from each partition's first row in the lookback up to the latest
   complete bucket at `now - lag`, whether or not the table has a row for it: a count's
   bucket without a row is 0, a ratio's is NULL; a row's NULL or NaN is NULL for both.
2. framed (per engine): the window statistics each metric's rule needs. ClickHouse:
   `quantileExactInclusive` over RANGE frames; PostgreSQL: `array_agg` over the frame and
   `percentile_cont` in a LATERAL subquery (an ordered-set aggregate is no window
   function). Both interpolate linearly, as numpy and pandas do.
3. banded (shared SQL): the seed's rule gates its quartiles on a full window and may
   smooth its bounds; the seasonal rule scales its quartiles by the level ratio.
4. judged (shared SQL): distance outside the band, breach, change against the bucket
   before, and whether the bucket is judged at all.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from signalbox.checks.rules import IqrConfigError, IqrQuery, IqrRule, Metric, Rule, SeasonalRule

COLUMNS = ("value", "q25", "q75", "lower", "upper", "distance", "deviation_pct")
COLUMNS += ("window_count", "breach")


def result_columns(metrics) -> list[str]:
    """The columns both dialects return, in order."""
    columns = ["part", "bucket_ts", "is_latest"]
    for i in range(len(metrics)):
        columns += [f"{name}_{i}" for name in COLUMNS]
    return columns


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise IqrConfigError(f"`now` must be timezone-aware, got {moment!r}")
    return math.floor(moment.timestamp())


def latest_bucket(now: datetime, lag: timedelta, bucket_seconds: int) -> int:
    """Start (epoch seconds) of the latest bucket complete at `now - lag`: the one whose
    data should be there by now, row or no row."""
    if lag < timedelta(0):
        raise IqrConfigError(f"lag must be >= 0, got {lag}")
    cutoff = _epoch(now) - int(lag.total_seconds())
    return (cutoff // bucket_seconds) * bucket_seconds - bucket_seconds


def _history_seconds(history: timedelta) -> int:
    """Buckets with start > latest - history are returned; at least 1 s, so history 0
    still returns the latest bucket itself."""
    seconds = int(history.total_seconds())
    if seconds < 0:
        raise IqrConfigError(f"history must be >= 0, got {history}")
    return max(seconds, 1)


class _Plan:
    """The numbers both dialects share for one query."""

    def __init__(self, query: IqrQuery, now: datetime, history: timedelta, lag: timedelta):
        self.query = query
        self.bs = query.bucket_seconds
        self.latest = latest_bucket(now, lag, self.bs)
        self.history_s = _history_seconds(history)
        rules = [query.rule_of(m) for m in query.metrics]
        back = max(rule.lookback_buckets(self.bs) for rule in rules)
        self.start = self.latest - (math.ceil(self.history_s / self.bs) + back) * self.bs
        self.count = (self.latest - self.start) // self.bs + 1

    def metrics(self) -> list[tuple[int, Metric, Rule]]:
        return [(i, m, self.query.rule_of(m)) for i, m in enumerate(self.query.metrics)]


# --------------------------------------------------------------------------- per engine


def clickhouse_iqr_sql(
    query: IqrQuery, now: datetime, history: timedelta, lag: timedelta = timedelta(0)
) -> str:
    """ClickHouse SQL: every bucket of the last `history` up to the latest complete bucket
    (`is_latest` = 1), with its band; columns as `result_columns`."""
    plan = _Plan(query, now, history, lag)

    def q(name: str) -> str:
        return ".".join(f"`{p}`" for p in name.split("."))

    t = q(query.time_column)
    part = f"toString({q(query.partition_column)})" if query.partition_column else "''"
    raws = ", ".join(
        f"if(isNaN(toFloat64({q(m.name)})), NULL, toFloat64({q(m.name)})) AS raw_{i}"
        for i, m, _ in plan.metrics()
    )
    dense = (
        f"WITH src AS (SELECT {part} AS part, toInt64(toUnixTimestamp({t})) AS bucket_ts,"
        f" toUInt8(1) AS present, {raws}"
        f" FROM {q(query.table)} WHERE {t} >= toDateTime({max(plan.start, 0)})"
        f" AND {t} <= toDateTime({plan.latest})),\n"
        "parts AS (SELECT part, min(bucket_ts) AS first_ts FROM src GROUP BY part),\n"
        f"grid AS (SELECT parts.part AS part, toInt64({plan.start} + number * {plan.bs})"
        f" AS bucket_ts FROM parts CROSS JOIN numbers({plan.count}) AS steps"
        " WHERE bucket_ts >= parts.first_ts),\n"
        f"dense AS (SELECT grid.part AS part, grid.bucket_ts AS bucket_ts, {_fill(plan, 'src')}"
        " FROM grid LEFT JOIN src ON src.part = grid.part AND src.bucket_ts = grid.bucket_ts)\n"
    )
    columns, windows = ["part", "bucket_ts"], {"wp": _frame(plan.bs, plan.bs, plan.bs)}
    for i, _, rule in plan.metrics():
        v = f"v_{i}"
        columns += [v, f"any({v}) OVER wp AS prev_{i}"]
        if isinstance(rule, SeasonalRule):
            name = f"ws{i}"
            windows[name] = _seasonal_frame(rule)
            columns.append(f"count({v}) OVER {name} AS n_{i}")
            columns += [
                f"quantileExactInclusive({p})({v}) OVER {name} AS s{label}_{i}"
                for p, label in ((0.25, "25"), (0.5, "50"), (0.75, "75"))
            ]
        else:
            name = f"wr{i}"
            windows[name] = _frame(plan.bs, rule.n * plan.bs, plan.bs)
            columns.append(f"count({v}) OVER {name} AS n_{i}")
            columns += [
                f"quantileExactInclusive({p})({v}) OVER {name} AS r{label}_{i}"
                for p, label in ((0.25, "25"), (0.75, "75"))
            ]
    window = ",\n  ".join(f"{name} AS ({spec})" for name, spec in windows.items())
    framed = f"SELECT {', '.join(columns)}\nFROM dense\nWINDOW {window}"
    return dense + _banded_and_judged(plan, framed)


def postgres_iqr_sql(
    query: IqrQuery, now: datetime, history: timedelta, lag: timedelta = timedelta(0)
) -> str:
    """PostgreSQL SQL (time column `timestamptz`): as `clickhouse_iqr_sql`."""
    plan = _Plan(query, now, history, lag)

    def q(name: str) -> str:
        return ".".join(f'"{p}"' for p in name.split("."))

    t = q(query.time_column)
    part = f"({q(query.partition_column)})::text" if query.partition_column else "''::text"
    raws = ", ".join(
        f"NULLIF(({q(m.name)})::float8, 'NaN'::float8) AS raw_{i}" for i, m, _ in plan.metrics()
    )
    dense = (
        f"WITH src AS (SELECT {part} AS part, extract(epoch FROM {t})::bigint AS bucket_ts,"
        f" 1 AS present, {raws} FROM {q(query.table)} WHERE {t} >= to_timestamp({plan.start})"
        f" AND {t} <= to_timestamp({plan.latest})),\n"
        "parts AS (SELECT part, min(bucket_ts) AS first_ts FROM src GROUP BY part),\n"
        "grid AS (SELECT parts.part, g.bucket_ts FROM parts"
        f" CROSS JOIN generate_series({plan.start}::bigint, {plan.latest}::bigint,"
        f" {plan.bs}::bigint) AS g(bucket_ts) WHERE g.bucket_ts >= parts.first_ts),\n"
        f"dense AS (SELECT grid.part, grid.bucket_ts, {_fill(plan, 'src')}"
        " FROM grid LEFT JOIN src ON src.part = grid.part AND src.bucket_ts = grid.bucket_ts),\n"
    )
    columns, windows, laterals = (
        ["part", "bucket_ts"],
        {"wp": _frame(plan.bs, plan.bs, plan.bs)},
        [],
    )
    outer = ["w.part", "w.bucket_ts"]
    for i, _, rule in plan.metrics():
        v = f"v_{i}"
        columns += [v, f"max({v}) OVER wp AS prev_{i}"]
        outer += [f"w.{v}", f"w.prev_{i}", f"w.n_{i}"]
        if isinstance(rule, SeasonalRule):
            name, quantiles = f"ws{i}", ((0.25, "s25"), (0.5, "s50"), (0.75, "s75"))
            windows[name] = _seasonal_frame(rule)
        else:
            name, quantiles = f"wr{i}", ((0.25, "r25"), (0.75, "r75"))
            windows[name] = _frame(plan.bs, rule.n * plan.bs, plan.bs)
        columns += [f"count({v}) OVER {name} AS n_{i}", f"array_agg({v}) OVER {name} AS a_{i}"]
        picks = ", ".join(
            f"percentile_cont({p}) WITHIN GROUP (ORDER BY x) AS {label}" for p, label in quantiles
        )
        laterals.append(f"CROSS JOIN LATERAL (SELECT {picks} FROM unnest(w.a_{i}) AS x) AS l_{i}")
        outer += [f"l_{i}.{label} AS {label}_{i}" for _, label in quantiles]
    window = ",\n  ".join(f"{name} AS ({spec})" for name, spec in windows.items())
    framed = f"windowed AS (SELECT {', '.join(columns)}\nFROM dense\nWINDOW {window})\n"
    stats = f"SELECT {', '.join(outer)}\nFROM windowed AS w\n" + "\n".join(laterals)
    return dense + framed + _banded_and_judged(plan, stats)


def iqr_sql(
    engine: str, query: IqrQuery, now: datetime, history: timedelta, lag: timedelta = timedelta(0)
) -> str:
    if engine == "clickhouse":
        return clickhouse_iqr_sql(query, now, history, lag)
    if engine == "postgres":
        return postgres_iqr_sql(query, now, history, lag)
    raise IqrConfigError(f"engine must be clickhouse or postgres, got {engine!r}")


def _fill(plan: _Plan, source: str) -> str:
    """A count's bucket without a row is 0; a ratio's is NULL. A row's NULL (or NaN)
    stays NULL for both: a value the source could not give is not a zero. (`present` is
    1 on a row; the unmatched side of the join is 0 in ClickHouse, NULL in PostgreSQL.)"""
    return ", ".join(
        f"CASE WHEN coalesce({source}.present, 0) = 1 THEN {source}.raw_{i} ELSE 0 END AS v_{i}"
        if m.kind == "count"
        else f"{source}.raw_{i} AS v_{i}"
        for i, m, _ in plan.metrics()
    )


def _frame(bs: int, first: int, last: int) -> str:
    """The buckets from `first` to `last` seconds before the current one, per partition."""
    return (
        f"PARTITION BY part ORDER BY bucket_ts RANGE BETWEEN {first} PRECEDING AND {last} PRECEDING"
    )


def _seasonal_frame(rule: SeasonalRule) -> str:
    """The same bucket (the same offset in the period) of the previous k periods."""
    p = rule.period_seconds
    return (
        f"PARTITION BY part, bucket_ts % {p} ORDER BY bucket_ts"
        f" RANGE BETWEEN {rule.k * p} PRECEDING AND {p} PRECEDING"
    )


# --------------------------------------------------------------------------- shared stages


def _banded_and_judged(plan: _Plan, stats: str) -> str:
    """Stages 3 and 4 over `stats` (part, bucket_ts, v_i, prev_i, n_i and the rule's
    quantiles: r25_i/r75_i for the seed's rule, s25_i/s50_i/s75_i for the seasonal; gated
    ones are renamed, as ClickHouse rejects an alias that names its own input)."""
    bs = plan.bs
    gated, smoothed, banded = ["part", "bucket_ts"], ["part", "bucket_ts"], ["part", "bucket_ts"]
    windows: dict[str, str] = {}
    for i, metric, rule in plan.metrics():
        v, n = f"v_{i}", f"n_{i}"
        common = [v, f"prev_{i}", n]
        gated += common
        smoothed += common
        banded += [v, f"prev_{i}", f"{n} AS window_count_{i}"]
        if isinstance(rule, SeasonalRule):
            ok = f"{n} >= {rule.min_seasons}"
            gated += [f"CASE WHEN {ok} THEN s{q}_{i} END AS g{q}_{i}" for q in ("25", "50", "75")]
            smoothed += [f"g{q}_{i}" for q in ("25", "50", "75")]
            if rule.level_buckets:
                name = f"wl{i}"
                windows[name] = _frame(bs, rule.level_buckets * bs, bs)
                smoothed += [
                    f"sum(CASE WHEN g50_{i} IS NOT NULL THEN {v} END) OVER {name} AS lv_{i}",
                    f"sum(CASE WHEN {v} IS NOT NULL THEN g50_{i} END) OVER {name} AS lm_{i}",
                ]
            else:
                smoothed += [f"0 AS lv_{i}", f"0 AS lm_{i}"]
            banded += _seasonal_band(i, metric, rule)
        else:
            ok = f"{n} >= {rule.n}"
            a = repr(float(rule.a))
            q25, q75 = f"CASE WHEN {ok} THEN r25_{i} END", f"CASE WHEN {ok} THEN r75_{i} END"
            gated += [
                f"{q25} AS q25_{i}",
                f"{q75} AS q75_{i}",
                f"{q25} - {a} * ({q75} - {q25}) AS raw_lower_{i}",
                f"{q75} + {a} * ({q75} - {q25}) AS raw_upper_{i}",
            ]
            smoothed += [f"q25_{i}", f"q75_{i}"]
            if rule.smoothing_buckets:
                name = f"wm{i}"
                windows[name] = (
                    "PARTITION BY part ORDER BY bucket_ts RANGE BETWEEN "
                    f"{rule.smoothing_buckets * bs} PRECEDING AND CURRENT ROW"
                )
                smoothed += [
                    f"avg(raw_{side}_{i}) OVER {name} AS {side}_{i}" for side in ("lower", "upper")
                ]
            else:
                smoothed += [f"raw_{side}_{i} AS {side}_{i}" for side in ("lower", "upper")]
            banded += [f"q25_{i}", f"q75_{i}", f"lower_{i}", f"upper_{i}", f"1 AS judge_{i}"]
    window = ""
    if windows:
        window = "\nWINDOW " + ",\n  ".join(f"{name} AS ({spec})" for name, spec in windows.items())
    return (
        f"SELECT {', '.join(_judged(plan))}\nFROM (\n"
        f"SELECT {', '.join(banded)}\nFROM (\n"
        f"SELECT {', '.join(smoothed)}\nFROM (\n"
        f"SELECT {', '.join(gated)}\nFROM (\n{stats}\n) AS stats\n"
        f") AS gated{window}\n) AS smoothed\n) AS banded\n"
        f"WHERE bucket_ts > {plan.latest - plan.history_s} AND bucket_ts <= {plan.latest}\n"
        "ORDER BY part, bucket_ts"
    )


def _seasonal_band(i: int, metric: Metric, rule: SeasonalRule) -> list[str]:
    """The expected value (the seasonal median scaled by the level ratio) plus or minus
    `a` times the spread floors; a count within `min_volume` of expected is not judged.
    q25/q75 are the scaled seasonal quartiles, for the reader."""
    v = f"v_{i}"
    low, high = (repr(float(x)) for x in rule.level_clamp)
    ratio = f"lv_{i} / lm_{i}"
    r = (
        f"(CASE WHEN lm_{i} > 0 THEN (CASE WHEN {ratio} < {low} THEN {low}"
        f" WHEN {ratio} > {high} THEN {high} ELSE {ratio} END) ELSE 1.0 END)"
    )
    expected = f"({r} * g50_{i})"
    spread = f"({rule.relative_floor!r} * abs({expected}))"
    if metric.kind == "count":
        noise = f"{rule.count_noise!r} * sqrt(CASE WHEN {expected} > 0 THEN {expected} ELSE 0 END)"
        spread = f"(CASE WHEN {noise} > {spread} THEN {noise} ELSE {spread} END)"
        judge = f"CASE WHEN abs({v} - {expected}) < {rule.min_volume!r} THEN 0 ELSE 1 END"
    else:
        judge = "1"
    a = repr(float(rule.a))
    return [
        f"{r} * g25_{i} AS q25_{i}",
        f"{r} * g75_{i} AS q75_{i}",
        f"{expected} - {a} * {spread} AS lower_{i}",
        f"{expected} + {a} * {spread} AS upper_{i}",
        f"{judge} AS judge_{i}",
    ]


def _judged(plan: _Plan) -> list[str]:
    selects = [
        "part",
        "bucket_ts",
        f"CASE WHEN bucket_ts = {plan.latest} THEN 1 ELSE 0 END AS is_latest",
    ]
    for i, _, rule in plan.metrics():
        v, lo, up = f"v_{i}", f"lower_{i}", f"upper_{i}"
        below = f"CASE WHEN {v} < {lo} THEN {lo} - {v} ELSE 0 END"
        above = f"CASE WHEN {v} > {up} THEN {v} - {up} ELSE 0 END"
        outside = {
            "both": f"CASE WHEN {v} < {lo} THEN {lo} - {v}"
            f" WHEN {v} > {up} THEN {v} - {up} ELSE 0 END",
            "drop": below,
            "spike": above,
        }[rule.direction]
        judged = f"{lo} IS NOT NULL AND {v} IS NOT NULL AND judge_{i} = 1"
        selects += [
            f"{v} AS value_{i}",
            f"q25_{i}",
            f"q75_{i}",
            lo,
            up,
            f"CASE WHEN {judged} THEN {outside} ELSE NULL END AS distance_{i}",
            f"CASE WHEN prev_{i} IS NULL OR prev_{i} = 0 OR {v} IS NULL THEN NULL"
            f" ELSE ({v} - prev_{i}) / abs(prev_{i}) * 100 END AS deviation_pct_{i}",
            f"window_count_{i}",
            f"CASE WHEN {judged} AND ({outside}) > 0 THEN 1 ELSE 0 END AS breach_{i}",
        ]
    return selects


__all__ = [
    "IqrRule",
    "clickhouse_iqr_sql",
    "iqr_sql",
    "latest_bucket",
    "postgres_iqr_sql",
    "result_columns",
]
