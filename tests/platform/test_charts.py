"""The chart helper: band charts and small multiples are valid, sane PNGs."""

from __future__ import annotations

import io
import math
from datetime import UTC, date, datetime, timedelta

import matplotlib.image
import pytest
from PIL import Image

from signalbox.platform.charts import (
    PNG_SIGNATURE,
    BandPanel,
    PanelRow,
    SeriesPanel,
    band_chart,
    format_number,
    small_multiples,
)


def decode(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    with Image.open(io.BytesIO(png)) as image:
        image.verify()  # checksums of every chunk
        assert image.format == "PNG"
        assert image.size == (width, height)
    return width, height


def day_of_buckets(breach_at: int | None = 80) -> BandPanel:
    start = datetime(2024, 3, 12, tzinfo=UTC)
    times = [start + timedelta(minutes=15 * i) for i in range(96)]
    values = [1000 + 400 * math.sin(i / 15) for i in range(96)]
    if breach_at is not None:
        values[breach_at] = 200
    values[10] = None  # a bucket without a value is a gap, not an error
    lower = [None] * 5 + [v * 0.7 if v else None for v in values[5:]]
    upper = [None] * 5 + [v * 1.3 if v else None for v in values[5:]]
    return BandPanel(
        title="views · marts/activity_metrics_15min",
        times=times,
        values=values,
        lower=lower,
        upper=upper,
        breach_at=times[breach_at] if breach_at is not None else None,
    )


def test_band_chart_is_a_valid_png_of_a_sane_size():
    png = band_chart([day_of_buckets()], title="Outside the IQR band", timezone="Europe/Moscow")
    width, height = decode(png)
    assert 600 <= width <= 2000 and 300 <= height <= 1500
    assert width + height <= 10000 and max(width, height) <= 20 * min(width, height)  # Telegram
    assert 5_000 < len(png) < 1_000_000


def test_band_chart_stacks_panels_and_takes_percentages():
    ratio = BandPanel(
        title="ctr",
        times=day_of_buckets().times,
        values=[0.04] * 96,
        lower=[0.03] * 96,
        upper=[0.05] * 96,
        breach_at=None,
        percent=True,
    )
    one = decode(band_chart([day_of_buckets()]))
    three = decode(band_chart([day_of_buckets(), ratio, day_of_buckets(None)]))
    assert three[0] == one[0] and three[1] > 2 * one[1]


def test_band_chart_refuses_naive_times_and_no_panels():
    naive = day_of_buckets()
    naive = BandPanel(
        title="x", times=[t.replace(tzinfo=None) for t in naive.times], values=naive.values,
        lower=naive.lower, upper=naive.upper,
    )  # fmt: skip
    with pytest.raises(ValueError, match="timezone-aware"):
        band_chart([naive])
    with pytest.raises(ValueError, match="at least one panel"):
        band_chart([])


def test_small_multiples_one_png_with_a_row_per_group():
    days = [date(2024, 3, 6) + timedelta(days=i) for i in range(7)]
    feed = [SeriesPanel(name, days, [100.0 + i * k for i in range(7)]) for k, name in
            enumerate(["DAU", "Views", "Likes"])]  # fmt: skip
    feed.append(SeriesPanel("CTR", days, [0.04, 0.041, None, 0.039, 0.04, 0.042, 0.043], True))
    messenger = [SeriesPanel("DAU", days, [50.0] * 7), SeriesPanel("Sent", days, [0.0] * 7)]
    png = small_multiples([PanelRow("Feed", feed), PanelRow("Messenger", messenger)], title="7 d")
    width, height = decode(png)
    assert width > height and 1000 <= width <= 2500 and 400 <= height <= 1500
    assert width + height <= 10000


def test_format_number():
    assert format_number(1234567) == "1,234,567"
    assert format_number(12.0) == "12"
    assert format_number(12.345) == "12.3"
    assert format_number(0.0421, percent=True) == "4.21%"
    assert format_number(0.98765) == "0.988"
    assert format_number(None) == "n/a"
    assert format_number(float("nan")) == "n/a"
    assert format_number(-2500.4) == "-2,500"
