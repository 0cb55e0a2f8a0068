"""The daily KPI report's numbers and its message: yesterday's feed and messenger KPIs
with day-over-day and week-over-week change, rendered as Telegram HTML and one PNG of
their last 7 days. Pure functions of a few `activity_kpis_daily` rows (report.py reads
them and sends the result).
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from signalbox.domains.user_activity.raw import USER_ACTIVITY_DAILY
from signalbox.platform.charts import PanelRow, SeriesPanel, format_number, small_multiples
from signalbox.platform.telegram import html_escape

REPORT_TIMEZONE_ENV = "SIGNALBOX_REPORT_TIMEZONE"
DEFAULT_REPORT_TIMEZONE = "Europe/Moscow"
CHART_DAYS = 7
KPI_TABLE = "{database}_marts.activity_kpis_daily"


@dataclass(frozen=True)
class Kpi:
    column: str
    label: str
    group: str  # the chart row and message section: Feed | Messenger
    percent: bool = False  # a ratio shown as a percentage


KPIS = (
    Kpi("dau_feed", "DAU", "Feed"),
    Kpi("views", "Views", "Feed"),
    Kpi("likes", "Likes", "Feed"),
    Kpi("ctr", "CTR", "Feed", percent=True),
    Kpi("dau_messenger", "DAU", "Messenger"),
    Kpi("messages_sent", "Messages sent", "Messenger"),
    Kpi("sent_received_ratio", "Senders per receiver", "Messenger"),
)
GROUPS = ("Feed", "Messenger")


class ReportConfigError(ValueError):
    """A report setting that cannot work; names the variable."""


def report_timezone(environ: Mapping[str, str] | None = None) -> str:
    """SIGNALBOX_REPORT_TIMEZONE (default Europe/Moscow), checked to be a real zone."""
    env = os.environ if environ is None else environ
    zone = (env.get(REPORT_TIMEZONE_ENV) or DEFAULT_REPORT_TIMEZONE).strip()
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportConfigError(
            f"{REPORT_TIMEZONE_ENV}: unknown time zone {zone!r} (e.g. Europe/Moscow)"
        ) from exc
    return zone


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class KpiChange:
    kpi: Kpi
    value: float | None
    previous_day: float | None
    week_ago: float | None
    dod_pct: float | None
    wow_pct: float | None


def pct_change(new: float | None, old: float | None) -> float | None:
    """Relative change in percent; None without a base (missing or zero)."""
    if new is None or old is None or old == 0:
        return None
    return (new - old) / abs(old) * 100


def kpi_sql(table: str, first: date, last: date) -> str:
    columns = ", ".join(k.column for k in KPIS)
    return (
        f"SELECT event_date, {columns} FROM {table}"
        f" WHERE event_date BETWEEN toDate('{first.isoformat()}') AND toDate('{last.isoformat()}')"
        " ORDER BY event_date"
    )


def rows_by_day(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[date, dict]:
    by_day = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        day = record.pop("event_date")
        by_day[day] = {k: (None if v is None else float(v)) for k, v in record.items()}
    return by_day


def compute_changes(
    by_day: Mapping[date, Mapping[str, float | None]], day: date
) -> list[KpiChange]:
    today = by_day.get(day, {})
    before = by_day.get(day - timedelta(days=1), {})
    week = by_day.get(day - timedelta(days=7), {})
    changes = []
    for kpi in KPIS:
        value = today.get(kpi.column)
        changes.append(
            KpiChange(
                kpi=kpi,
                value=value,
                previous_day=before.get(kpi.column),
                week_ago=week.get(kpi.column),
                dod_pct=pct_change(value, before.get(kpi.column)),
                wow_pct=pct_change(value, week.get(kpi.column)),
            )
        )
    return changes


# --------------------------------------------------------------------------- rendering


def _change(pct: float | None) -> str:
    if pct is None:
        return "n/a"
    if round(pct, 1) == 0:
        return "= 0.0%"
    arrow = "▲" if pct > 0 else "▼"
    return f"{arrow} {pct:+.1f}%"


def render_report(day: date, changes: Sequence[KpiChange], zone: str, link: str) -> str:
    """The message (Telegram HTML): one line per KPI with its DoD and WoW change."""
    lines = [f"📊 <b>Daily KPIs</b> · {day:%a %d.%m.%Y} ({html_escape(zone)})"]
    for group in GROUPS:
        lines.append("")
        lines.append(f"<b>{group}</b>")
        for change in changes:
            if change.kpi.group != group:
                continue
            lines.append(
                f"{html_escape(change.kpi.label)}: "
                f"<b>{format_number(change.value, percent=change.kpi.percent)}</b>"
                f" · DoD {_change(change.dod_pct)} · WoW {_change(change.wow_pct)}"
            )
    lines.append("")
    lines.append(f'<a href="{html_escape(link, quote=True)}">Dashboard</a>')
    return "\n".join(lines)


def render_chart(by_day: Mapping[date, Mapping[str, float | None]], day: date) -> bytes:
    """One PNG: the last 7 days of every KPI, the feed's in one row, the messenger's in
    the other."""
    days = [day - timedelta(days=offset) for offset in range(CHART_DAYS - 1, -1, -1)]
    rows = []
    for group in GROUPS:
        panels = [
            SeriesPanel(
                title=kpi.label,
                times=days,
                values=[by_day.get(d, {}).get(kpi.column) for d in days],
                percent=kpi.percent,
            )
            for kpi in KPIS
            if kpi.group == group
        ]
        rows.append(PanelRow(group, panels))
    first, last = days[0], days[-1]
    return small_multiples(rows, title=f"Last {CHART_DAYS} days: {first:%d.%m} – {last:%d.%m.%Y}")


def markdown_table(changes: Sequence[KpiChange]) -> str:
    lines = [
        "| KPI | value | previous day | DoD | week ago | WoW |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in changes:
        p = c.kpi.percent
        lines.append(
            f"| {c.kpi.group} {c.kpi.label} | {format_number(c.value, percent=p)}"
            f" | {format_number(c.previous_day, percent=p)} | {_change(c.dod_pct)}"
            f" | {format_number(c.week_ago, percent=p)} | {_change(c.wow_pct)} |"
        )
    return "\n".join(lines)


def report_day(config_value: str | None, now: datetime | None = None) -> date:
    """The configured day, else yesterday as the KPI table counts days: its days are the
    activity partitions' (UTC), so yesterday there is the last day that has ended. The
    report's time zone decides when it is sent, not which day is complete: at 11:00 in
    Moscow both agree, but from 21:00 UTC Moscow's yesterday is a UTC day still running
    (and zones far enough east would meet that at 11:00 every day)."""
    if config_value:
        try:
            return date.fromisoformat(config_value)
        except ValueError as exc:
            raise ReportConfigError(
                f"report_date must be YYYY-MM-DD, got {config_value!r}"
            ) from exc
    moment = (now or datetime.now(UTC)).astimezone(ZoneInfo(USER_ACTIVITY_DAILY.timezone))
    return moment.date() - timedelta(days=1)
