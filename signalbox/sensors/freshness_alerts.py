"""Telegram alerts for silent sources: "no data" when a raw asset misses its
`FreshnessPolicy`, and one "data again" message when it is updated.

Silence is a signal (Prometheus' `absent()`): a source that stops sends no bad number to
any band, so every raw asset declares how fresh it should be, as Dagster's own
`FreshnessPolicy` (the UI shows it and the freshness daemon tracks it), and this sensor
judges the same policy on the asset's *data* time: the latest materialization's
`dagster/last_updated_timestamp` when it carries one (user actions land on a clock, so
their materialization says nothing of whether the source sent anything: they report the
newest event), else the materialization's own time. Never materialized is not silent.

Like the IQR alerts, the decisions are pure functions of (cursor, readings, now); the
cursor records only what was sent, so a tick that fails to send retries on the next one
and restarts never repeat an alert. The sensor launches no runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import get_latest_completed_cron_tick

from signalbox.platform.telegram import html_escape
from signalbox.sensors.chat import chat_sensor
from signalbox.sensors.iqr_alerts import AlertSettings

log = logging.getLogger(__name__)

LAST_UPDATED = "dagster/last_updated_timestamp"
CURSOR_VERSION = 1
FRESH, STALE, UNKNOWN = "fresh", "stale", "unknown"


@dataclass(frozen=True)
class Expectation:
    """One asset's freshness policy, as declared on its spec."""

    asset_key: dg.AssetKey
    policy: dg.FreshnessPolicy


def freshness_expectations(assets: Iterable[Any]) -> list[Expectation]:
    """Every asset (spec) among `assets` that declares a `FreshnessPolicy`."""
    found = {}
    for item in assets:
        specs = item.specs if isinstance(item, dg.AssetsDefinition) else [item]
        for spec in specs:
            policy = getattr(spec, "freshness_policy", None)
            if isinstance(policy, dg.FreshnessPolicy):
                found[spec.key] = Expectation(spec.key, policy)
    return [found[key] for key in sorted(found, key=lambda k: k.to_user_string())]


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Reading:
    """One asset judged against its policy at `now`."""

    asset_key: dg.AssetKey
    state: Literal["fresh", "stale", "unknown"]
    last_update: datetime | None  # when its data last changed (None: never materialized)
    due_after: datetime | None  # an update older than this is late
    expected: str  # the policy in words

    @property
    def key(self) -> str:
        return self.asset_key.to_user_string()


def _window(policy: dg.FreshnessPolicy, attribute: str) -> timedelta | None:
    value = getattr(policy, attribute, None)
    return value.to_timedelta() if value is not None else None


def judge(expectation: Expectation, last_update: datetime | None, now: datetime) -> Reading:
    """The policy's verdict on an update at `last_update` (the same rules as Dagster's
    freshness daemon: a time window counts back from now; a cron deadline looks at the
    window before its latest completed tick)."""
    policy = expectation.policy
    fail_window = _window(policy, "fail_window")
    if fail_window is not None:
        due_after = now - fail_window
        expected = f"new data at least every {duration(fail_window)}"
    else:
        zone = getattr(policy, "timezone", "UTC")
        cron = policy.deadline_cron  # type: ignore[attr-defined]
        tick = get_latest_completed_cron_tick(cron, now.astimezone(ZoneInfo(zone)), zone)
        opens = tick - policy.lower_bound_delta  # type: ignore[attr-defined]
        due_after = opens.astimezone(UTC)
        expected = f"an update between {opens:%H:%M} and {tick:%H:%M} {zone} every '{cron}'"
    if last_update is None:
        return Reading(expectation.asset_key, UNKNOWN, None, due_after, expected)
    state = FRESH if last_update >= due_after else STALE
    return Reading(expectation.asset_key, state, last_update, due_after, expected)


