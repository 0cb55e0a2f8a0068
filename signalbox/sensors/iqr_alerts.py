"""Telegram alerts for IQR check breaches: one alert per breach episode, a reminder only
after a cooldown, and a short recovery message when the metric is back inside its band.

The sensor reads the latest IQR check evaluations from the Dagster instance, never from
the engines (chDB admits one process at a time, and the check metadata already carries
the value, band and last day of buckets the message and its chart need). What to send
is decided by pure functions of (state, latest readings, now); the state is the sensor
cursor (JSON), advanced only for what was actually sent, so ticks and restarts never
repeat an alert and a failed send is retried on the next tick. The sensor launches no
runs and writes nothing but its cursor: an alert that fails never touches the data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from signalbox.checks.iqr import (
    BREACH,
    INSIDE,
    SeriesPoint,
    metadata_values,
    series_from_metadata,
)
from signalbox.platform.charts import BandPanel, band_chart, format_number
from signalbox.platform.dashboards import (
    DASHBOARD_URL_ENV,
    DEFAULT_DASHBOARD_URL,
    dashboard_link,
)
from signalbox.platform.telegram import html_escape
from signalbox.sensors.chat import chat_sensor

log = logging.getLogger(__name__)

TIMEZONE_ENV = "SIGNALBOX_ALERT_TIMEZONE"
REPORT_TIMEZONE_ENV = "SIGNALBOX_REPORT_TIMEZONE"  # the fallback: one zone for both
COOLDOWN_ENV = "SIGNALBOX_ALERT_COOLDOWN_MINUTES"
DEFAULT_TIMEZONE = "Europe/Moscow"
CURSOR_VERSION = 1
CLOSED_MEMORY = timedelta(days=7)  # how long a recovered episode's bucket is remembered


class AlertConfigError(ValueError):
    """A setting of the alert sensor that cannot work; names the variable."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts point and how often they repeat: from the environment at each tick."""

    timezone: str = DEFAULT_TIMEZONE
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    cooldown: timedelta = timedelta(minutes=60)
    max_charts: int = 4  # band panels in one alert's PNG
    send_budget_seconds: float = 30.0  # later notices wait for the next tick

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise AlertConfigError(
                f"{TIMEZONE_ENV}: unknown time zone {self.timezone!r} (e.g. Europe/Moscow)"
            ) from exc
        if self.cooldown < timedelta(0):
            raise AlertConfigError(f"{COOLDOWN_ENV} must be >= 0, got {self.cooldown}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        zone = env.get(TIMEZONE_ENV) or env.get(REPORT_TIMEZONE_ENV)
        if zone:
            fields["timezone"] = zone.strip()
        if env.get(DASHBOARD_URL_ENV):
            fields["dashboard_url"] = env[DASHBOARD_URL_ENV].strip()
        if env.get(COOLDOWN_ENV):
            try:
                fields["cooldown"] = timedelta(minutes=float(env[COOLDOWN_ENV]))
            except ValueError as exc:
                raise AlertConfigError(
                    f"{COOLDOWN_ENV} must be a number of minutes, got {env[COOLDOWN_ENV]!r}"
                ) from exc
        return cls(**fields)

    def link(
        self,
        asset_key: dg.AssetKey,
        checks: str | Sequence[str] = (),
        window: tuple[datetime, datetime] | None = None,
    ) -> str:
        return dashboard_link(self.dashboard_url, asset_key, checks, window)


# --------------------------------------------------------------------------- readings


@dataclass(frozen=True)
class Breach:
    """One partition outside its band (partition "" for a check without partitions)."""

    partition: str
    value: float | None
    lower: float | None
    upper: float | None
    distance_outside: float | None
    deviation_pct: float | None


@dataclass(frozen=True)
class CheckReading:
    """The latest evaluation of one IQR check, parsed from its metadata."""

    asset_key: dg.AssetKey
    check_name: str
    status: str  # breach | inside | not_judged | no_data
    metric: str
    bucket_start: datetime | None
    bucket_seconds: int
    rule: str = ""
    kind: str = "count"  # count | ratio: a count's band never shows below 0
    partition_column: str | None = None
    partition: str = ""  # the headline partition
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    breaches: tuple[Breach, ...] = ()
    series: Mapping[str, Sequence[SeriesPoint]] = field(default_factory=dict)

    @property
    def check_id(self) -> str:
        return f"{self.asset_key.to_user_string()}:{self.check_name}"

    @property
    def bucket_ts(self) -> int | None:
        return None if self.bucket_start is None else int(self.bucket_start.timestamp())

    @classmethod
    def from_evaluation(cls, evaluation: dg.AssetCheckEvaluation) -> CheckReading | None:
        """None when the evaluation is not an IQR check's (no `status`/`metric`)."""
        meta = metadata_values(evaluation.metadata)
        status, metric = meta.get("status"), meta.get("metric")
        if not isinstance(status, str) or not isinstance(metric, str):
            return None
        started = meta.get("bucket_start")
        bucket_start = datetime.fromtimestamp(float(started), UTC) if started is not None else None
        partition_column = meta.get("partition_column") or None
        if status == BREACH and partition_column:
            breaches = tuple(
                Breach(
                    partition=str(item.get("partition", "")),
                    value=item.get("value"),
                    lower=item.get("lower"),
                    upper=item.get("upper"),
                    distance_outside=item.get("distance_outside"),
                    deviation_pct=item.get("deviation_pct"),
                )
                for item in meta.get("breaches") or []
            )
        elif status == BREACH:
            breaches = (
                Breach(
                    partition="",
                    value=meta.get("value"),
                    lower=meta.get("lower"),
                    upper=meta.get("upper"),
                    distance_outside=meta.get("distance_outside"),
                    deviation_pct=meta.get("deviation_pct"),
                ),
            )
        else:
            breaches = ()
        return cls(
            asset_key=evaluation.asset_key,
            check_name=evaluation.check_name,
            status=status,
            metric=metric,
            bucket_start=bucket_start,
            bucket_seconds=int(meta.get("bucket_seconds") or 0),
            rule=str(meta.get("rule") or ""),
            kind=str(meta.get("metric_kind") or "count"),
            partition_column=partition_column,
            partition=str(meta.get("partition") or ""),
            value=meta.get("value"),
            lower=meta.get("lower"),
            upper=meta.get("upper"),
            breaches=breaches,
            series=series_from_metadata(meta.get("series")),
        )


def read_latest(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]
) -> list[CheckReading]:
    """The latest evaluation of each check, from the instance's event log. A check that
    is running (planned) or crashed (no evaluation) keeps its previous evaluation."""
    readings = []
    for key in check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
        for record in records:
            event = record.event
            dagster_event = event.dagster_event if event else None
            if (
                dagster_event is None
                or dagster_event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ):
                continue
            reading = CheckReading.from_evaluation(dagster_event.event_specific_data)
            if reading is not None:
                readings.append(reading)
            break
    return readings


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Episode:
    """A breach of one check (and partition) from its first alert to its recovery."""

    check_id: str
    partition: str
    first_bucket: int  # epoch seconds of the first breached bucket alerted
    last_bucket: int  # epoch seconds of the latest breached bucket alerted
    alerted_at: float  # epoch seconds the latest alert was sent
    alerts: int = 1


