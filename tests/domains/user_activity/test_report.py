"""The daily KPI report on chDB and the Telegram simulator: its numbers equal SQL over the
KPI table, its chart is a valid PNG, and a failed send fails only the report."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from chat_support import CHAT_TOKEN
from PIL import Image

from signalbox.domains.user_activity.kpis import (
    KPIS,
    compute_changes,
    pct_change,
    render_report,
    report_day,
    report_timezone,
)
from signalbox.platform.charts import format_number
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.telegram import TelegramResource
from signalbox.simulators.server import Faults
from signalbox.simulators.telegram import parse_html

DATABASE = "test_daily_report"
TABLE = f"{DATABASE}_marts.activity_kpis_daily"
TOKEN = CHAT_TOKEN
CHAT = "-1001234567890"
DAY = date(2024, 3, 14)
NODE = "reports__activity_daily_kpis"  # the op of the asset keyed reports/activity_daily_kpis


def kpi_rows() -> list[list]:
    """Ten days of KPIs (the report reads 8); the day before DAY has no messages, so its
    ratio is NULL and DoD of the ratio has no base."""
    rows = []
    for offset in range(10):
        day = DAY - timedelta(days=9 - offset)
        dau_feed = 10_000 + 150 * offset + (700 if day == DAY else 0)
        views = dau_feed * 12 + offset * 31
        likes = views // 5 - offset * 17
        dau_messenger = 0 if day == DAY - timedelta(days=1) else 1_200 + 9 * offset
        receivers = 0 if dau_messenger == 0 else 1_150 + 11 * offset
        rows.append(
            [
                day,
                dau_feed + dau_messenger // 2,
                dau_feed,
                dau_messenger,
                views,
                likes,
                likes / views,
                dau_messenger * 4,
                receivers,
                dau_messenger / receivers if receivers else None,
            ]
        )
    return rows


COLUMNS = [
    "event_date", "dau_app", "dau_feed", "dau_messenger", "views", "likes", "ctr",
    "messages_sent", "message_receivers", "sent_received_ratio",
]  # fmt: skip


@pytest.fixture(scope="module", params=["chdb", "server"])
def kpi_clickhouse(request, clickhouse_database, clickhouse_server_database):
    """The session's chDB directory, or the session's ClickHouse server over HTTP, in a
    database of this module's own (not the package's `clickhouse` fixture: its dbt test
    builds the real KPI table there); the KPI table as dbt names it
    (`<database>_marts.activity_kpis_daily`)."""
    databases = clickhouse_database if request.param == "chdb" else clickhouse_server_database
    with databases(DATABASE) as resource:
        with resource.client("test kpi table") as client:
            client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}_marts")
            client.command(f"DROP TABLE IF EXISTS {TABLE}")
            client.command(
                f"CREATE TABLE {TABLE} (event_date Date, dau_app UInt64, dau_feed UInt64,"
                " dau_messenger UInt64, views UInt64, likes UInt64, ctr Nullable(Float64),"
                " messages_sent UInt64, message_receivers UInt64,"
                " sent_received_ratio Nullable(Float64)) ENGINE = MergeTree ORDER BY event_date"
            )
            client.insert(TABLE, kpi_rows(), column_names=COLUMNS)
        yield resource


@pytest.fixture(scope="module")
def report(code_location):
    """The report asset's module (it needs the dbt manifest: integration tests only)."""
    from signalbox.domains.user_activity import report

    return report


def run_report(report, kpi_clickhouse, simulator, day: date | None = DAY, **telegram_fields):
    resource = TelegramResource(
        bot_token=TOKEN,
        chat_id=CHAT,
        base_url=simulator.url,
        max_attempts=2,
        backoff_base_seconds=0.01,
        read_timeout_seconds=5,
        **telegram_fields,
    )
    config = {"report_date": day.isoformat()} if day else {}
    return dg.materialize(
        [report.activity_daily_kpis_report],
        resources={"clickhouse": kpi_clickhouse, "telegram": resource},
        run_config=dg.RunConfig({NODE: report.DailyReportConfig(**config)}),
        raise_on_error=False,
    )


def sql_expectations(kpi_clickhouse: ClickHouseResource) -> dict[str, float | None]:
    """Each KPI and its DoD/WoW change, computed by ClickHouse over the table."""
    selects = []
    for kpi in KPIS:
        c = kpi.column
        for suffix, other in (("_dod_pct", "p"), ("_wow_pct", "w")):
            selects.append(
                f"if({other}.{c} IS NULL OR {other}.{c} = 0 OR t.{c} IS NULL, NULL,"
                f" (toFloat64(t.{c}) - {other}.{c}) / abs(toFloat64({other}.{c})) * 100)"
                f" AS {c}{suffix}"
            )
        selects.append(f"toFloat64(t.{c}) AS {c}")
    sql = (
        f"SELECT {', '.join(selects)} FROM {TABLE} AS t"
        f" LEFT JOIN {TABLE} AS p ON p.event_date = t.event_date - 1"
        f" LEFT JOIN {TABLE} AS w ON w.event_date = t.event_date - 7"
        f" WHERE t.event_date = toDate('{DAY}') SETTINGS join_use_nulls = 1"
    )
    with kpi_clickhouse.client("test expectations") as client:
        result = client.query(sql)
        return dict(zip(result.column_names, result.result_rows[0], strict=True))