def last_update(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> datetime | None:
    """When the asset's data last changed: its latest materialization's
    `dagster/last_updated_timestamp`, else the materialization's time."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    stamp = record.timestamp
    materialization = record.asset_materialization
    value = materialization.metadata.get(LAST_UPDATED) if materialization else None
    if value is not None and isinstance(getattr(value, "value", None), int | float):
        stamp = float(value.value)
    return datetime.fromtimestamp(stamp, UTC)


def read_freshness(
    instance: dg.DagsterInstance, expectations: Sequence[Expectation], now: datetime
) -> list[Reading]:
    return [judge(e, last_update(instance, e.asset_key), now) for e in expectations]


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class SilenceState:
    """The assets announced as silent, with the update they were silent after (epoch
    seconds): the sensor cursor."""

    silent: Mapping[str, float] = field(default_factory=dict)

    def to_cursor(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, "silent": dict(sorted(self.silent.items()))})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> SilenceState:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            return cls({str(k): float(v) for k, v in data.get("silent", {}).items()})
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("freshness alerts: ignoring unreadable sensor cursor (%s)", exc)
            return cls()


@dataclass(frozen=True)
class Notice:
    kind: Literal["silent", "back"]
    readings: tuple[Reading, ...]
    since: Mapping[str, float] = field(default_factory=dict)  # back: silent after this update


def decide(state: SilenceState, readings: Sequence[Reading]) -> list[Notice]:
    """A stale asset not yet announced is announced once; an announced one with a newer
    update than the one it went silent after is announced back. Unknown changes nothing."""
    silent, back = [], []
    for reading in readings:
        announced = state.silent.get(reading.key)
        if reading.state == STALE and announced is None:
            silent.append(reading)
        elif (
            announced is not None
            and reading.last_update is not None
            and reading.last_update.timestamp() > announced
        ):
            back.append(reading)
    notices = []
    if silent:
        notices.append(Notice("silent", tuple(silent)))
    if back:
        notices.append(Notice("back", tuple(back), {r.key: state.silent[r.key] for r in back}))
    return notices


def apply_notice(state: SilenceState, notice: Notice) -> SilenceState:
    silent = dict(state.silent)
    for reading in notice.readings:
        if notice.kind == "silent":
            silent[reading.key] = reading.last_update.timestamp() if reading.last_update else 0.0
        else:
            silent.pop(reading.key, None)
    return SilenceState(silent)


# --------------------------------------------------------------------------- messages


def duration(span: timedelta) -> str:
    """A span for a person: '45 min', '5 h 5 min', '2 d 3 h'."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def render_notice(notice: Notice, settings: AlertSettings, now: datetime) -> str:
    zone = ZoneInfo(settings.timezone)
    local = now.astimezone(zone)
    lines = []
    if notice.kind == "silent":
        lines.append(f"🔇 <b>No data</b> · {local:%d.%m.%Y %H:%M %Z}")
    else:
        lines.append(f"✅ <b>Data again</b> · {local:%d.%m.%Y %H:%M %Z}")
    for reading in notice.readings:
        window = (now - timedelta(days=7), now)  # the week up to now, on the dashboard
        href = html_escape(settings.link(reading.asset_key, window=window), quote=True)
        name = f'<a href="{href}"><b>{html_escape(reading.key)}</b></a>'
        when = reading.last_update
        if notice.kind == "silent":
            newest = (
                f"newest data {when.astimezone(zone):%d.%m %H:%M} ({duration(now - when)} ago)"
                if when
                else "no data yet"
            )
            lines.append(f"• {name}: {newest}; expected {html_escape(reading.expected)}")
        else:
            since = datetime.fromtimestamp(notice.since[reading.key], UTC)
            gap = f", {duration(when - since)} after the previous" if when and since else ""
            lines.append(f"• {name}: new data {when.astimezone(zone):%d.%m %H:%M}{gap}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the sensor


@dataclass(frozen=True)
class FreshnessTick:
    cursor: str
    sent: list[Notice]
    unsent: list[Notice]

    @property
    def summary(self) -> str:
        if not self.sent and not self.unsent:
            return "no source went silent or came back"
        parts = [f"{n.kind}: {', '.join(r.key for r in n.readings)}" for n in self.sent]
        text = "sent " + "; ".join(parts) if parts else "nothing sent"
        return text + (f" ({len(self.unsent)} left for the next tick)" if self.unsent else "")


def send_freshness_alerts(
    instance: dg.DagsterInstance,
    telegram: Any,
    cursor: str | None,
    *,
    expectations: Sequence[Expectation],
    settings: AlertSettings | None = None,
    now: datetime | None = None,
    logger: Any = log,
) -> FreshnessTick:
    """One tick: judge every expectation, send what is due, return the new cursor."""
    chosen = settings or AlertSettings.from_env()
    moment = now or datetime.now(UTC)
    state = SilenceState.from_cursor(cursor)
    sent, unsent = [], []
    for notice in decide(state, read_freshness(instance, expectations, moment)):
        if unsent:
            unsent.append(notice)
            continue
        names = ", ".join(r.key for r in notice.readings)
        try:
            ids = telegram.send_message(render_notice(notice, chosen, moment))
        except Exception as exc:  # retried next tick: the cursor keeps it unsent
            logger.error(f"freshness alerts: could not send '{notice.kind}' for {names}: {exc}")
            unsent.append(notice)
            continue
        logger.info(f"freshness alerts: sent '{notice.kind}' for {names} (message ids {ids})")
        state = apply_notice(state, notice)
        sent.append(notice)
    return FreshnessTick(state.to_cursor(), sent, unsent)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_freshness_alert_sensor(
    expectations: Sequence[Expectation],
    *,
    name: str = "freshness_alert_sensor",
    minimum_interval_seconds: int = 60,
    clock: Callable[[], datetime] = _utc_now,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A sensor posting "no data" / "data again" to the chat (resource `telegram`)."""
    chosen = tuple(expectations)

    def tick(instance, telegram, cursor, logger) -> tuple[str, str]:
        result = send_freshness_alerts(
            instance, telegram, cursor, expectations=chosen, now=clock(), logger=logger
        )
        return result.cursor, result.summary

    return chat_sensor(
        tick,
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Telegram 'no data' message when a raw asset misses its FreshnessPolicy (on the "
            "time its data last changed), and 'data again' when it is updated: "
            + ", ".join(e.asset_key.to_user_string() for e in chosen)
        ),
    )
