"""IQR anomaly checks: the seed's rule, computed in the engine, as Dagster asset checks.

A bucket's band is q25/q75 of the previous `n` buckets (in time) widened by `a` * IQR; the
latest complete bucket breaches when it is outside the band on the watched side. The SQL
(ClickHouse `quantileExactInclusive`, PostgreSQL `percentile_cont`) returns only the banded
buckets of the last day, never raw rows. notes/iqr.md has the full rule, the smoothing
variant and the measured false-breach rates.
"""

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dagster as dg

Engine = Literal["clickhouse", "postgres"]
Direction = Literal["both", "drop", "spike"]
DIRECTIONS: tuple[str, ...] = ("both", "drop", "spike")
CHECK_PREFIX = "iqr_"
QUERY_TIMEOUT_SECONDS = 60
SERIES_PARTITIONS = 3  # partitions whose last-day series a check result carries (charts)
BREACHES_LISTED = 50  # partitions listed in a check result's `breaches`

# Check result statuses (metadata `status`): what the alert sensor reads.
BREACH, INSIDE, NOT_JUDGED, NO_DATA = "breach", "inside", "not_judged", "no_data"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class IqrConfigError(ValueError):
    """An IQR rule or check spec that cannot work; the message names the field."""


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class IqrRule:
    """The seed's band: q25/q75 over the previous `n` buckets, widened by `a` * IQR.

    `direction`: `both` (the seed), `drop` (only below the band counts) or `spike`
    (only above). `smooth_bounds` (off by default: the issue's literal rule): the band
    of a bucket is the mean of the raw bands of the `n//2` buckets before it and its own
    (the seed DAG's centered rolling mean, cut at the bucket judged). notes/iqr.md has
    the measured false-breach rates of each setting."""

    a: float = 3.0
    n: int = 5
    direction: Direction = "both"
    smooth_bounds: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.a, int | float) and math.isfinite(self.a) and self.a >= 0):
            raise IqrConfigError(f"IqrRule.a must be a finite number >= 0, got {self.a!r}")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise IqrConfigError(f"IqrRule.n must be an integer >= 1, got {self.n!r}")
        if self.direction not in DIRECTIONS:
            raise IqrConfigError(
                f"IqrRule.direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}"
            )
        if not isinstance(self.smooth_bounds, bool):
            raise IqrConfigError(
                f"IqrRule.smooth_bounds must be true or false, got {self.smooth_bounds!r}"
            )

    @property
    def smoothing_buckets(self) -> int:
        """Buckets before the judged one whose raw bands enter its mean (0: no smoothing):
        pandas' centered window of `n` has n//2 of them."""
        return self.n // 2 if self.smooth_bounds else 0

    def describe(self) -> str:
        smoothing = "smoothed" if self.smooth_bounds else "raw"
        return f"a={self.a:g}, n={self.n}, direction={self.direction}, {smoothing} bounds"


# --------------------------------------------------------------------------- SQL


@dataclass(frozen=True)
class IqrQuery:
    """What to band: `metrics` of `table` per `bucket` of `time_column`, one band per value
    of `partition_column` when given (e.g. one per mailbox)."""

    table: str  # schema-qualified name, e.g. marts.mailbox_emails_hourly
    time_column: str
    metrics: Sequence[str]
    bucket: timedelta
    rule: IqrRule = field(default_factory=IqrRule)
    partition_column: str | None = None

    def __post_init__(self) -> None:
        _identifier(self.table, "table", qualified=True)
        _identifier(self.time_column, "time_column")
        if self.partition_column is not None:
            _identifier(self.partition_column, "partition_column")
        if not self.metrics:
            raise IqrConfigError("metrics must name at least one column")
        for metric in self.metrics:
            _identifier(metric, "metrics")
        if len(set(self.metrics)) != len(self.metrics):
            raise IqrConfigError(f"metrics has duplicates: {list(self.metrics)}")
        seconds = self.bucket.total_seconds()
        if seconds < 1 or not float(seconds).is_integer():
            raise IqrConfigError(
                f"bucket must be a whole number of seconds >= 1, got {self.bucket}"
            )

    @property
    def bucket_seconds(self) -> int:
        return int(self.bucket.total_seconds())


