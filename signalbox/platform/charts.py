"""The one chart helper: PNG bytes for Telegram alerts and reports, and for UI metadata.

Matplotlib's Agg canvas drawn directly on a `Figure` of its own: no pyplot, so no global
backend switch or figure registry that sensor threads and asset steps could share.
Times arrive timezone-aware and are drawn as wall-clock times of the zone the reader
lives in; the zone is written on the axis so nobody has to guess.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # matplotlib is imported where a chart is drawn, not when code loads
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 100
VALUE_COLOR = "#1f5f99"
BAND_COLOR = "#8fb8de"
BREACH_COLOR = "#d62728"


def format_number(value: float | None, *, percent: bool = False) -> str:
    """A number for a person: thousands separated, few decimals for small values;
    `percent=True` shows a ratio (0.0421) as a percentage (4.21%)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if percent:
        return f"{value * 100:.2f}%"
    magnitude = abs(value)
    if magnitude >= 1000 or (magnitude >= 10 and float(value).is_integer()):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}" if magnitude >= 0.001 else f"{value:.2e}"


@dataclass(frozen=True)
class BandPanel:
    """One metric's series with its expected band; `breach_at` marks the judged bucket."""

    title: str
    times: Sequence[datetime]  # timezone-aware bucket starts
    values: Sequence[float | None]
    lower: Sequence[float | None]
    upper: Sequence[float | None]
    breach_at: datetime | None = None
    percent: bool = False  # the values are ratios shown as percentages


@dataclass(frozen=True)
class SeriesPanel:
    """One KPI over a few days: a line with its points and the last value written on it."""

    title: str
    times: Sequence[date | datetime]
    values: Sequence[float | None]
    percent: bool = False


@dataclass(frozen=True)
class PanelRow:
    """A labelled row of small multiples (e.g. the feed's KPIs, then the messenger's)."""

    label: str
    panels: Sequence[SeriesPanel] = field(default_factory=tuple)


def band_chart(panels: Sequence[BandPanel], *, title: str = "", timezone: str = "UTC") -> bytes:
    """Stacked band charts (one per panel, shared layout) as one PNG.

    Each panel: the series, the band between lower and upper shaded, and the breach
    bucket marked with a red point; the x axis in `timezone` wall-clock time."""
    if not panels:
        raise ValueError("band_chart needs at least one panel")
    from matplotlib.figure import Figure

    zone = ZoneInfo(timezone)
    figure = Figure(figsize=(10, 1.2 + 2.8 * len(panels)), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for axis, panel in zip(axes, panels, strict=True):
        times = [_local(t, zone) for t in panel.times]
        values = _floats(panel.values)
        lower, upper = _floats(panel.lower), _floats(panel.upper)
        axis.fill_between(
            times, lower, upper, color=BAND_COLOR, alpha=0.45, linewidth=0, label="expected band"
        )
        axis.plot(times, values, color=VALUE_COLOR, linewidth=1.6, marker=".", label="value")
        if panel.breach_at is not None:
            at = _local(panel.breach_at, zone)
            hits = [i for i, t in enumerate(times) if t == at]
            if hits:
                value = values[hits[-1]]
                axis.scatter([at], [value], s=80, color=BREACH_COLOR, zorder=5, label="breach")
                axis.annotate(
                    format_number(value, percent=panel.percent),
                    (at, value),
                    xytext=(6, 6),
                    textcoords="offset points",
                    color=BREACH_COLOR,
                    fontsize=9,
                )
        axis.set_title(panel.title, fontsize=11, loc="left")
        axis.grid(True, alpha=0.3)
        axis.margins(x=0.04)
        _value_axis(axis, values + lower + upper, panel.percent)
        _time_axis(axis, zone, timezone)
        axis.legend(loc="best", fontsize=8, framealpha=0.8)
    if title:
        figure.suptitle(title, fontsize=13)
    return _png(figure)


def small_multiples(
    rows: Sequence[PanelRow], *, title: str = "", timezone: str | None = None
) -> bytes:
    """KPI series in a grid, one labelled row per group, as one PNG.

    Dates are drawn as days; datetimes in `timezone` (default UTC)."""
    rows = [row for row in rows if row.panels]
    if not rows:
        raise ValueError("small_multiples needs at least one panel")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    columns = max(len(row.panels) for row in rows)
    zone = ZoneInfo(timezone or "UTC")
    figure = Figure(figsize=(3.6 * columns, 0.8 + 2.7 * len(rows)), dpi=DPI, layout="constrained")
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            axis = grid[r][c]
            if c >= len(row.panels):
                axis.set_visible(False)
                continue
            panel = row.panels[c]
            times = [
                _local(t, zone) if isinstance(t, datetime) else datetime(t.year, t.month, t.day)
                for t in panel.times
            ]
            values = _floats(panel.values)
            axis.plot(times, values, color=VALUE_COLOR, linewidth=1.8, marker="o", markersize=4)
            known = [(t, v) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
            if known:
                t, v = known[-1]
                axis.scatter([t], [v], s=40, color=BREACH_COLOR, zorder=5)
                axis.annotate(
                    format_number(v, percent=panel.percent),
                    (t, v),
                    xytext=(-4, 8),
                    textcoords="offset points",
                    ha="right",
                    fontsize=9,
                )
            label = f"{row.label}: {panel.title}" if row.label else panel.title
            axis.set_title(label, fontsize=10, loc="left")
            axis.grid(True, alpha=0.3)
            _value_axis(axis, values, panel.percent)
            axis.xaxis.set_major_locator(mdates.DayLocator())
            axis.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m"))
            axis.tick_params(axis="x", labelsize=8)
            axis.margins(x=0.08, y=0.2)
    if title:
        figure.suptitle(title, fontsize=13)
    return _png(figure)


# --------------------------------------------------------------------------- internals


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """Wall-clock time in `zone`, naive (matplotlib then draws exactly those numbers)."""
    if moment.tzinfo is None:
        raise ValueError(f"chart times must be timezone-aware, got {moment!r}")
    return moment.astimezone(zone).replace(tzinfo=None)


def _floats(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _value_axis(axis, values: Sequence[float], percent: bool) -> None:
    """Percentages for ratios, thousands separated for large numbers, else matplotlib's
    own ticks (which keep the decimals a narrow range needs)."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    if percent:
        axis.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        return
    known = [abs(v) for v in values if not math.isnan(v)]
    if known and max(known) >= 1000:
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    else:
        axis.ticklabel_format(axis="y", style="plain", useOffset=False)


def _time_axis(axis, zone: ZoneInfo, name: str) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m %H:%M"))
    axis.tick_params(axis="x", labelsize=8)
    axis.set_xlabel(f"local time ({name})", fontsize=8)


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
