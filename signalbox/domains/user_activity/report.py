"""The daily KPI report as an asset in its own job: reads a handful of rows of
`activity_kpis_daily` (yesterday and the 7 days before) in one short ClickHouse query and
sends the message and chart of kpis.py to the on-call chat. A failed send fails the
report run and nothing else.
"""

from datetime import datetime, time, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from signalbox.domains.user_activity import GROUP
from signalbox.domains.user_activity.kpis import (
    CHART_DAYS,
    KPI_TABLE,
    compute_changes,
    kpi_sql,
    markdown_table,
    render_chart,
    render_report,
    report_day,
    report_timezone,
    rows_by_day,
)
from signalbox.domains.user_activity.models import ACTIVITY_KPIS_DAILY
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.dashboards import dashboard_link, dashboard_template
from signalbox.platform.settings import engine_tags
from signalbox.platform.telegram import TelegramResource

REPORT_KEY = dg.AssetKey(["reports", "activity_daily_kpis"])


class DailyReportConfig(dg.Config):
    report_date: str | None = Field(
        default=None,
        description=(
            "The day to report (YYYY-MM-DD); default yesterday: the last complete (UTC) day "
            "of the KPIs."
        ),
    )


@dg.asset(
    key=REPORT_KEY,
    group_name=GROUP,
    deps=[ACTIVITY_KPIS_DAILY],
    kinds={"clickhouse", "telegram"},
    description=(
        "Yesterday's feed and messenger KPIs with day-over-day and week-over-week change "
        "and 7-day charts, sent to the on-call Telegram chat."
    ),
)
def activity_daily_kpis_report(
    context: dg.AssetExecutionContext,
    config: DailyReportConfig,
    clickhouse: ClickHouseResource,
    telegram: TelegramResource,
) -> dg.MaterializeResult:
    zone = report_timezone()
    day = report_day(config.report_date)
    table = KPI_TABLE.format(database=clickhouse.target_database())
    first = day - timedelta(days=max(7, CHART_DAYS - 1))
    with clickhouse.client("daily KPI report") as client:
        result = client.query(kpi_sql(table, first, day))
        by_day = rows_by_day(result.column_names, result.result_rows)
    if day not in by_day:
        raise dg.Failure(
            description=(
                f"no KPIs for {day} in {table} (days present: "
                f"{', '.join(str(d) for d in sorted(by_day)) or 'none'}); "
                "materialize activity_kpis_daily for that day first"
            )
        )
    changes = compute_changes(by_day, day)
    window = (datetime.combine(first, time()), datetime.combine(day + timedelta(days=1), time()))
    link = dashboard_link(dashboard_template(), ACTIVITY_KPIS_DAILY, window=window)
    text = render_report(day, changes, zone, link)
    png = render_chart(by_day, day)
    try:
        message_ids = telegram.send_photo(png, text)
    except Exception as exc:
        raise dg.Failure(description=f"the daily KPI report for {day} was not sent: {exc}") from exc
    context.log.info(f"daily KPI report for {day} sent: message ids {message_ids}")
    metadata: dict[str, Any] = {
        "report_date": day.isoformat(),
        "timezone": zone,
        "message_ids": dg.MetadataValue.json(message_ids),
        "kpis": dg.MetadataValue.md(markdown_table(changes)),
        "days_read": len(by_day),
        "chart_png_bytes": len(png),
    }
    for change in changes:
        for suffix, number in (
            ("", change.value),
            ("_dod_pct", change.dod_pct),
            ("_wow_pct", change.wow_pct),
        ):
            if number is not None:
                metadata[f"{change.kpi.column}{suffix}"] = float(number)
    return dg.MaterializeResult(metadata=metadata)


activity_daily_report_job = dg.define_asset_job(
    "activity_daily_report",
    selection=dg.AssetSelection.assets(REPORT_KEY),
    description="Send the daily KPI report (only the report: a failed send fails only it).",
    tags=engine_tags("clickhouse"),
)

activity_daily_report_schedule = dg.ScheduleDefinition(
    name="activity_daily_report_at_11",
    job=activity_daily_report_job,
    cron_schedule="0 11 * * *",
    execution_timezone=report_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
