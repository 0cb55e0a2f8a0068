"""Checks on the raw Neople timelines: both stores agree, days have rows, and every code
is one the marts know (that days arrive on time is the asset's FreshnessPolicy).

The checks look at the days of the run they execute in (one day, or a backfill's range);
run on their own (e.g. from the UI) they look at the last week of stored days.
"""

import csv
from datetime import date, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from signalbox.domains.game_timelines.ingest import (
    DATASET,
    PARTITIONS_TABLE,
    RAW_TABLE,
    ensure_tables,
    read_stored_day,
)
from signalbox.domains.game_timelines.raw import RAW_TIMELINE_EVENTS
from signalbox.platform.object_store import ObjectNotFoundError, ObjectStoreResource
from signalbox.platform.settings import DBT_ROOT
from signalbox.platform.warehouse import WarehouseResource

RECENT_DAYS = 7
# the codes the marts classify: the dbt seed, read where the dbt project is
TIMELINE_CODES_SEED = DBT_ROOT / "warehouse/seeds/game_timelines/neople_timeline_codes.csv"


def known_codes() -> dict[int, str]:
    with TIMELINE_CODES_SEED.open(encoding="utf-8") as seed:
        return {int(row["code"]): row["code_name"] for row in csv.DictReader(seed)}


def checked_days(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> list[date]:
    """The run's partitions, else the most recently stored days."""
    op = context.op_execution_context
    if op.has_partition_key or op.has_partition_key_range:
        return [date.fromisoformat(key) for key in op.partition_keys]
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        cur.execute(
            f"SELECT partition_key FROM {PARTITIONS_TABLE} WHERE dataset = %s"
            " ORDER BY partition_key DESC LIMIT %s",
            (DATASET, RECENT_DAYS),
        )
        return sorted(date.fromisoformat(row[0]) for row in cur.fetchall())


def parquet_rows(store: ObjectStoreResource, key: str) -> int | None:
    """Row count from the parquet footer; None when the object is missing."""
    try:
        data = store.get_bytes(key)
    except ObjectNotFoundError:
        return None
    return pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows


@dg.asset_check(
    asset=RAW_TIMELINE_EVENTS,
    description=(
        "For each day: the parquet file's row count equals the day's rows in Postgres and "
        "the count recorded at load time, and the object is the one that load wrote (ETag)."
    ),
)
def neople_timeline_parquet_matches_postgres(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> dg.AssetCheckResult:
    import pandas as pd

    days = checked_days(context, warehouse)
    rows = []
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        stored = {day: read_stored_day(cur, day) for day in days}
        cur.execute(
            f"SELECT day, count(*) FROM {RAW_TABLE} WHERE day = ANY(%s) GROUP BY day", (days,)
        )
        postgres = dict(cur.fetchall())
    for day in days:
        record = stored[day]
        key = record.object_key if record else object_store.partition_key(DATASET, day)
        in_parquet = parquet_rows(object_store, key)
        etag = None
        if in_parquet is not None:
            etag = object_store.head(key).etag
        in_postgres = postgres.get(day, 0)
        recorded = record.row_count if record else None
        same_object = record is not None and etag == record.object_etag
        rows.append(
            {
                "day": day.isoformat(),
                "postgres": in_postgres,
                "parquet": in_parquet,
                "recorded": recorded,
                "same_object": same_object,
                "ok": in_parquet == in_postgres == recorded and same_object,
            }
        )
    table = pd.DataFrame(
        rows, columns=["day", "postgres", "parquet", "recorded", "same_object", "ok"]
    )
    return dg.AssetCheckResult(
        passed=bool(len(table)) and bool(table["ok"].all()),
        metadata={
            "days": len(table),
            "mismatched_days": int((~table["ok"]).sum()) if len(table) else 0,
            "by_day": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "-"),
        },
    )


@dg.asset_check(
    asset=RAW_TIMELINE_EVENTS,
    description=(
        "Each day has rows when any character was active in the week before it: a day that "
        "comes back empty for everyone is more likely a source problem than a quiet day."
    ),
)
def neople_timeline_rows_for_active_characters(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    import pandas as pd

    days = checked_days(context, warehouse)
    rows = []
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        for day in days:
            cur.execute(
                f"""
                SELECT
                    count(*) FILTER (WHERE day = %(day)s),
                    count(DISTINCT character_id) FILTER (WHERE day = %(day)s),
                    count(DISTINCT character_id) FILTER (WHERE day < %(day)s),
                    count(DISTINCT character_id) FILTER (
                        WHERE day < %(day)s AND character_id NOT IN (
                            SELECT character_id FROM {RAW_TABLE} WHERE day = %(day)s))
                FROM {RAW_TABLE}
                WHERE day BETWEEN %(first)s AND %(day)s
                """,
                {"day": day, "first": day - timedelta(days=RECENT_DAYS)},
            )
            events, characters, active_before, quiet = cur.fetchone()
            rows.append(
                {
                    "day": day.isoformat(),
                    "rows": events,
                    "characters_with_rows": characters,
                    "active_in_prior_week": active_before,
                    "active_but_quiet_today": quiet,
                    "ok": events > 0 or active_before == 0,
                }
            )
    table = pd.DataFrame(
        rows,
        columns=["day", "rows", "characters_with_rows", "active_in_prior_week",
                 "active_but_quiet_today", "ok"],
    )  # fmt: skip
    return dg.AssetCheckResult(
        passed=bool(table["ok"].all()) if len(table) else True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days": len(table),
            "empty_days": int((table["rows"] == 0).sum()) if len(table) else 0,
            "by_day": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "-"),
        },
    )


@dg.asset_check(
    asset=RAW_TIMELINE_EVENTS,
    description=(
        "Every timeline code of the days is in the neople_timeline_codes seed. New codes "
        "appear without notice: their rows are kept (classed `unknown` in the marts) and "
        "listed here by value, name and rows, so the seed can follow."
    ),
)
def neople_timeline_codes_known(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    import pandas as pd

    days = checked_days(context, warehouse)
    known = known_codes()
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        cur.execute(
            f"""
            SELECT code, min(name), count(*), count(DISTINCT day), min(day), max(day)
            FROM {RAW_TABLE}
            WHERE day = ANY(%s) AND NOT code = ANY(%s)
            GROUP BY code ORDER BY count(*) DESC, code
            """,
            (days, list(known)),
        )
        found = cur.fetchall()
    table = pd.DataFrame(
        [(code, name, rows, n, f"{first}..{last}") for code, name, rows, n, first, last in found],
        columns=["code", "name", "rows", "days", "seen"],
    )
    return dg.AssetCheckResult(
        passed=table.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days": len(days),
            "known_codes": len(known),
            "unknown_codes": ", ".join(str(code) for code in table["code"]) or "none",
            "unknown_code_rows": int(table["rows"].sum()) if len(table) else 0,
            "by_code": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "-"),
        },
    )
