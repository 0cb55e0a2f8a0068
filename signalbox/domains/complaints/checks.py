"""Checks on the raw complaints: one row per complaint. Agreement with the API is checked
by each run itself, with its own paced client (reconcile.py).

Freshness is the asset's own `FreshnessPolicy` (raw.py), which Dagster now prefers over
freshness checks and evaluates without a sensor."""

import dagster as dg

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
