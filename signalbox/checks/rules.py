"""What an anomaly check judges: the rules (the seed's recent-window band, the seasonal
band), the metrics with their kind, and the query that says where they are.

A count metric's missing bucket is a bucket where nothing was counted (0); a ratio's is
"no data". notes/iqr.md has the rules' definitions and their measured alert quality.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

Direction = Literal["both", "drop", "spike"]
DIRECTIONS: tuple[str, ...] = ("both", "drop", "spike")
MetricKind = Literal["count", "ratio"]
KINDS: tuple[str, ...] = ("count", "ratio")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class IqrConfigError(ValueError):
    """A rule, metric or check spec that cannot work; the message names the field."""


def _number(value: object, what: str, *, minimum: float = 0.0) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= minimum):
        raise IqrConfigError(f"{what} must be a finite number >= {minimum:g}, got {value!r}")


def _whole(value: object, what: str, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise IqrConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _direction(value: object, what: str) -> None:
    if value not in DIRECTIONS:
        raise IqrConfigError(f"{what} must be one of {', '.join(DIRECTIONS)}, got {value!r}")


@dataclass(frozen=True)
class IqrRule:
    """The seed's band: q25/q75 over the previous `n` buckets, widened by `a` * IQR.

    `direction`: `both` (the seed), `drop` (only below the band counts) or `spike`
    (only above). `smooth_bounds` (off by default: the issue's literal rule): the band
    of a bucket is the mean of the raw bands of the `n//2` buckets before it and its own
    (the seed DAG's centered rolling mean, cut at the bucket judged)."""

    a: float = 3.0
    n: int = 5
    direction: Direction = "both"
    smooth_bounds: bool = False

    def __post_init__(self) -> None:
        _number(self.a, "IqrRule.a")
        _whole(self.n, "IqrRule.n")
        _direction(self.direction, "IqrRule.direction")
        if not isinstance(self.smooth_bounds, bool):
            raise IqrConfigError(
                f"IqrRule.smooth_bounds must be true or false, got {self.smooth_bounds!r}"
            )

    @property
    def smoothing_buckets(self) -> int:
        """Buckets before the judged one whose raw bands enter its mean (0: no smoothing):
        pandas' centered window of `n` has n//2 of them."""
        return self.n // 2 if self.smooth_bounds else 0

    def lookback_buckets(self, bucket_seconds: int) -> int:
        return self.n + self.smoothing_buckets

    def describe(self) -> str:
        smoothing = "smoothed" if self.smooth_bounds else "raw"
        return f"a={self.a:g}, n={self.n}, direction={self.direction}, {smoothing} bounds"


@dataclass(frozen=True)
class SeasonalRule:
    """A band around what the same bucket held in the previous `k` periods (weeks by
    default, so Mondays are judged by Mondays).

    The expected value is their median scaled by the level ratio r (the last
    `level_buckets` buckets' values over their own expected ones, clamped to
    `level_clamp`: a busier day, a growing product). The band is the expected value plus
    or minus `a` times the larger of `relative_floor` x expected (day-to-day noise) and,
    for counts, `count_noise` x sqrt(expected): Poisson noise, widened for the median of a
    few periods being an estimate. A bucket is judged once `min_seasons` periods have a
    value; a count within `min_volume` of the expected value is not judged, so a handful
    of events pages no one. Defaults measured by benchmarks/alerts.py (notes/iqr.md)."""

    a: float = 3.0
    k: int = 3
    period: timedelta = timedelta(days=7)
    level_buckets: int = 8
    level_clamp: tuple[float, float] = (0.5, 2.0)
    min_seasons: int = 1
    min_volume: float = 20.0
    relative_floor: float = 0.10
    count_noise: float = 1.5
    direction: Direction = "both"

    def __post_init__(self) -> None:
        _number(self.a, "SeasonalRule.a")
        _whole(self.k, "SeasonalRule.k")
        _whole(self.level_buckets, "SeasonalRule.level_buckets", minimum=0)
        _whole(self.min_seasons, "SeasonalRule.min_seasons")
        _number(self.min_volume, "SeasonalRule.min_volume")
        _number(self.relative_floor, "SeasonalRule.relative_floor")
        _number(self.count_noise, "SeasonalRule.count_noise")
        _direction(self.direction, "SeasonalRule.direction")
        if self.min_seasons > self.k:
            raise IqrConfigError(
                f"SeasonalRule.min_seasons ({self.min_seasons}) cannot exceed k ({self.k})"
            )
        low, high = self.level_clamp
        _number(low, "SeasonalRule.level_clamp[0]")
        _number(high, "SeasonalRule.level_clamp[1]")
        if not 0 < low <= 1 <= high:
            raise IqrConfigError(
                "SeasonalRule.level_clamp must be (low, high) with 0 < low <= 1 <= high,"
                f" got {self.level_clamp}"
            )
        seconds = self.period.total_seconds()
        if seconds < 1 or not float(seconds).is_integer():
            raise IqrConfigError(f"SeasonalRule.period must be whole seconds, got {self.period}")

    @property
    def period_seconds(self) -> int:
        return int(self.period.total_seconds())

    def lookback_buckets(self, bucket_seconds: int) -> int:
        """Each returned bucket reads k periods back, and its level window reads the
        `level_buckets` before it, each of which reads k periods back."""
        return math.ceil(self.k * self.period_seconds / bucket_seconds) + self.level_buckets

    def describe(self) -> str:
        days = self.period_seconds / 86400
        unit = {1: "day", 7: "week"}.get(days, f"{days:g}-day period")
        return (
            f"seasonal: the same bucket over the previous {self.k} x {unit}, a={self.a:g},"
            f" level over {self.level_buckets} buckets, floors {self.relative_floor:g} x"
            f" expected / {self.count_noise:g} x sqrt(expected), min volume {self.min_volume:g},"
            f" direction={self.direction}"
        )


Rule = IqrRule | SeasonalRule


@dataclass(frozen=True)
class Metric:
    """A column to band: a `count` (a missing bucket counted nothing: 0) or a `ratio`
    (a missing bucket has no data); `rule` overrides the query's."""

    name: str
    kind: MetricKind = "count"
    rule: Rule | None = None

    def __post_init__(self) -> None:
        _identifier(self.name, "metrics")
        if self.kind not in KINDS:
            raise IqrConfigError(
                f"metric {self.name}: kind must be count or ratio, got {self.kind!r}"
            )


@dataclass(frozen=True)
class IqrQuery:
    """What to band: `metrics` of `table` per `bucket` of `time_column`, one band per value
    of `partition_column` when given (e.g. one per mailbox). A metric given by name alone
    is a count judged by `rule`."""

    table: str  # schema-qualified name, e.g. marts.mailbox_emails_hourly
    time_column: str
    metrics: Sequence[str | Metric]
    bucket: timedelta
    rule: Rule = field(default_factory=IqrRule)
    partition_column: str | None = None

    def __post_init__(self) -> None:
        _identifier(self.table, "table", qualified=True)
        _identifier(self.time_column, "time_column")
        if self.partition_column is not None:
            _identifier(self.partition_column, "partition_column")
        if not self.metrics:
            raise IqrConfigError("metrics must name at least one column")
        metrics = tuple(m if isinstance(m, Metric) else Metric(m) for m in self.metrics)
        object.__setattr__(self, "metrics", metrics)
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise IqrConfigError(f"metrics has duplicates: {names}")
        seconds = self.bucket.total_seconds()
        if seconds < 1 or not float(seconds).is_integer():
            raise IqrConfigError(
                f"bucket must be a whole number of seconds >= 1, got {self.bucket}"
            )

    @property
    def bucket_seconds(self) -> int:
        return int(self.bucket.total_seconds())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def rule_of(self, metric: Metric) -> Rule:
        return metric.rule or self.rule


def _identifier(name: str, what: str, *, qualified: bool = False) -> None:
    parts = name.split(".") if qualified else [name]
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise IqrConfigError(
            f"{what} must be a plain SQL identifier{' (schema.table)' if qualified else ''},"
            f" got {name!r}"
        )
