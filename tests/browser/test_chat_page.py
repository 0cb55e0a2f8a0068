"""The on-call chat as a person sees it: an alert posted by the real client, with its chart,
on the Telegram simulator's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chat_support import CHAT_TOKEN

from signalbox.platform.charts import BandPanel, band_chart
from signalbox.platform.telegram import TelegramResource

GROUP = "-1001000000077"


def test_an_alert_shows_with_its_chart_loaded(chat, checked_page):
    start = datetime(2026, 11, 20, tzinfo=UTC)
    times = [start + timedelta(minutes=15 * i) for i in range(96)]
    values = [100.0 + (i % 24) for i in range(96)]
    values[-1] = 20.0  # the drop the alert is about
    panel = BandPanel("views", times, values, [90.0] * 96, [130.0] * 96, breach_at=times[-1])
    telegram = TelegramResource(bot_token=CHAT_TOKEN, chat_id=GROUP, base_url=chat.url)
    telegram.send_photo(
        band_chart([panel], title="Outside the IQR band"),
        "<b>Anomaly</b> views = 20 (expected 90..130) at 23:45 UTC",
    )

    page = checked_page.page
    page.goto(chat.page_url, wait_until="networkidle")
    page.wait_for_selector("img")
    assert "Anomaly" in page.inner_text("body") and "views = 20" in page.inner_text("body")
    loaded = page.eval_on_selector_all(
        "img", "images => images.map(i => i.complete && i.naturalWidth > 0)"
    )
    assert loaded == [True]
    checked_page.timed("")
    width = page.eval_on_selector("img", "i => i.naturalWidth")
    assert width >= 600  # the chart itself, not a placeholder