def _identifier(name: str, what: str, *, qualified: bool = False) -> None:
    parts = name.split(".") if qualified else [name]
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise IqrConfigError(
            f"{what} must be a plain SQL identifier{' (schema.table)' if qualified else ''},"
            f" got {name!r}"
        )


def result_columns(metrics: Sequence[str]) -> list[str]:
    """The columns both dialects return, in order."""
    columns = ["part", "bucket_ts", "is_latest"]
    for i in range(len(metrics)):
        columns += [
            f"{name}_{i}"
            for name in (
                "value",
                "q25",
                "q75",
                "lower",
                "upper",
                "distance",
                "deviation_pct",
                "window_count",
                "breach",
            )
        ]
    return columns


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise IqrConfigError(f"`now` must be timezone-aware, got {moment!r}")
    return math.floor(moment.timestamp())


def _history_seconds(history: timedelta) -> int:
    """Buckets with start > latest - history are returned; at least 1 s, so history 0
    still returns the latest bucket itself."""
    seconds = int(history.total_seconds())
    if seconds < 0:
        raise IqrConfigError(f"history must be >= 0, got {history}")
    return max(seconds, 1)


def _lookback_seconds(query: IqrQuery, history_s: int) -> int:
    """How far before the latest bucket rows are read: the returned buckets, the buckets
    whose raw bands their smoothing averages, and those buckets' previous-`n` windows."""
    return history_s + (query.rule.n + query.rule.smoothing_buckets) * query.bucket_seconds


