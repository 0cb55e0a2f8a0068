"""Checks on the raw complaints: one row per complaint, and agreement with the API.

Freshness is the asset's own `FreshnessPolicy` (raw.py), which Dagster now prefers over
freshness checks and evaluates without a sensor."""

from datetime import timedelta

import dagster as dg

from signalbox.domains.complaints.cfpb import CfpbResource, DayWindow
from signalbox.domains.complaints.ingest import COMPLAINTS, table_exists
from signalbox.domains.complaints.raw import RAW_COMPLAINTS
from signalbox.platform.warehouse import WarehouseResource


@dg.asset_check(
    asset=RAW_COMPLAINTS,
    blocking=True,
    description=(
        "complaint_id is unique, and each row's key and date_received columns are the "
        "payload's own (a complaint seen twice, across pages or runs, is stored once)."
    ),
)
def cfpb_complaints_unique(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    import pandas as pd

    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return dg.AssetCheckResult(passed=False, metadata={"problem": "no table yet"})
        cur.execute(
            f"""
            SELECT count(*),
                   count(*) - count(DISTINCT complaint_id),
                   count(*) FILTER (WHERE payload ->> 'complaint_id' IS DISTINCT FROM complaint_id),
                   count(*) FILTER (
                       WHERE left(payload ->> 'date_received', 10)
                           IS DISTINCT FROM date_received::text
                   )
            FROM {COMPLAINTS.name}
            """
        )
        rows, duplicates, key_mismatch, date_mismatch = cur.fetchone()
        cur.execute(
            f"SELECT complaint_id, count(*) FROM {COMPLAINTS.name} GROUP BY 1 HAVING count(*) > 1"
            " ORDER BY 2 DESC, 1 LIMIT 10"
        )
        examples = cur.fetchall()
    metadata: dict[str, object] = {
        "rows": rows,
        "duplicate_rows": duplicates,
        "key_differs_from_payload": key_mismatch,
        "date_differs_from_payload": date_mismatch,
    }
    if examples:
        table = pd.DataFrame(examples, columns=["complaint_id", "rows"])
        metadata["duplicates"] = dg.MetadataValue.md(table.to_markdown(index=False))
    return dg.AssetCheckResult(
        passed=duplicates == 0 and key_mismatch == 0 and date_mismatch == 0, metadata=metadata
    )


@dg.asset_check(
    asset=RAW_COMPLAINTS,
    description=(
        "Between the oldest and newest stored date received, the stored complaint count "
        "equals the API's hits.total (one request). Warns when the API has more: published "
        "since the last run, or older than the lookback."
    ),
)
def cfpb_complaints_match_api(
    cfpb: CfpbResource, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return dg.AssetCheckResult(passed=True, metadata={"stored": 0})
        cur.execute(
            f"SELECT min(date_received), max(date_received), count(*) FROM {COMPLAINTS.name}"
        )
        first, last, stored = cur.fetchone()
    if first is None:
        return dg.AssetCheckResult(passed=True, metadata={"stored": 0})
    total = cfpb.probe_client().count(DayWindow(first, last + timedelta(days=1)))
    return dg.AssetCheckResult(
        passed=stored >= total,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "range": f"{first}..{last}",
            "stored": stored,
            "api_total": total,
            "missing": max(0, total - stored),
        },
    )
