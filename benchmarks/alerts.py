"""Alert quality, measured (`make bench BENCH=alerts`): every rule, run in the engine on a
labelled evaluation set, side by side with the seed's rule.

The set: 70 days of 15-minute buckets per series, for series like the activity metrics
(counts at four volumes, and a ratio). Each has a daily cycle (a UTC+3 audience: night
trough, evening peak), a weekly one (weekends busier and later), day-to-day level noise
and Poisson noise. The first two weeks are history only; after them, clean weeks (no
anomaly: every breach is a false alarm) alternate with anomaly weeks, into which
anomalies of known type, size and time are injected, in daytime, apart from each other:
drops of 30-90%, spikes of 2-5x, level shifts (x0.6, x1.6 for the rest of the day), full
stops (the source sends nothing: counts 0, the ratio no data) and slow drifts (down to half
over four hours).

Every bucket is judged as the check judges it at its end (one query per rule with the
whole range as history: each band reads only earlier buckets). Per rule:
- recall per anomaly type: breached within 2 buckets of the anomaly's start;
- false alarms per metric-week on the clean weeks, counted as the chat sees them (one
  alert per run of breached buckets);
- median detection delay in buckets (first breach after the start, within the anomaly).
The default rule's goals: recall >= 0.9 on drops of 50% or more, spikes of 2x or more and
full stops; <= 1 false alarm per metric-week; median delay <= 2 buckets. Last, the time
of one run of the activity checks on 90 days of six metrics (goal < 1 s), against the
seed's rule in the same process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.report import report

BUCKET = timedelta(minutes=15)
PER_DAY = 96
DAYS = 70
HISTORY_WEEKS = 2
START = datetime(2026, 6, 1, tzinfo=UTC)  # a Monday
DATABASE = "alerts_bench"
TABLE = f"{DATABASE}.series"
# (series name, kind, mean per bucket): the volumes of a small and a large product
SERIES = (
    ("users_small", "count", 20.0),
    ("views_small", "count", 120.0),
    ("messages", "count", 400.0),
    ("views", "count", 3000.0),
    ("users", "count", 900.0),
    ("ctr", "ratio", 0.2),  # likes / views, views at 3000 per bucket
)
SEEDS = (1, 2, 3)
# after the history weeks 0-1: anomalies in weeks 2, 5 and 8 (Monday to Saturday), the
# rest clean. Anomalous weeks are three weeks apart, so no bucket's history of the same
# weekday holds more than one of them: anomalies are rare in a product worth watching.
ANOMALY_WEEKS = (2, 5, 8)
CLEAN_WEEKS = (3, 4, 6, 7, 9)


@dataclass(frozen=True)
class Anomaly:
    series: str  # the series' id, e.g. "views#2"
    kind: str  # drop | spike | level_shift | stop | drift
    size: float  # the factor (drops < 1, spikes > 1); the drift's final factor
    start: int  # bucket index
    length: int  # buckets
    expected: float  # the series' noiseless value at the start (a count's mean)
    count: bool = True

    @property
    def change(self) -> float:
        """How far the anomaly moves its first bucket from the expected value, in counts."""
        return abs(self.expected * (1 - self.size)) if self.kind != "drift" else 0.0

    @property
    def label(self) -> str:
        if self.kind == "drop":
            return f"drop {round((1 - self.size) * 100)}%"
        if self.kind == "spike":
            return f"spike x{self.size:g}"
        return self.kind.replace("_", " ")


def daily_curve(hours: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Activity by UTC hour for a UTC+3 audience; weekends start an hour later."""
    local = (hours + 3 - weekend) % 24
    bumps = ((9.0, 1.5, 0.45), (13.5, 2.0, 0.55), (20.5, 2.2, 1.0))
    curve = np.full_like(local, 0.12)
    for centre, width, height in bumps:
        distance = np.minimum(abs(local - centre), 24 - abs(local - centre))
        curve += height * np.exp(-0.5 * (distance / width) ** 2)
    return curve / curve.mean()


