"""Band checks computed in the engine, as Dagster asset checks (one factory, one rule per
spec: the seed's IQR rule or the seasonal one, rules.py).

Each run judges the bucket that should exist by now: the latest complete at `now - lag`,
row or no row (a count's missing bucket is 0; a ratio's, or a NULL/NaN value, is no data,
reported as such). The SQL (sql.py; ClickHouse and PostgreSQL) returns only the banded
buckets of the last day, never raw rows. notes/iqr.md has the rules, the smoothing variant
and the measured alert quality (`make bench BENCH=alerts`).
"""

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dagster as dg

from signalbox.checks.rules import (
    DIRECTIONS,
    Direction,
    IqrConfigError,
    IqrQuery,
    IqrRule,
    Metric,
    MetricKind,
    Rule,
    SeasonalRule,
)
from signalbox.checks.sql import (
    clickhouse_iqr_sql,
    iqr_sql,
    latest_bucket,
    postgres_iqr_sql,
    result_columns,
)

Engine = Literal["clickhouse", "postgres"]
CHECK_PREFIX = "iqr_"
QUERY_TIMEOUT_SECONDS = 60
SERIES_PARTITIONS = 3  # partitions whose last-day series a check result carries (charts)
BREACHES_LISTED = 50  # partitions listed in a check result's `breaches`

# Check result statuses (metadata `status`): what the alert sensor reads.
BREACH, INSIDE, NOT_JUDGED, NO_DATA = "breach", "inside", "not_judged", "no_data"