def _judgement_sql(query: IqrQuery, source: str) -> str:
    """The band, distance and breach of each metric from `source`'s gated quantiles: the
    same SQL in both dialects (CASE keeps NULL for buckets without judgement).

    `source` has one row per complete bucket (and partition) of the lookback, up to the
    latest complete bucket (never the bucket still filling), with `in_history` marking the
    buckets to return. Raw bands first; then, with `smooth_bounds`, the band of each bucket
    is `avg` of the raw bands over a RANGE frame from `smoothing_buckets` buckets before it
    (in time: missing buckets are simply absent) to itself, per partition; `avg` skips NULL
    raw bands and is NULL when the frame has none (pandas' min_periods=1). The history
    filter comes after the window, so the first returned buckets still average the raw
    bands before them."""
    a = repr(float(query.rule.a))
    direction = query.rule.direction
    metrics = range(len(query.metrics))
    raw = ["part", "bucket_ts", "is_latest", "in_history"]
    for i in metrics:
        raw += [
            f"value_{i}",
            f"prev_{i}",
            f"window_count_{i}",
            f"q25_{i}",
            f"q75_{i}",
            f"q25_{i} - {a} * (q75_{i} - q25_{i}) AS raw_lower_{i}",
            f"q75_{i} + {a} * (q75_{i} - q25_{i}) AS raw_upper_{i}",
        ]
    smoothing = query.rule.smoothing_buckets
    if smoothing:
        frame = f"RANGE BETWEEN {smoothing * query.bucket_seconds} PRECEDING AND CURRENT ROW"
        window = f"\nWINDOW ws AS (PARTITION BY part ORDER BY bucket_ts {frame})"
        band = "avg(raw_{side}_{i}) OVER ws AS {side}_{i}"
    else:
        window, band = "", "raw_{side}_{i} AS {side}_{i}"
    smoothed = ["part", "bucket_ts", "is_latest", "in_history"]
    for i in metrics:
        smoothed += [f"value_{i}", f"prev_{i}", f"window_count_{i}", f"q25_{i}", f"q75_{i}"]
        smoothed += [band.format(side=side, i=i) for side in ("lower", "upper")]
    selects = ["part", "bucket_ts", "is_latest"]
    for i in metrics:
        v, lo, up = f"value_{i}", f"lower_{i}", f"upper_{i}"
        below = f"CASE WHEN {v} < {lo} THEN {lo} - {v} ELSE 0 END"
        above = f"CASE WHEN {v} > {up} THEN {v} - {up} ELSE 0 END"
        outside = {
            "both": f"CASE WHEN {v} < {lo} THEN {lo} - {v}"
            f" WHEN {v} > {up} THEN {v} - {up} ELSE 0 END",
            "drop": below,
            "spike": above,
        }[direction]
        judged = f"{lo} IS NOT NULL AND {v} IS NOT NULL"
        selects += [
            v,
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
    return (
        f"SELECT {', '.join(selects)}\nFROM (\n"
        f"SELECT {', '.join(smoothed)}\nFROM (\n"
        f"SELECT {', '.join(raw)}\nFROM (\n{source}\n) AS gated\n) AS raw_banded{window}\n"
        ") AS banded\nWHERE in_history = 1\n"
        "ORDER BY part, bucket_ts"
    )


def clickhouse_iqr_sql(query: IqrQuery, now: datetime, history: timedelta) -> str:
    """ClickHouse SQL: every bucket of the last `history` up to the latest complete bucket
    (`is_latest` = 1), with its band; columns as `result_columns`."""
    bs, n = query.bucket_seconds, query.rule.n
    history_s = _history_seconds(history)
    lookback = _lookback_seconds(query, history_s)

    def q(name: str) -> str:
        return ".".join(f"`{p}`" for p in name.split("."))

    t = q(query.time_column)
    ts = f"toInt64(toUnixTimestamp({t}))"
    part = f"toString({q(query.partition_column)})" if query.partition_column else "''"
    partition = "PARTITION BY part " if query.partition_column else ""
    columns = []
    for i, metric in enumerate(query.metrics):
        m = f"toFloat64({q(metric)})"
        columns += [
            f"{m} AS value_{i}",
            f"count({m}) OVER w AS _n_{i}",
            f"quantileExactInclusive(0.25)({m}) OVER w AS _q25_{i}",
            f"quantileExactInclusive(0.75)({m}) OVER w AS _q75_{i}",
            f"any({m}) OVER wp AS prev_{i}",
        ]
    gates = [
        "part",
        "bucket_ts",
        "toUInt8(bucket_ts = latest_ts) AS is_latest",
        f"toUInt8(bucket_ts > latest_ts - {history_s}) AS in_history",
    ]
    for i in range(len(query.metrics)):
        gates += [
            f"value_{i}",
            f"prev_{i}",
            f"toInt64(_n_{i}) AS window_count_{i}",
            f"if(_n_{i} >= {n}, toNullable(toFloat64(_q25_{i})), NULL) AS q25_{i}",
            f"if(_n_{i} >= {n}, toNullable(toFloat64(_q75_{i})), NULL) AS q75_{i}",
        ]
    source = (
        f"SELECT {', '.join(gates)}\nFROM (\n"
        f"SELECT {part} AS part, {ts} AS bucket_ts, {', '.join(columns)}\n"
        f"FROM {q(query.table)}\n"
        f"WHERE {t} >= toDateTime(greatest(latest_ts - {lookback}, 0))"
        f" AND {t} <= toDateTime(latest_ts)\n"
        f"WINDOW w AS ({partition}ORDER BY bucket_ts"
        f" RANGE BETWEEN {n * bs} PRECEDING AND {bs} PRECEDING),\n"
        f"  wp AS ({partition}ORDER BY bucket_ts RANGE BETWEEN {bs} PRECEDING AND {bs} PRECEDING)\n"
        f") AS framed"
    )
    latest = (
        f"WITH (SELECT maxOrNull({ts}) FROM {q(query.table)}"
        f" WHERE {t} <= toDateTime({_epoch(now) - bs})) AS latest_ts\n"
    )
    return latest + _judgement_sql(query, source)


def postgres_iqr_sql(query: IqrQuery, now: datetime, history: timedelta) -> str:
    """PostgreSQL SQL (time column `timestamptz`): as `clickhouse_iqr_sql`. The window
    collects the previous values with `array_agg` over a RANGE frame; `percentile_cont`
    runs in a LATERAL subquery over that array."""
    bs, n = query.bucket_seconds, query.rule.n
    history_s = _history_seconds(history)
    lookback = _lookback_seconds(query, history_s)

    def q(name: str) -> str:
        return ".".join(f'"{p}"' for p in name.split("."))

    def seconds(value: int) -> str:
        return f"interval '{value} seconds'"

    t = q(query.time_column)
    part = f"({q(query.partition_column)})::text" if query.partition_column else "''::text"
    partition = f"PARTITION BY {q(query.partition_column)} " if query.partition_column else ""
    columns, laterals, gates = [], [], []
    for i, metric in enumerate(query.metrics):
        m = f"({q(metric)})::float8"
        columns += [
            f"{m} AS value_{i}",
            f"array_agg({m}) OVER w AS _window_{i}",
            f"max({m}) OVER wp AS prev_{i}",
        ]
        laterals.append(
            f"CROSS JOIN LATERAL (SELECT count(x) AS n,"
            f" percentile_cont(0.25) WITHIN GROUP (ORDER BY x) AS q25,"
            f" percentile_cont(0.75) WITHIN GROUP (ORDER BY x) AS q75"
            f" FROM unnest(framed._window_{i}) AS x) AS s_{i}"
        )
        gates += [
            f"value_{i}",
            f"prev_{i}",
            f"s_{i}.n::bigint AS window_count_{i}",
            f"CASE WHEN s_{i}.n >= {n} THEN s_{i}.q25 END AS q25_{i}",
            f"CASE WHEN s_{i}.n >= {n} THEN s_{i}.q75 END AS q75_{i}",
        ]
    source = (
        f"WITH latest AS (SELECT max({t}) AS bucket FROM {q(query.table)}"
        f" WHERE {t} <= to_timestamp({_epoch(now)}) - {seconds(bs)}),\n"
        f"framed AS (\n"
        f"SELECT {part} AS part, {t} AS bucket, {', '.join(columns)}\n"
        f"FROM {q(query.table)}, latest\n"
        f"WHERE {t} >= latest.bucket - {seconds(lookback)} AND {t} <= latest.bucket\n"
        f"WINDOW w AS ({partition}ORDER BY {t}"
        f" RANGE BETWEEN {seconds(n * bs)} PRECEDING AND {seconds(bs)} PRECEDING),\n"
        f"  wp AS ({partition}ORDER BY {t}"
        f" RANGE BETWEEN {seconds(bs)} PRECEDING AND {seconds(bs)} PRECEDING)\n"
        f")\n"
        f"SELECT part, extract(epoch FROM framed.bucket)::bigint AS bucket_ts,"
        f" (framed.bucket = latest.bucket)::int AS is_latest,"
        f" (framed.bucket > latest.bucket - {seconds(history_s)})::int AS in_history,"
        f" {', '.join(gates)}\n"
        f"FROM framed CROSS JOIN latest\n{chr(10).join(laterals)}"
    )
    return _judgement_sql(query, source)


def iqr_sql(engine: Engine, query: IqrQuery, now: datetime, history: timedelta) -> str:
    if engine == "clickhouse":
        return clickhouse_iqr_sql(query, now, history)
    if engine == "postgres":
        return postgres_iqr_sql(query, now, history)
    raise IqrConfigError(f"engine must be clickhouse or postgres, got {engine!r}")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class IqrPoint:
    """One banded bucket of one metric (and partition), as the SQL computed it."""

    partition: str
    bucket_start: datetime
    is_latest: bool
    value: float | None
    q25: float | None
    q75: float | None
    lower: float | None
    upper: float | None
    distance_outside: float | None
    deviation_pct: float | None
    window_count: int
    breach: bool

    @property
    def judged(self) -> bool:
        return self.distance_outside is not None


def parse_rows(
    metrics: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> dict[str, list[IqrPoint]]:
    """The engine's rows -> points per metric, in (partition, bucket) order."""
    expected = result_columns(metrics)
    if rows and list(columns) != expected:  # chDB names no columns for an empty result
        raise ValueError(f"IQR query returned columns {list(columns)}, expected {expected}")
    points: dict[str, list[IqrPoint]] = {m: [] for m in metrics}
    for row in rows:
        part, bucket_ts, is_latest = row[0], row[1], row[2]
        start = datetime.fromtimestamp(int(bucket_ts), UTC)
        for i, metric in enumerate(metrics):
            base = 3 + 9 * i
            value, q25, q75, lower, upper, distance, deviation, count, breach = row[base : base + 9]
            points[metric].append(
                IqrPoint(
                    partition=str(part),
                    bucket_start=start,
                    is_latest=bool(is_latest),
                    value=_num(value),
                    q25=_num(q25),
                    q75=_num(q75),
                    lower=_num(lower),
                    upper=_num(upper),
                    distance_outside=_num(distance),
                    deviation_pct=_num(deviation),
                    window_count=int(count or 0),
                    breach=bool(breach),
                )
            )
    return points


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


@dataclass(frozen=True)
class IqrOutcome:
    """The verdict on one metric's latest complete bucket, and what the alert needs."""

    metric: str
    status: str  # BREACH | INSIDE | NOT_JUDGED | NO_DATA
    headline: IqrPoint | None  # the worst breach, else the judged (or latest) bucket
    breaches: list[IqrPoint]  # every breached partition, worst first
    judged: int  # partitions judged at the latest bucket
    latest: list[IqrPoint]  # every partition's point at the latest bucket
    series: dict[str, list[IqrPoint]]  # partition -> last `history` of points (charted ones)

    @property
    def passed(self) -> bool:
        return self.status != BREACH


def evaluate(metric: str, points: Sequence[IqrPoint]) -> IqrOutcome:
    """Pick the verdict from the SQL's points (no statistics here: the engine did them)."""
    latest = [p for p in points if p.is_latest]
    breaches = sorted(
        (p for p in latest if p.breach), key=lambda p: (-(p.distance_outside or 0), p.partition)
    )
    judged = [p for p in latest if p.judged]
    if breaches:
        status, headline = BREACH, breaches[0]
    elif judged:
        status, headline = INSIDE, judged[0]
    elif latest:
        status, headline = NOT_JUDGED, latest[0]
    else:
        status, headline = NO_DATA, None
    charted = [p.partition for p in breaches] or ([headline.partition] if headline else [])
    charted = charted[:SERIES_PARTITIONS]
    series = {key: [p for p in points if p.partition == key] for key in charted}
    return IqrOutcome(metric, status, headline, breaches, len(judged), latest, series)


# --------------------------------------------------------------------------- check results


def _rounded(value: float | None) -> float | None:
    """Compact JSON for the series: 8 significant digits are plenty for a chart."""
    return None if value is None else float(f"{value:.8g}")


def outcome_metadata(
    outcome: IqrOutcome,
    *,
    rule: IqrRule,
    bucket: timedelta,
    partition_column: str | None = None,
) -> dict[str, Any]:
    """The check result's metadata: the alert sensor's whole input (it never queries the
    engine). Absent numbers are left out rather than written as NaN. `lower`/`upper` are
    the band the bucket is judged by (and the series draws); `q25`/`q75` are the bucket's
    own previous-`n` quantiles, so with smoothed bounds `lower` is not q25 - a*IQR."""
    head = outcome.headline
    metadata: dict[str, Any] = {
        "status": outcome.status,
        "metric": outcome.metric,
        "rule": rule.describe(),
        "bucket_seconds": int(bucket.total_seconds()),
    }
    if head is not None:
        metadata["bucket_start"] = dg.MetadataValue.timestamp(head.bucket_start)
        metadata["window_count"] = head.window_count
        for name in ("value", "q25", "q75", "lower", "upper", "distance_outside", "deviation_pct"):
            number = getattr(head, name)
            if number is not None:
                metadata[name] = float(number)
    if partition_column:
        metadata["partition_column"] = partition_column
        if head is not None:
            metadata["partition"] = head.partition
        metadata["judged_partitions"] = outcome.judged
        metadata["breach_count"] = len(outcome.breaches)
        metadata["breaches"] = dg.MetadataValue.json(
            [
                {
                    "partition": p.partition,
                    "value": p.value,
                    "lower": p.lower,
                    "upper": p.upper,
                    "distance_outside": p.distance_outside,
                    "deviation_pct": p.deviation_pct,
                }
                for p in outcome.breaches[:BREACHES_LISTED]
            ]
        )
    metadata["series"] = dg.MetadataValue.json(
        {
            "columns": ["bucket_ts", "value", "lower", "upper"],
            "series": [
                {
                    "partition": key,
                    "points": [
                        [
                            int(p.bucket_start.timestamp()),
                            _rounded(p.value),
                            _rounded(p.lower),
                            _rounded(p.upper),
                        ]
                        for p in points
                    ],
                }
                for key, points in outcome.series.items()
            ],
        }
    )
    return metadata


def describe_outcome(outcome: IqrOutcome, rule: IqrRule, partition_column: str | None) -> str:
    head = outcome.headline
    if head is None:
        return f"{outcome.metric}: no complete bucket yet, nothing to judge"
    when = head.bucket_start.strftime("%Y-%m-%d %H:%M UTC")
    where = f" ({partition_column}={head.partition})" if partition_column else ""
    if outcome.status == NOT_JUDGED:
        k = rule.smoothing_buckets
        also = f"; none of the {k} buckets before it has a full window either" if k else ""
        return (
            f"{outcome.metric}{where} at {when}: not judged, {head.window_count} of the "
            f"{rule.n} previous buckets have a value{also} ({rule.describe()})"
        )
    band = f"[{head.lower:.6g}, {head.upper:.6g}]"
    if outcome.status == INSIDE:
        scope = f", {outcome.judged} partitions judged" if partition_column else ""
        return f"{outcome.metric} {head.value:.6g} at {when} is inside {band}{scope}"
    side = "below" if head.value < head.lower else "above"
    more = f" (+{len(outcome.breaches) - 1} more partitions)" if len(outcome.breaches) > 1 else ""
    return (
        f"{outcome.metric}{where} {head.value:.6g} at {when} is {side} the band {band} by "
        f"{head.distance_outside:.6g} ({rule.describe()}){more}"
    )


# --------------------------------------------------------------------------- check factory


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IqrCheckSpec:
    """IQR checks on `metrics` of the table behind `asset`, one check per metric.

    `table` may contain `{database}`, filled from the ClickHouse resource's target
    database (dbt puts marts in `<database>_marts`). The Postgres time column must be
    `timestamptz`. Breaches are WARN by default: the data is valid, what it says is
    unusual; ERROR is for checks whose failure means broken data."""

    asset: dg.AssetKey
    engine: Engine
    table: str
    time_column: str
    metrics: Sequence[str]
    bucket: timedelta
    rule: IqrRule = field(default_factory=IqrRule)
    partition_column: str | None = None
    description: str = ""
    blocking: bool = False
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN
    history: timedelta = timedelta(days=1)
    clock: Callable[[], datetime] = field(default=_utc_now, compare=False)

    def __post_init__(self) -> None:
        if self.engine not in ("clickhouse", "postgres"):
            raise IqrConfigError(f"engine must be clickhouse or postgres, got {self.engine!r}")
        self.query("database")  # validates names, bucket and rule now, not at first run

    def query(self, database: str = "") -> IqrQuery:
        return IqrQuery(
            table=self.table.format(database=database),
            time_column=self.time_column,
            metrics=tuple(self.metrics),
            bucket=self.bucket,
            rule=self.rule,
            partition_column=self.partition_column,
        )

    def check_name(self, metric: str) -> str:
        return f"{CHECK_PREFIX}{metric}"

    def check_keys(self) -> list[dg.AssetCheckKey]:
        return [dg.AssetCheckKey(self.asset, self.check_name(m)) for m in self.metrics]

    @property
    def resource_key(self) -> str:
        return "clickhouse" if self.engine == "clickhouse" else "warehouse"


def run_iqr_query(
    spec: IqrCheckSpec, resource: Any, now: datetime, metrics: Sequence[str] | None = None
) -> dict[str, list[IqrPoint]]:
    """Run the spec's SQL on its engine (a ClickHouseResource or WarehouseResource) and
    parse the few rows it returns. The ClickHouse client is open only for the query."""
    chosen = tuple(metrics or spec.metrics)
    if spec.engine == "clickhouse":
        query = replace(spec.query(resource.target_database()), metrics=chosen)
        sql = clickhouse_iqr_sql(query, now, spec.history)
        with resource.client(f"IQR checks on {spec.asset.to_user_string()}") as client:
            result = client.query(sql, settings={"max_execution_time": QUERY_TIMEOUT_SECONDS})
            columns, rows = list(result.column_names), list(result.result_rows)
    else:
        query = replace(spec.query(), metrics=chosen)
        sql = postgres_iqr_sql(query, now, spec.history)
        with resource.connect() as conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL statement_timeout = '{QUERY_TIMEOUT_SECONDS}s'")
            cur.execute(sql)
            columns, rows = [d.name for d in cur.description], cur.fetchall()
    return parse_rows(chosen, columns, rows)


def check_result(spec: IqrCheckSpec, outcome: IqrOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=spec.asset,
        check_name=spec.check_name(outcome.metric),
        passed=outcome.passed,
        severity=spec.severity,
        description=describe_outcome(outcome, spec.rule, spec.partition_column),
        metadata=outcome_metadata(
            outcome, rule=spec.rule, bucket=spec.bucket, partition_column=spec.partition_column
        ),
    )


def iqr_checks(spec: IqrCheckSpec) -> list[dg.AssetChecksDefinition]:
    """One `iqr_<metric>` check per metric, computed together by one query (one short
    engine use per run); subsettable, so a single check can run alone."""
    specs = [
        dg.AssetCheckSpec(
            name=spec.check_name(metric),
            asset=spec.asset,
            blocking=spec.blocking,
            description=(
                f"IQR band on {metric} per {_human(spec.bucket)} bucket ({spec.rule.describe()})"
                + (f", one band per {spec.partition_column}" if spec.partition_column else "")
                + (f". {spec.description}" if spec.description else "")
            ),
        )
        for metric in spec.metrics
    ]
    name = "iqr_" + "__".join(spec.asset.path)

    @dg.multi_asset_check(
        specs=specs,
        name=name,
        can_subset=True,
        required_resource_keys={spec.resource_key},
        description=spec.description or None,
    )
    def _iqr(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        selected = {key.name for key in context.selected_asset_check_keys}
        metrics = [m for m in spec.metrics if spec.check_name(m) in selected]
        resource = getattr(context.resources, spec.resource_key)
        points = run_iqr_query(spec, resource, spec.clock(), metrics)
        for metric in metrics:
            outcome = evaluate(metric, points[metric])
            if outcome.status == BREACH:
                context.log.warning(describe_outcome(outcome, spec.rule, spec.partition_column))
            yield check_result(spec, outcome)

    return [_iqr]


def iqr_check_keys(checks: Iterable[dg.AssetChecksDefinition]) -> list[dg.AssetCheckKey]:
    """The keys of the IQR checks among `checks` (the factory names them `iqr_<metric>`)."""
    return [
        key
        for definition in checks
        for key in definition.check_keys
        if key.name.startswith(CHECK_PREFIX)
    ]


def _human(bucket: timedelta) -> str:
    seconds = int(bucket.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count}-{unit}" if count != 1 else unit
    return f"{seconds}-second"


# --------------------------------------------------------------------------- reading results


@dataclass(frozen=True)
class SeriesPoint:
    bucket_start: datetime
    value: float | None
    lower: float | None
    upper: float | None


def series_from_metadata(data: Mapping[str, Any] | None) -> dict[str, list[SeriesPoint]]:
    """The `series` metadata of an IQR check result -> partition -> points (for charts)."""
    if not isinstance(data, Mapping):
        return {}
    found: dict[str, list[SeriesPoint]] = {}
    for item in data.get("series") or []:
        points = []
        for row in item.get("points") or []:
            ts, value, lower, upper = row
            points.append(SeriesPoint(datetime.fromtimestamp(int(ts), UTC), value, lower, upper))
        found[str(item.get("partition", ""))] = points
    return found


def metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values of Dagster metadata (MetadataValue.value), for parsing results."""
    plain = {}
    for key, value in metadata.items():
        plain[key] = value.value if isinstance(value, dg.MetadataValue) else value
    return plain
