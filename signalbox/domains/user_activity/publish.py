"""The activity marts copied into the PostgreSQL warehouse, for the dashboards.

Superset reaches ClickHouse only through a server (not the embedded chDB), and the other
domains' marts are in PostgreSQL already: the day-grained activity marts are small (one
KPI row, a few dozen dimension rows and 96 buckets a day), so each run copies its window's
days into the `activity` schema, replacing them in one transaction.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
import psycopg2.extras

from signalbox.domains.user_activity import GROUP
from signalbox.domains.user_activity.models import activity_dbt_models
from signalbox.domains.user_activity.raw import USER_ACTIVITY_DAILY
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.dbt import model_key
from signalbox.platform.settings import engine_tags
from signalbox.platform.warehouse import WarehouseResource

SCHEMA = "activity"


@dataclass(frozen=True)
class Published:
    model: str  # the dbt-clickhouse mart
    table: str  # its copy in PostgreSQL, in SCHEMA
    day_column: str
    # a view `<table>_long` (keys..., metric, value) of every other numeric column: one
    # chart whose Metric filter a link can preselect (the alerted metric)
    long_keys: tuple[str, ...] = ()

    @property
    def source_key(self) -> dg.AssetKey:
        return model_key(activity_dbt_models, self.model)

    @property
    def key(self) -> dg.AssetKey:
        """exports/<model>: what leaves the ClickHouse side for the dashboards."""
        return dg.AssetKey(["exports", self.model])


PUBLISHED = (
    Published("activity_kpis_daily", "kpis_daily", "event_date"),
    Published("activity_daily_dimensions", "daily_dimensions", "event_date"),
    Published("activity_metrics_15min", "metrics_15min", "bucket_date", ("bucket_start",)),
)


def postgres_type(clickhouse_type: str) -> str:
    """The PostgreSQL column type for a ClickHouse one (the types the activity marts use)."""
    inner = clickhouse_type
    for wrapper in ("Nullable(", "LowCardinality("):
        while inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    if inner == "Date" or inner == "Date32":
        return "date"
    if inner.startswith("DateTime"):
        return "timestamptz"
    if inner.startswith(("UInt", "Int")):
        return "numeric" if inner in ("UInt64", "UInt128", "Int128", "UInt256") else "bigint"
    if inner.startswith(("Float", "Decimal")):
        return "double precision"
    if inner == "Bool":
        return "boolean"
    if inner in ("String", "UUID") or inner.startswith(("FixedString", "Enum")):
        return "text"
    raise ValueError(f"no PostgreSQL type for the ClickHouse type {clickhouse_type}")


def publish_days(
    cur, spec: Published, columns: list[str], types: list[str], rows, first: date, last: date
) -> int:
    """Replace the days first..last of the published table with `rows` (the caller commits)."""
    cur.execute(f"create schema if not exists {SCHEMA}")
    definition = ", ".join(f"{name} {kind}" for name, kind in zip(columns, types, strict=True))
    cur.execute(f"create table if not exists {SCHEMA}.{spec.table} ({definition})")
    cur.execute(
        f"delete from {SCHEMA}.{spec.table} where {spec.day_column} between %s and %s",
        (first, last),
    )
    psycopg2.extras.execute_values(
        cur, f"insert into {SCHEMA}.{spec.table} ({', '.join(columns)}) values %s", rows
    )
    if spec.long_keys:
        numeric = ("bigint", "numeric", "double precision")
        metrics = [
            name
            for name, kind in zip(columns, types, strict=True)
            if kind in numeric and name not in spec.long_keys
        ]
        pairs = ", ".join(f"('{name}', {name}::double precision)" for name in metrics)
        cur.execute(
            f"create or replace view {SCHEMA}.{spec.table}_long as "
            f"select {', '.join(spec.long_keys)}, m.metric, m.value "
            f"from {SCHEMA}.{spec.table} cross join lateral (values {pairs}) as m(metric, value)"
        )
    return len(rows)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            spec.key,
            deps=[spec.source_key],
            group_name=GROUP,
            kinds={"clickhouse", "postgres"},
            description=(
                f"`{spec.model}` copied into the warehouse as `{SCHEMA}.{spec.table}` for the "
                "dashboards (Superset reads PostgreSQL); each run replaces its days."
            ),
        )
        for spec in PUBLISHED
    ],
    partitions_def=USER_ACTIVITY_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags=engine_tags("clickhouse"),
    name="activity_marts_published",
)
def activity_marts_published(
    context: dg.AssetExecutionContext,
    clickhouse: ClickHouseResource,
    warehouse: WarehouseResource,
):
    window = context.partition_time_window
    first, last = window.start.date(), (window.end - timedelta(days=1)).date()
    database = f"{clickhouse.target_database()}_marts"
    copies: list[tuple[Published, list[str], list[str], list[tuple[Any, ...]]]] = []
    with clickhouse.client("publishing the activity marts") as client:
        for spec in PUBLISHED:
            result = client.query(
                f"select * from {database}.{spec.model} "
                f"where {spec.day_column} between %(first)s and %(last)s "
                f"order by {spec.day_column}",
                parameters={"first": first, "last": last},
            )
            types = [postgres_type(kind.name) for kind in result.column_types]
            copies.append((spec, list(result.column_names), types, result.result_rows))
    with warehouse.connect() as conn, conn.cursor() as cur:
        # one publisher at a time: two runs creating the schema, tables or view at once
        # collide (`create ... if not exists` is not safe against a concurrent create)
        cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"publish {SCHEMA}",))
        counts = {spec: publish_days(cur, spec, *rest, first, last) for spec, *rest in copies}
        unknown = unknown_shares(cur, first, last)
    for spec, rows in counts.items():
        metadata: dict[str, Any] = {
            "dagster/row_count": rows,
            "table": f"{SCHEMA}.{spec.table}",
            "days": f"{first}..{last}",
        }
        if spec.table == "daily_dimensions":
            metadata |= unknown
        yield dg.MaterializeResult(asset_key=spec.key, metadata=metadata)


def unknown_shares(cur, first: date, last: date) -> dict[str, Any]:
    """How much of the window's received messages the breakdowns cannot place: receivers
    never seen with a profile up to that day (`unknown`), overall and per day."""
    cur.execute(
        f"""select event_date,
                   sum(messages_received) filter (where dimension_value = 'unknown'),
                   sum(messages_received)
            from {SCHEMA}.daily_dimensions
            where dimension = 'os' and event_date between %s and %s
            group by event_date order by event_date""",
        (first, last),
    )
    days = cur.fetchall()
    unknown = sum(int(u or 0) for _, u, _ in days)
    total = sum(int(t or 0) for _, _, t in days)
    lines = ["| day | unknown share of messages received |", "|---|---|"]
    lines += [f"| {day} | {int(u or 0) / t:.1%} |" for day, u, t in days if t]
    return {
        "unknown_share_messages_received": round(unknown / total, 4) if total else 0.0,
        "unknown_share_by_day": dg.MetadataValue.md("\n".join(lines)),
    }