__all__ = [
    "DIRECTIONS",
    "Direction",
    "IqrConfigError",
    "IqrQuery",
    "IqrRule",
    "Metric",
    "MetricKind",
    "Rule",
    "SeasonalRule",
    "clickhouse_iqr_sql",
    "iqr_sql",
    "latest_bucket",
    "postgres_iqr_sql",
    "result_columns",
]


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
    valued = [p for p in latest if p.value is not None]
    if breaches:
        status, headline = BREACH, breaches[0]
    elif judged:
        status, headline = INSIDE, judged[0]
    elif valued:
        status, headline = NOT_JUDGED, valued[0]
    else:  # no partition has a value for the bucket that should be there by now
        status, headline = NO_DATA, latest[0] if latest else None
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
    rule: Rule,
    bucket: timedelta,
    partition_column: str | None = None,
    kind: MetricKind = "count",
) -> dict[str, Any]:
    """The check result's metadata: the alert sensor's whole input (it never queries the
    engine). Absent numbers are left out rather than written as NaN. `lower`/`upper` are
    the band the bucket is judged by (and the series draws); `q25`/`q75` are the bucket's
    own previous-`n` quantiles, so with smoothed bounds `lower` is not q25 - a*IQR."""
    head = outcome.headline
    metadata: dict[str, Any] = {
        "status": outcome.status,
        "metric": outcome.metric,
        "metric_kind": kind,
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


def describe_outcome(outcome: IqrOutcome, rule: Rule, partition_column: str | None) -> str:
    head = outcome.headline
    if head is None:
        return f"{outcome.metric}: no data in the lookback, nothing to judge ({rule.describe()})"
    when = head.bucket_start.strftime("%Y-%m-%d %H:%M UTC")
    where = f" ({partition_column}={head.partition})" if partition_column else ""
    if outcome.status == NO_DATA:
        return f"{outcome.metric}{where} at {when}: no data for the bucket that should be there"
    if outcome.status == NOT_JUDGED:
        return f"{outcome.metric}{where} {head.value:.6g} at {when}: not judged, {_why(head, rule)}"
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


def _why(point: IqrPoint, rule: Rule) -> str:
    """Why a bucket with a value has no verdict."""
    if isinstance(rule, SeasonalRule):
        if point.window_count < rule.min_seasons:
            return (
                f"{point.window_count} of the {rule.k} previous periods have a value"
                f" (needs {rule.min_seasons}; {rule.describe()})"
            )
        return f"expected and observed volumes are under {rule.min_volume:g} ({rule.describe()})"
    k = rule.smoothing_buckets
    also = f"; none of the {k} buckets before it has a full window either" if k else ""
    return (
        f"{point.window_count} of the {rule.n} previous buckets have a value{also}"
        f" ({rule.describe()})"
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
    metrics: Sequence[str | Metric]
    bucket: timedelta
    rule: Rule = field(default_factory=IqrRule)
    partition_column: str | None = None
    description: str = ""
    blocking: bool = False
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN
    history: timedelta = timedelta(days=1)
    # how long after a bucket ends its data may still be arriving: the bucket judged is
    # the latest one complete at now - lag
    lag: timedelta = timedelta(0)
    clock: Callable[[], datetime] = field(default=_utc_now, compare=False)

    def __post_init__(self) -> None:
        if self.engine not in ("clickhouse", "postgres"):
            raise IqrConfigError(f"engine must be clickhouse or postgres, got {self.engine!r}")
        if self.lag < timedelta(0):
            raise IqrConfigError(f"lag must be >= 0, got {self.lag}")
        query = self.query("database")  # validates names, bucket and rules now
        object.__setattr__(self, "metrics", query.metrics)

    def query(self, database: str = "", names: Sequence[str] | None = None) -> IqrQuery:
        metrics = [m for m in self.metrics if names is None or _name(m) in names]
        return IqrQuery(
            table=self.table.format(database=database),
            time_column=self.time_column,
            metrics=tuple(metrics),
            bucket=self.bucket,
            rule=self.rule,
            partition_column=self.partition_column,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(_name(m) for m in self.metrics)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if _name(m) == name)

    def rule_of(self, name: str) -> Rule:
        return self.metric(name).rule or self.rule

    def check_name(self, metric: str) -> str:
        return f"{CHECK_PREFIX}{metric}"

    def check_keys(self) -> list[dg.AssetCheckKey]:
        return [dg.AssetCheckKey(self.asset, self.check_name(m)) for m in self.names]

    @property
    def resource_key(self) -> str:
        return "clickhouse" if self.engine == "clickhouse" else "warehouse"


def run_iqr_query(
    spec: IqrCheckSpec, resource: Any, now: datetime, metrics: Sequence[str] | None = None
) -> dict[str, list[IqrPoint]]:
    """Run the spec's SQL on its engine (a ClickHouseResource or WarehouseResource) and
    parse the few rows it returns. The ClickHouse client is open only for the query."""
    chosen = tuple(metrics or spec.names)
    if spec.engine == "clickhouse":
        query = spec.query(resource.target_database(), chosen)
        sql = clickhouse_iqr_sql(query, now, spec.history, spec.lag)
        with resource.client(f"IQR checks on {spec.asset.to_user_string()}") as client:
            result = client.query(sql, settings={"max_execution_time": QUERY_TIMEOUT_SECONDS})
            columns, rows = list(result.column_names), list(result.result_rows)
    else:
        query = spec.query(names=chosen)
        sql = postgres_iqr_sql(query, now, spec.history, spec.lag)
        with resource.connect() as conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL statement_timeout = '{QUERY_TIMEOUT_SECONDS}s'")
            cur.execute(sql)
            columns, rows = [d.name for d in cur.description], cur.fetchall()
    return parse_rows(query.names, columns, rows)


def check_result(spec: IqrCheckSpec, outcome: IqrOutcome) -> dg.AssetCheckResult:
    rule, kind = spec.rule_of(outcome.metric), spec.metric(outcome.metric).kind
    return dg.AssetCheckResult(
        asset_key=spec.asset,
        check_name=spec.check_name(outcome.metric),
        passed=outcome.passed,
        severity=spec.severity,
        description=describe_outcome(outcome, rule, spec.partition_column),
        metadata=outcome_metadata(
            outcome,
            rule=rule,
            bucket=spec.bucket,
            partition_column=spec.partition_column,
            kind=kind,
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
                f"IQR band on {metric} ({spec.metric(metric).kind}) per {_human(spec.bucket)}"
                f" bucket ({spec.rule_of(metric).describe()})"
                + (f", one band per {spec.partition_column}" if spec.partition_column else "")
                + (f". {spec.description}" if spec.description else "")
            ),
        )
        for metric in spec.names
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
        metrics = [m for m in spec.names if spec.check_name(m) in selected]
        resource = getattr(context.resources, spec.resource_key)
        points = run_iqr_query(spec, resource, spec.clock(), metrics)
        for metric in metrics:
            outcome = evaluate(metric, points[metric])
            if outcome.status == BREACH:
                rule = spec.rule_of(metric)
                context.log.warning(describe_outcome(outcome, rule, spec.partition_column))
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


def _name(metric: str | Metric) -> str:
    return metric.name if isinstance(metric, Metric) else metric


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