def episode_key(check_id: str, partition: str) -> str:
    return f"{check_id}|{partition}"


@dataclass(frozen=True)
class AlertState:
    """Open episodes, and the bucket each recently closed one recovered at (a breach
    reading not newer than that is stale and never reopens it). The sensor cursor."""

    episodes: Mapping[str, Episode] = field(default_factory=dict)
    closed: Mapping[str, int] = field(default_factory=dict)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "episodes": {
                    key: {
                        "check": e.check_id,
                        "partition": e.partition,
                        "first_bucket": e.first_bucket,
                        "last_bucket": e.last_bucket,
                        "alerted_at": e.alerted_at,
                        "alerts": e.alerts,
                    }
                    for key, e in sorted(self.episodes.items())
                },
                "closed": dict(sorted(self.closed.items())),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_cursor(cls, cursor: str | None) -> AlertState:
        """An empty state for no cursor; an unreadable or older-version cursor is dropped
        with a warning (at worst an open episode is alerted once more)."""
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            episodes = {
                key: Episode(
                    check_id=str(e["check"]),
                    partition=str(e["partition"]),
                    first_bucket=int(e["first_bucket"]),
                    last_bucket=int(e["last_bucket"]),
                    alerted_at=float(e["alerted_at"]),
                    alerts=int(e.get("alerts", 1)),
                )
                for key, e in data.get("episodes", {}).items()
            }
            closed = {str(k): int(v) for k, v in data.get("closed", {}).items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("iqr alerts: ignoring unreadable sensor cursor (%s)", exc)
            return cls()
        return cls(episodes, closed)

    def pruned(self, now: datetime) -> AlertState:
        horizon = now.timestamp() - CLOSED_MEMORY.total_seconds()
        closed = {k: v for k, v in self.closed.items() if v >= horizon}
        return replace(self, closed=closed)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class AlertItem:
    """One partition of one check to announce as outside its band."""

    reading: CheckReading
    breach: Breach
    episode: Episode  # as it is once this alert is sent
    reminder: bool = False


@dataclass(frozen=True)
class RecoveryItem:
    """One open episode whose check (partition) is judged inside its band again."""

    reading: CheckReading
    episode: Episode  # the episode being closed


@dataclass(frozen=True)
class Notice:
    """One Telegram message: every alert (or every recovery) of one bucket."""

    kind: Literal["alert", "recovery"]
    bucket_start: datetime
    items: tuple[AlertItem, ...] | tuple[RecoveryItem, ...]


@dataclass(frozen=True)
class Decision:
    notices: list[Notice]
    state: AlertState  # the state once every notice is sent


def decide(
    state: AlertState, readings: Sequence[CheckReading], now: datetime, cooldown: timedelta
) -> Decision:
    """What to send for the latest readings, given what was sent before.

    - a breach with no open episode opens one and is announced (unless its bucket is not
      newer than the bucket the same episode last recovered at: a stale reading);
    - an open episode is announced again only when a newer bucket still breaches and the
      cooldown since its last alert has passed;
    - a judged reading inside the band (for a partitioned check: a newer judgement that
      no longer lists the partition) closes the episode with a recovery message;
    - readings without judgement (short history, no data) change nothing.
    Alerts (and recoveries) of the same bucket share one message."""
    alerts: dict[int, list[AlertItem]] = {}
    recoveries: dict[int, list[RecoveryItem]] = {}
    stamp = now.timestamp()
    for reading in readings:
        bucket = reading.bucket_ts
        if bucket is None or reading.status not in (BREACH, INSIDE):
            continue
        breached = {b.partition: b for b in reading.breaches} if reading.status == BREACH else {}
        for partition, breach in sorted(breached.items()):
            key = episode_key(reading.check_id, partition)
            episode = state.episodes.get(key)
            if episode is None:
                if state.closed.get(key, -1) >= bucket:
                    continue
                opened = Episode(reading.check_id, partition, bucket, bucket, stamp)
                alerts.setdefault(bucket, []).append(AlertItem(reading, breach, opened))
            elif bucket > episode.last_bucket and (
                stamp - episode.alerted_at >= cooldown.total_seconds()
            ):
                again = replace(
                    episode, last_bucket=bucket, alerted_at=stamp, alerts=episode.alerts + 1
                )
                alerts.setdefault(bucket, []).append(
                    AlertItem(reading, breach, again, reminder=True)
                )
        for episode in state.episodes.values():
            if episode.check_id != reading.check_id or episode.partition in breached:
                continue
            # a partitioned check that breaches elsewhere says nothing of a partition it
            # does not list until a newer bucket; an `inside` reading judged them all
            if reading.status == BREACH and bucket <= episode.last_bucket:
                continue
            recoveries.setdefault(bucket, []).append(RecoveryItem(reading, episode))
    notices = [
        Notice("alert", datetime.fromtimestamp(b, UTC), tuple(_sorted_items(items)))
        for b, items in sorted(alerts.items())
    ] + [
        Notice("recovery", datetime.fromtimestamp(b, UTC), tuple(_sorted_items(items)))
        for b, items in sorted(recoveries.items())
    ]
    final = state
    for notice in notices:
        final = apply_notice(final, notice)
    return Decision(notices, final)


def _sorted_items(items: list) -> list:
    return sorted(items, key=lambda item: (item.reading.check_id, item.episode.partition))


def apply_notice(state: AlertState, notice: Notice) -> AlertState:
    """The state once `notice` has been sent."""
    episodes, closed = dict(state.episodes), dict(state.closed)
    for item in notice.items:
        key = episode_key(item.episode.check_id, item.episode.partition)
        if isinstance(item, AlertItem):
            episodes[key] = item.episode
            closed.pop(key, None)
        else:
            episodes.pop(key, None)
            closed[key] = int(notice.bucket_start.timestamp())
    return AlertState(episodes, closed)


# --------------------------------------------------------------------------- messages


def _when(start: datetime, seconds: int, zone: ZoneInfo) -> str:
    local = start.astimezone(zone)
    end = (start + timedelta(seconds=seconds)).astimezone(zone) if seconds else None
    span = f"{local:%d.%m.%Y %H:%M}" + (f"–{end:%H:%M}" if end else "")
    return f"{span} {local:%Z}"


def _time(ts: int, zone: ZoneInfo) -> str:
    return f"{datetime.fromtimestamp(ts, UTC).astimezone(zone):%d.%m %H:%M}"


def _is_percent(metric: str) -> bool:
    return metric in {"ctr"} or metric.endswith(("_rate", "_ratio", "_share"))


def _label(reading: CheckReading, partition: str) -> str:
    name = f"<b>{html_escape(reading.metric)}</b>"
    if reading.partition_column:
        name += f" ({html_escape(reading.partition_column)} {html_escape(partition)})"
    return name


def _fmt(reading: CheckReading, value: float | None) -> str:
    return format_number(value, percent=_is_percent(reading.metric))


def _floor(reading: CheckReading, lower: float | None) -> float | None:
    """A count's lower bound as shown: never below 0 (the band's maths may be)."""
    if lower is None or reading.kind != "count":
        return lower
    return max(lower, 0.0)


def render_notice(notice: Notice, settings: AlertSettings) -> str:
    """The HTML text of one message (Telegram's HTML subset; every value escaped)."""
    zone = ZoneInfo(settings.timezone)
    seconds = max(item.reading.bucket_seconds for item in notice.items)
    bucket = timedelta(seconds=seconds)
    when = _when(notice.bucket_start, seconds, zone)
    lines = []
    if notice.kind == "alert":
        lines.append(f"🚨 <b>Anomaly</b> · {html_escape(when)}")
        for item in notice.items:
            lines.append(_alert_line(item, zone))
    else:
        lines.append(f"✅ <b>Back inside the band</b> · {html_escape(when)}")
        for item in notice.items:
            lines.append(_recovery_line(item, zone))
    rules = sorted({(item.reading.asset_key, item.reading.rule) for item in notice.items})
    footer = []
    for asset_key, rule in rules:
        checks = [i.reading.check_name for i in notice.items if i.reading.asset_key == asset_key]
        # the day before the bucket and the bucket itself, on the dashboard
        window = (notice.bucket_start - timedelta(days=1), notice.bucket_start + 2 * bucket)
        href = html_escape(settings.link(asset_key, checks, window), quote=True)
        footer.append(
            f'<a href="{href}">{html_escape(asset_key.to_user_string())}</a>'
            + (f" · {html_escape(rule)}" if rule else "")
        )
    lines.append("")
    lines.extend(footer)
    return "\n".join(lines)


def _alert_line(item: AlertItem, zone: ZoneInfo) -> str:
    r, b = item.reading, item.breach
    side = "below" if b.value is not None and b.lower is not None and b.value < b.lower else "above"
    band = f"{_fmt(r, _floor(r, b.lower))} … {_fmt(r, b.upper)}"
    line = (
        f"• {_label(r, b.partition)} = {_fmt(r, b.value)}: expected {band}, "
        f"{_fmt(r, b.distance_outside)} {side} the band"
    )
    if b.deviation_pct is not None:
        line += f"; {b.deviation_pct:+.1f}% vs the previous bucket"
    if item.reminder:
        line += (
            f"\n  still outside since {_time(item.episode.first_bucket, zone)}"
            f" (reminder {item.episode.alerts - 1})"
        )
    return line


def _recovery_line(item: RecoveryItem, zone: ZoneInfo) -> str:
    r, episode = item.reading, item.episode
    since = f"outside since {_time(episode.first_bucket, zone)}"
    if r.status == INSIDE and r.partition == episode.partition and r.value is not None:
        band = f"{_fmt(r, _floor(r, r.lower))} … {_fmt(r, r.upper)}"
        return f"• {_label(r, episode.partition)} = {_fmt(r, r.value)}, band {band} ({since})"
    return f"• {_label(r, episode.partition)}: no longer outside the band ({since})"


def notice_chart(notice: Notice, settings: AlertSettings) -> bytes | None:
    """One PNG with a band panel per alerted series that has its last day in the check
    metadata (at most `max_charts`); None when there is nothing to draw."""
    if notice.kind != "alert":
        return None
    panels = []
    for item in notice.items:
        points = item.reading.series.get(item.breach.partition)
        if not points:
            continue
        title = f"{item.reading.metric} · {item.reading.asset_key.to_user_string()}"
        if item.reading.partition_column:
            title += f" · {item.reading.partition_column} {item.breach.partition}"
        panels.append(
            BandPanel(
                title=title,
                times=[p.bucket_start for p in points],
                values=[p.value for p in points],
                lower=[_floor(item.reading, p.lower) for p in points],
                upper=[p.upper for p in points],
                breach_at=notice.bucket_start,
                percent=_is_percent(item.reading.metric),
            )
        )
        if len(panels) >= settings.max_charts:
            break
    if not panels:
        return None
    return band_chart(panels, title="Outside the expected band", timezone=settings.timezone)


def send_notice(telegram: Any, notice: Notice, settings: AlertSettings, logger: Any = log):
    """Send one notice (a photo with the text as its caption when there is a chart);
    the message ids. Errors propagate: the caller keeps the episode unsent."""
    text = render_notice(notice, settings)
    try:
        png = notice_chart(notice, settings)
    except Exception as exc:  # a chart must never cost the alert itself
        logger.warning(f"iqr alerts: chart failed, sending text only: {exc!r}")
        png = None
    if png is not None:
        return telegram.send_photo(png, text)
    return telegram.send_message(text)


# --------------------------------------------------------------------------- the sensor


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AlertTick:
    cursor: str  # the state after what was sent
    sent: list[Notice]
    unsent: list[Notice]  # left for the next tick (failed, or over the time budget)

    @property
    def summary(self) -> str:
        if not self.sent and not self.unsent:
            return "no new breach or recovery"
        text = f"{len(self.sent)} message(s) sent"
        return text + (f", {len(self.unsent)} left for the next tick" if self.unsent else "")


def send_alerts(
    instance: dg.DagsterInstance,
    telegram: Any,
    cursor: str | None,
    *,
    check_keys: Sequence[dg.AssetCheckKey],
    settings: AlertSettings | None = None,
    now: datetime | None = None,
    logger: Any = log,
) -> AlertTick:
    """One tick: read the latest evaluations, send what is due, return the new cursor.

    The sensor's body, callable on its own (e.g. by `signalbox demo --once` right after
    its runs). The first send that fails stops the tick: it and the rest wait for the
    next tick, and the cursor only records what was sent."""
    chosen = settings or AlertSettings.from_env()
    moment = now or _utc_now()
    state = AlertState.from_cursor(cursor)
    decision = decide(state, read_latest(instance, check_keys), moment, chosen.cooldown)
    started, sent, unsent = time.monotonic(), [], []
    for notice in decision.notices:
        if unsent or time.monotonic() - started > chosen.send_budget_seconds:
            unsent.append(notice)
            continue
        what = (
            f"{notice.kind} for {len(notice.items)} series"
            f" at {notice.bucket_start:%Y-%m-%d %H:%M} UTC"
        )
        try:
            ids = send_notice(telegram, notice, chosen, logger)
        except Exception as exc:  # retried next tick: the cursor keeps it unsent
            logger.error(f"iqr alerts: could not send the {what}: {exc}")
            unsent.append(notice)
            continue
        logger.info(f"iqr alerts: sent the {what} (message ids {ids})")
        state = apply_notice(state, notice)
        sent.append(notice)
    return AlertTick(state.pruned(moment).to_cursor(), sent, unsent)


def build_iqr_alert_sensor(
    check_keys: Sequence[dg.AssetCheckKey],
    *,
    name: str = "iqr_alert_sensor",
    minimum_interval_seconds: int = 60,
    settings: AlertSettings | None = None,
    clock: Callable[[], datetime] = _utc_now,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A sensor sending Telegram alerts for `check_keys` (resource `telegram`).

    `settings` None reads AlertSettings from the environment at every tick."""
    keys = tuple(check_keys)

    def tick(instance, telegram, cursor, logger) -> tuple[str, str]:
        result = send_alerts(
            instance,
            telegram,
            cursor,
            check_keys=keys,
            settings=settings,
            now=clock(),
            logger=logger,
        )
        return result.cursor, result.summary

    return chat_sensor(
        tick,
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Telegram alert per IQR breach episode (metric, value, band, chart, dashboard "
            "link), a reminder after the cooldown, a recovery message when back inside."
        ),
    )