def evaluation_set(seed: int) -> tuple[dict[str, np.ndarray], list[Anomaly]]:
    """The series of one seed (value per bucket; NaN = no data) and its anomalies."""
    rng = np.random.default_rng(seed)
    n = DAYS * PER_DAY
    index = np.arange(n)
    day = index // PER_DAY
    weekend = ((day % 7) >= 5).astype(float)
    hours = (index % PER_DAY) / 4.0
    shape = daily_curve(hours, weekend) * (1 + 0.25 * weekend)
    level = np.exp(rng.normal(0, 0.03, DAYS))[day]  # day-to-day level noise
    factors: dict[str, np.ndarray] = {}
    anomalies: list[Anomaly] = []
    for name, kind, _ in SERIES:
        sid = f"{name}#{seed}"
        factor = np.ones(n)
        mean = next(m for n, _, m in SERIES if n == name)
        for week in ANOMALY_WEEKS:
            for anomaly in _week_anomalies(rng, sid, kind, week, mean * shape * level):
                anomalies.append(anomaly)
                span = slice(anomaly.start, anomaly.start + anomaly.length)
                if anomaly.kind == "drift":
                    factor[span] *= np.linspace(1, anomaly.size, anomaly.length)
                else:
                    factor[span] *= anomaly.size
        factors[sid] = factor
    series: dict[str, np.ndarray] = {}
    for name, kind, mean in SERIES:
        sid = f"{name}#{seed}"
        if kind == "count":
            series[sid] = rng.poisson(mean * shape * level * factors[sid]).astype(float)
        else:  # a ratio of two counts: likes over views (no views: no data)
            views = rng.poisson(3000 * shape * level * np.where(factors[sid] == 0, 0, 1))
            likes = rng.binomial(views, np.clip(mean * factors[sid], 0, 1))
            with np.errstate(invalid="ignore", divide="ignore"):
                series[sid] = np.where(views > 0, likes / np.maximum(views, 1), np.nan)
    return series, anomalies


def _week_anomalies(rng, sid: str, kind: str, week: int, means: np.ndarray) -> list[Anomaly]:
    """Six anomalies a week, one a day from Monday to Saturday, at a random daytime
    bucket (10:00-18:00 UTC); Sunday is left quiet before the next, clean week."""
    kinds = ["drop", "spike", "level_shift", "stop", "drift", "drop"]
    if kind == "ratio":
        kinds = ["drop", "spike", "level_shift", "drift", "drop", "spike"]
    rng.shuffle(kinds)
    found = []
    for weekday, what in enumerate(kinds):
        start = (week * 7 + weekday) * PER_DAY + int(rng.integers(40, 72))
        if what == "drop":
            size, length = float(rng.choice([0.1, 0.3, 0.5, 0.7])), int(rng.integers(2, 9))
        elif what == "spike":
            size, length = float(rng.choice([2.0, 3.0, 5.0])), int(rng.integers(1, 5))
        elif what == "level_shift":
            size = float(rng.choice([0.6, 1.6]))
            length = PER_DAY - start % PER_DAY
        elif what == "stop":
            size, length = 0.0, int(rng.integers(8, 17))
        else:
            size, length = 0.5, 16
        found.append(Anomaly(sid, what, size, start, length, float(means[start]), kind == "count"))
    return found


# --------------------------------------------------------------------------- the engine


