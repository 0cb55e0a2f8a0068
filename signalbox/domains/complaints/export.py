"""The seed's output, kept: complaints by state, product and company as CSV, now in the
object store (`complaints_export/date=YYYY-MM-DD/part-0.csv`) instead of a local file.

PostgreSQL aggregates the mart and writes the CSV itself (`COPY ... TO STDOUT`); Python
only moves the bytes. The date in the key is the newest date received the export covers,
so re-running on the same data rewrites the same object with the same content.
"""

import csv
import io
from datetime import UTC, datetime

import dagster as dg

from signalbox.domains.complaints import GROUP
from signalbox.domains.complaints.models import COMPLAINTS_DAILY_MART
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource

EXPORT_KEY = dg.AssetKey(["exports", "complaints_by_state_product_company"])
MART = ".".join(COMPLAINTS_DAILY_MART.path)  # dagster-dbt's key is [schema, model]
DATASET = "complaints_export"
COLUMNS = ("state", "product", "company", "complaints")

EXPORT_SQL = f"""
SELECT state, product, company, sum(complaints)::bigint AS complaints
FROM {MART}
GROUP BY state, product, company
ORDER BY complaints DESC, state NULLS LAST, product, company
"""


@dg.asset(
    key=EXPORT_KEY,
    deps=[COMPLAINTS_DAILY_MART],
    group_name=GROUP,
    kinds={"postgres", "s3", "csv"},
    description=(
        "CSV of complaints by state, product and company (the seed's complaints.csv, with "
        "counts), aggregated in PostgreSQL from the daily mart and written to the object "
        "store under complaints_export/date=<newest date received>/part-0.csv. A complaint "
        "without a state has an empty state cell."
    ),
)
def complaints_by_state_product_company(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    import pandas as pd

    buffer = io.StringIO()
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT max(date_received), count(*) FROM {MART}")
        newest, mart_rows = cur.fetchone()
        cur.copy_expert(f"COPY ({EXPORT_SQL}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    as_of = newest or datetime.now(UTC).date()
    data = buffer.getvalue().encode("utf-8")
    key = object_store.partition_key(DATASET, as_of, ext="csv")
    stored = object_store.put_bytes(key, data, content_type="text/csv; charset=utf-8")
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    preview = pd.DataFrame(rows[1:11], columns=rows[0]) if len(rows) > 1 else None
    context.log.info(f"complaints export: {len(rows) - 1} rows -> {stored.url}")
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.path(stored.url),
            "dagster/row_count": len(rows) - 1,
            "bytes": stored.size,
            "as_of_date_received": str(as_of),
            "mart_rows": mart_rows,
            "preview": dg.MetadataValue.md(
                preview.to_markdown(index=False) if preview is not None else "-"
            ),
        }
    )