def test_report_numbers_equal_sql_and_the_chat_gets_text_and_chart(report, kpi_clickhouse, chat):
    result = run_report(report, kpi_clickhouse, chat)
    assert result.success
    [materialization] = result.asset_materializations_for_node(NODE)
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    expected = sql_expectations(kpi_clickhouse)
    assert metadata["report_date"] == "2024-03-14" and metadata["days_read"] == 8
    for name, value in expected.items():
        if value is None:
            assert name not in metadata, name  # no base for the change: not recorded
        else:
            assert metadata[name] == pytest.approx(value, rel=1e-12), name
    assert expected["sent_received_ratio_dod_pct"] is None  # the day without messages

    [photo] = chat.photos
    assert metadata["message_ids"] == [photo.message_id]
    text = photo.plain
    assert text.startswith("📊 Daily KPIs · Thu 14.03.2024 (Europe/Moscow)")
    dod = expected["dau_feed_dod_pct"]
    assert f"DAU: {metadata['dau_feed']:,.0f} · DoD ▲ {dod:+.1f}%" in text
    assert f"WoW ▲ {expected['dau_feed_wow_pct']:+.1f}%" in text
    ratio = format_number(expected["sent_received_ratio"])
    assert f"Senders per receiver: {ratio} · DoD n/a · WoW ▼" in text
    assert "Feed\n" in text and "Messenger\n" in text and "Dashboard" in text
    with Image.open(io.BytesIO(photo.image)) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 400
    assert sum(image.size) <= 10000


def test_a_failed_send_fails_only_the_report(report, kpi_clickhouse, chat):
    chat.faults = Faults(error_rate=1.0, error_status=503)
    result = run_report(report, kpi_clickhouse, chat)
    assert not result.success
    failure = result.failure_data_for_node(NODE)
    assert "the daily KPI report for 2024-03-14 was not sent" in str(failure.user_failure_data)
    assert TOKEN not in str(failure.user_failure_data)
    assert chat.photos == [] and chat.count("/bot") >= 2  # retried, then gave up
    assert result.asset_materializations_for_node(NODE) == []


def test_a_day_without_kpis_is_a_clear_failure(report, kpi_clickhouse, chat):
    result = run_report(report, kpi_clickhouse, chat, day=date(2024, 1, 1))
    assert not result.success
    data = str(result.failure_data_for_node(NODE).user_failure_data)
    assert "no KPIs for 2024-01-01 in test_daily_report_marts.activity_kpis_daily" in data
    assert chat.photos == [] and chat.messages == []


def test_schedule_and_job(report):
    assert report.activity_daily_report_schedule.cron_schedule == "0 11 * * *"
    assert report.activity_daily_report_schedule.execution_timezone == "Europe/Moscow"
    schedule, job = report.activity_daily_report_schedule, report.activity_daily_report_job
    assert schedule.job_name == job.name
    defs = dg.Definitions(
        assets=[report.activity_daily_kpis_report],
        jobs=[job],
        schedules=[schedule],
        resources={
            "clickhouse": ClickHouseResource(),
            "telegram": TelegramResource(bot_token="1:x", chat_id="1"),
        },
    )
    assert defs.resolve_job_def("activity_daily_report").asset_layer.selected_asset_keys == {
        report.REPORT_KEY
    }


def test_time_zone_and_the_day_reported():
    assert report_timezone({"SIGNALBOX_REPORT_TIMEZONE": "Asia/Novosibirsk"}) == "Asia/Novosibirsk"
    with pytest.raises(ValueError, match="SIGNALBOX_REPORT_TIMEZONE"):
        report_timezone({"SIGNALBOX_REPORT_TIMEZONE": "Nowhere/Town"})
    # 11:00 in Moscow on the 15th reports the 14th. Just after midnight in Moscow (22:00
    # UTC on the 14th) Moscow's yesterday is the 14th, a KPI day (UTC) still running: the
    # report takes the last complete one, the 13th
    assert report_day(None, datetime(2024, 3, 15, 8, tzinfo=UTC)) == DAY
    assert report_day(None, datetime(2024, 3, 14, 22, tzinfo=UTC)) == DAY - timedelta(days=1)
    assert report_day(None, datetime(2024, 3, 15, 0, 5, tzinfo=UTC)) == DAY
    assert report_day("2024-03-01") == date(2024, 3, 1)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        report_day("14.03.2024")


def test_changes_and_message_without_a_week_of_history():
    by_day = {DAY: {k.column: 10.0 for k in KPIS}, DAY - timedelta(days=1): {"views": 8.0}}
    changes = {c.kpi.column: c for c in compute_changes(by_day, DAY)}
    assert changes["views"].dod_pct == 25.0 and changes["views"].wow_pct is None
    assert pct_change(5, 0) is None and pct_change(-5, -10) == 50.0
    text = render_report(DAY, list(changes.values()), "Europe/Moscow", "https://x/?a=1&b=2")
    plain, _ = parse_html(text)
    assert "Views: 10 · DoD ▲ +25.0% · WoW n/a" in plain and "CTR: 1000.00%" in plain
    assert 'href="https://x/?a=1&amp;b=2"' in text