def load(resource, seeds=SEEDS) -> tuple[dict[str, np.ndarray], list[Anomaly]]:
    """Every seed's series into one table (one partition a series; a ratio's no-data
    buckets have no row, as a mart without events would)."""
    import pandas as pd

    frames, anomalies, values = [], [], {}
    times = pd.date_range(START, periods=DAYS * PER_DAY, freq="15min", tz="UTC")
    for seed in seeds:
        series, found = evaluation_set(seed)
        anomalies += found
        for sid, value in series.items():
            values[sid] = value
            keep = ~np.isnan(value)
            frames.append(pd.DataFrame({"sid": sid, "ts": times[keep], "v": value[keep]}))
    frame = pd.concat(frames, ignore_index=True)
    with resource.client("alerts bench: load") as client:
        client.command(f"DROP TABLE IF EXISTS {TABLE}")
        client.command(
            f"CREATE TABLE {TABLE} (sid String, ts DateTime('UTC'), v Float64)"
            " ENGINE = MergeTree ORDER BY (sid, ts)"
        )
        client.insert_df(TABLE.split(".")[1], frame)
    return values, anomalies


def judge(resource, rule, kind: str) -> dict[str, np.ndarray]:
    """Breach per bucket of every series of `kind`, each judged as at its end."""
    from signalbox.checks.iqr import Metric, parse_rows
    from signalbox.checks.rules import IqrQuery
    from signalbox.checks.sql import clickhouse_iqr_sql

    query = IqrQuery(TABLE, "ts", (Metric("v", kind),), BUCKET, rule, partition_column="sid")
    end = START + DAYS * timedelta(days=1)
    sql = clickhouse_iqr_sql(query, end, timedelta(days=DAYS))
    with resource.client("alerts bench: judge") as client:
        result = client.query(sql, settings={"max_execution_time": 600})
        points = parse_rows(query.names, result.column_names, result.result_rows)["v"]
    breaches: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(DAYS * PER_DAY, bool))
    step = int(BUCKET.total_seconds())
    origin = int(START.timestamp())
    for point in points:
        if point.breach:
            breaches[point.partition][(int(point.bucket_start.timestamp()) - origin) // step] = True
    return breaches


# --------------------------------------------------------------------------- scoring


@dataclass
class Score:
    recall: dict[str, tuple[int, int]]  # label -> (caught, total)
    delays: list[int]
    false_alarms: int
    clean_metric_weeks: int
    false_buckets: int

    @property
    def false_per_week(self) -> float:
        return self.false_alarms / self.clean_metric_weeks


def score(
    breaches: dict[str, np.ndarray], anomalies: list[Anomaly], sids: list[str], guard: float
) -> Score:
    """Recall per type of the anomalies a rule can see: a count anomaly that moves its
    series by less than `guard` (the default rule's minimum volume) is scored apart, as
    "under the volume guard", for every rule alike."""
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    delays = []
    for anomaly in anomalies:
        if anomaly.series not in sids:
            continue
        if anomaly.count and anomaly.kind != "drift" and anomaly.change < guard:
            hits = breaches[anomaly.series][anomaly.start : anomaly.start + 3]
            recall["under the volume guard"][0] += bool(hits.any())
            recall["under the volume guard"][1] += 1
            continue
        hits = breaches[anomaly.series]
        window = hits[anomaly.start : anomaly.start + 3]  # within 2 buckets of the start
        caught = bool(window.any())
        for label in {anomaly.label, _group(anomaly)}:
            recall[label][0] += caught
            recall[label][1] += 1
        during = np.flatnonzero(hits[anomaly.start : anomaly.start + max(anomaly.length, 3)])
        if during.size:
            delays.append(int(during[0]))
    false_alarms = false_buckets = weeks = 0
    for sid in sids:
        for week in CLEAN_WEEKS:
            span = breaches[sid][week * 7 * PER_DAY : (week + 1) * 7 * PER_DAY]
            false_buckets += int(span.sum())
            false_alarms += int(np.sum(span[1:] & ~span[:-1]) + span[0])  # runs of breaches
            weeks += 1
    return Score(
        {k: (v[0], v[1]) for k, v in recall.items()}, delays, false_alarms, weeks, false_buckets
    )


def _group(anomaly: Anomaly) -> str:
    """The goal's groups: drops of 50% or more, spikes of 2x or more, full stops."""
    if anomaly.kind == "drop":
        return "drops >=50%" if anomaly.size <= 0.5 else "drops <50%"
    if anomaly.kind == "spike":
        return "spikes >=2x"
    return "all " + anomaly.label


# --------------------------------------------------------------------------- the report


def rules():
    """The seed's rule (the anchor), the default and the variants measured beside it."""
    from signalbox.checks.rules import IqrRule
    from signalbox.domains.user_activity.checks import DEFAULT_RULE

    return {
        "seed (n=5, a=3)": IqrRule(),
        "seed, smoothed bounds": IqrRule(smooth_bounds=True),
        "default: weekly k=3": DEFAULT_RULE,
        "daily k=7": replace(DEFAULT_RULE, period=timedelta(days=1), k=7),
        "weekly, no level ratio": replace(DEFAULT_RULE, level_buckets=0),
        "weekly, Poisson x1.0": replace(DEFAULT_RULE, count_noise=1.0),
        "weekly, no volume guard": replace(DEFAULT_RULE, min_volume=0.0),
    }


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signalbox-bench-alerts-", dir="/tmp"))
    os.environ["SIGNALBOX_HOME"] = str(home)
    try:
        run(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path) -> None:
    from signalbox.domains.user_activity.checks import DEFAULT_RULE
    from signalbox.platform.clickhouse import ClickHouseResource

    resource = ClickHouseResource(database=DATABASE)
    with resource.client("alerts bench"):  # keep the engine up for every query
        started = time.perf_counter()
        _, anomalies = load(resource)
        loaded = time.perf_counter() - started
        print(f"evaluation set: {len(anomalies)} anomalies, loaded in {loaded:.1f}s")
        kinds = {f"{name}#{seed}": kind for name, kind, _ in SERIES for seed in SEEDS}
        table: dict[str, Score] = {}
        for name, rule in rules().items():
            started = time.perf_counter()
            breaches = {}
            for kind in ("count", "ratio"):
                sids = [s for s, k in kinds.items() if k == kind]
                judged = judge(resource, rule, kind)
                breaches.update({sid: judged[sid] for sid in sids})
            table[name] = score(breaches, anomalies, list(kinds), DEFAULT_RULE.min_volume)
            seconds = time.perf_counter() - started
            print(f"  {name}: judged {DAYS} days x {len(kinds)} series in {seconds:.1f}s")
    print_table(table)
    check_run_time(resource)
    default = table["default: weekly k=3"]
    seed = table["seed (n=5, a=3)"]
    for group in ("drops >=50%", "spikes >=2x", "all stop"):
        caught, total = default.recall[group]
        slug = group.replace(" ", "_").replace(">=", "ge").replace("%", "pct")
        report(f"alerts.default_recall_{slug}", caught / total, ">=0.9")
    report("alerts.default_false_alarms_per_metric_week", default.false_per_week, "<=1")
    report("alerts.default_median_delay_buckets", float(np.median(default.delays)), "<=2")
    report("alerts.seed_false_alarms_per_metric_week", seed.false_per_week)
    caught, total = seed.recall["drops >=50%"]
    report("alerts.seed_recall_drops_ge50pct", caught / total)
    print(f"default rule: {DEFAULT_RULE.describe()}")


CHECK_DAYS = 90


def check_run_time(resource, repeats: int = 5) -> None:
    """What one run of the activity checks costs: the query every 15 minutes (all six
    metrics, the latest bucket judged and the last day banded for the chart, as the check
    runs it) on a table like `activity_metrics_15min` holding 90 days; median of
    `repeats`, the seed's rule first as the baseline."""
    import pandas as pd

    from signalbox.checks.iqr import IqrRule, evaluate, parse_rows
    from signalbox.checks.rules import IqrQuery
    from signalbox.checks.sql import clickhouse_iqr_sql
    from signalbox.domains.user_activity.checks import ACTIVITY_IQR, DEFAULT_RULE

    rng = np.random.default_rng(90)
    n = CHECK_DAYS * PER_DAY
    times = pd.date_range(START, periods=n, freq="15min", tz="UTC")
    hours = times.hour.to_numpy() + times.minute.to_numpy() / 60
    curve = 1.0 + 0.8 * np.sin((hours - 12) / 24 * 2 * np.pi)
    frame = pd.DataFrame({"bucket_start": times})
    for metric in ACTIVITY_IQR.metrics:
        if metric.kind == "ratio":
            frame[metric.name] = 0.2 * curve * rng.normal(1, 0.02, n)
        else:
            frame[metric.name] = rng.poisson(1000.0 * curve)
    table = f"{DATABASE}.metrics_90d"
    with resource.client("alerts bench: check runs") as client:
        client.command(f"DROP TABLE IF EXISTS {table}")
        columns = ", ".join(
            f"{m.name} Float64" if m.kind == "ratio" else f"{m.name} UInt64"
            for m in ACTIVITY_IQR.metrics
        )
        client.command(
            f"CREATE TABLE {table} (bucket_start DateTime('UTC'), {columns})"
            " ENGINE = MergeTree ORDER BY bucket_start"
        )
        client.insert_df(table.split(".")[1], frame)
        now = START + timedelta(days=CHECK_DAYS) - timedelta(minutes=3)
        seconds = {}
        for name, rule in (("seed", IqrRule()), ("default", DEFAULT_RULE)):
            query = IqrQuery(table, "bucket_start", ACTIVITY_IQR.metrics, BUCKET, rule)
            sql = clickhouse_iqr_sql(query, now, ACTIVITY_IQR.history, ACTIVITY_IQR.lag)
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                result = client.query(sql)
                points = parse_rows(query.names, result.column_names, result.result_rows)
                outcomes = [evaluate(m, points[m]) for m in query.names]
                runs.append(time.perf_counter() - started)
            assert all(o.status for o in outcomes)
            seconds[name] = float(np.median(runs))
    print(
        f"one run of the activity checks ({len(ACTIVITY_IQR.metrics)} metrics, {CHECK_DAYS}"
        f" days stored): seed {seconds['seed']:.3f}s, default {seconds['default']:.3f}s"
    )
    report("alerts.check_run_seconds_90d_6_metrics", seconds["default"], "<1", unit="")
    report("alerts.check_run_default_vs_seed", seconds["default"] / seconds["seed"])


def print_table(table: dict[str, Score]) -> None:
    labels = sorted({label for s in table.values() for label in s.recall}, key=_order)
    names = list(table)
    width = max(len(label) for label in labels) + 2
    print("\n" + "recall (within 2 buckets)".ljust(width) + "".join(f"{n[:24]:>26}" for n in names))
    for label in labels:
        cells = []
        for name in names:
            caught, total = table[name].recall.get(label, (0, 0))
            cells.append(f"{caught / total:.2f} ({caught}/{total})" if total else "-")
        print(label.ljust(width) + "".join(f"{c:>26}" for c in cells))
    print(
        "false alarms / metric-week".ljust(width)
        + "".join(f"{table[n].false_per_week:>26.2f}" for n in names)
    )
    print(
        "false breached buckets".ljust(width)
        + "".join(f"{table[n].false_buckets:>26}" for n in names)
    )
    print(
        "median delay (buckets)".ljust(width)
        + "".join(
            f"{np.median(table[n].delays) if table[n].delays else float('nan'):>26.1f}"
            for n in names
        )
    )
    print()


def _order(label: str) -> tuple[int, str]:
    order = ("drops >=50%", "spikes >=2x", "all stop", "drops <50%")
    return (order.index(label), label) if label in order else (len(order), label)


if __name__ == "__main__":
    main()
