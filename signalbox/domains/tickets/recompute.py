"""Recomputing the aggregates from the stream's JSON in the object store, a day at a time.

The processor's aggregates are incremental; this is the batch path that rebuilds them from
the routed tickets it stored (`tickets/routed/date=D/*.jsonl`), with the routing as it is
now in routing.yaml, e.g. after a team mapping changed. A date range is one backfill of
the daily partitions, run as one run. Two engines give equal results:
- `warehouse` (default): the day's JSON lines are copied into PostgreSQL and aggregated
  there, one statement;
- `spark` (optional extra `signalbox[spark]`): PySpark on `spark_master` (`local[*]`
  here, a cluster in production). Locally Spark reads the files through a directory they
  are downloaded to; a cluster with hadoop-aws reads `s3a://` directly (`spark_reads_s3a`).
Each day's result lands as JSON at `tickets/daily_aggregates/date=D/part-0.json`.
"""

import io
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
import orjson
from pydantic import Field

from signalbox.domains.tickets import GROUP, store
from signalbox.domains.tickets.raw import TICKETS_ROUTED
from signalbox.domains.tickets.settings import TicketStreamResource
from signalbox.domains.tickets.tickets import Routing, default_routing
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource

DAILY_AGGREGATES = dg.AssetKey(["exports", "tickets_daily_aggregates"])
DAILY_DATASET = "tickets/daily_aggregates"
TICKETS_DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)


def routed_keys(object_store: ObjectStoreResource, day: str) -> list[str]:
    keys = object_store.list(f"{store.ROUTED_DATASET}/date={day}/")
    return [k for k in keys if k.endswith(".jsonl")]


def _row(window_epoch: int, window: int, request_type: str, team: str, priority: str, n) -> dict:
    start = datetime.fromtimestamp(window_epoch, UTC)
    return store.aggregate_row(start, window, request_type, team, priority, n)


def aggregate_in_warehouse(
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
    keys: Sequence[str],
    routing: Routing,
    window: timedelta,
) -> list[dict]:
    """Tickets per window, request type, team (routed again) and priority, each ticket
    once, computed by PostgreSQL over the files' lines."""
    seconds = int(window.total_seconds())
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _routed_lines (line jsonb) ON COMMIT DROP")
        # CSV whose quote and delimiter are bytes JSON never holds: each line taken as is
        copy = "COPY _routed_lines FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
        for key in keys:
            cur.copy_expert(copy, io.BytesIO(object_store.get_bytes(key)))
        cur.execute(
            """
            WITH tickets AS (
                SELECT DISTINCT ON (line ->> 'ticket_id')
                       line ->> 'request_type' AS request_type,
                       line ->> 'priority' AS priority,
                       (line ->> 'created_at')::timestamptz AS created_at
                FROM _routed_lines ORDER BY line ->> 'ticket_id'
            ), routing AS (
                SELECT * FROM unnest(%(types)s::text[], %(teams)s::text[]) AS r(request_type, team)
            )
            SELECT floor(extract(epoch FROM t.created_at) / %(window)s)::bigint * %(window)s,
                   t.request_type, coalesce(r.team, %(default)s), t.priority, count(*)
            FROM tickets AS t LEFT JOIN routing AS r ON r.request_type = t.request_type
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            """,
            {
                "types": list(routing.teams),
                "teams": list(routing.teams.values()),
                "default": routing.default_team,
                "window": seconds,
            },  # fmt: skip
        )
        return [_row(w, seconds, rt, team, pr, n) for w, rt, team, pr, n in cur.fetchall()]


def aggregate_in_spark(
    object_store: ObjectStoreResource,
    keys: Sequence[str],
    routing: Routing,
    window: timedelta,
    *,
    master: str = "local[*]",
    reads_s3a: bool = False,
    day: str | None = None,
) -> list[dict]:
    """The same aggregation in PySpark."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    seconds = int(window.total_seconds())
    schema = StructType([StructField(n, StringType()) for n in
                         ("ticket_id", "request_type", "priority", "created_at")])  # fmt: skip
    spark = (
        SparkSession.builder.master(master)
        .appName("signalbox-tickets-recompute")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    if not keys:
        return []
    with tempfile.TemporaryDirectory(prefix="signalbox-spark-") as scratch:
        if reads_s3a:
            folder = object_store.full_key(f"{store.ROUTED_DATASET}/date={day}/")
            source = f"s3a://{object_store.bucket}/{folder}"
        else:
            for number, key in enumerate(keys):
                Path(scratch, f"{number:06d}.jsonl").write_bytes(object_store.get_bytes(key))
            source = scratch
        tickets = spark.read.schema(schema).json(source).dropDuplicates(["ticket_id"])
        teams = spark.createDataFrame(list(routing.teams.items()), ["request_type", "routed_team"])
        created = F.to_timestamp("created_at").cast("double")
        rows = (
            tickets.join(F.broadcast(teams), "request_type", "left")
            .select(
                (F.floor(created / seconds) * seconds).cast("long").alias("window_epoch"),
                "request_type",
                F.coalesce("routed_team", F.lit(routing.default_team)).alias("team"),
                "priority",
            )
            .groupBy("window_epoch", "request_type", "team", "priority")
            .count()
            .orderBy("window_epoch", "request_type", "team", "priority")
            .collect()
        )
    return [
        _row(r.window_epoch, seconds, r.request_type, r.team, r.priority, r["count"]) for r in rows
    ]


class RecomputeConfig(dg.Config):
    engine: Literal["warehouse", "spark"] = Field(
        default="warehouse", description="warehouse (PostgreSQL) or spark (PySpark)"
    )
    spark_master: str = Field(default="local[*]", description="Spark master URL")
    spark_reads_s3a: bool = Field(
        default=False,
        description="Spark reads s3a:// itself (a cluster with hadoop-aws); else local files",
    )


@dg.asset(
    key=DAILY_AGGREGATES,
    group_name=GROUP,
    deps=[TICKETS_ROUTED],
    partitions_def=TICKETS_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "postgres", "s3"},
    description=(
        "The aggregates recomputed from the routed tickets' JSON (day of their batch), "
        "routed again with the routing as it is now: per window, request type, team and "
        f"priority, each ticket once; JSON at `{DAILY_DATASET}/date=D/part-0.json`. "
        "Run config `engine: spark` computes it with PySpark."
    ),
)
def tickets_daily_aggregates(
    context: dg.AssetExecutionContext,
    config: RecomputeConfig,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
    ticket_stream: TicketStreamResource,
) -> dg.MaterializeResult:
    window = timedelta(seconds=ticket_stream.window_seconds)
    routing = default_routing()
    began = time.monotonic()
    files = tickets = rows = 0
    for day in context.partition_keys:
        keys = routed_keys(object_store, day)
        if config.engine == "spark":
            result = aggregate_in_spark(object_store, keys, routing, window,
                                        master=config.spark_master,
                                        reads_s3a=config.spark_reads_s3a, day=day)  # fmt: skip
        else:
            result = aggregate_in_warehouse(warehouse, object_store, keys, routing, window)
        object_store.put_bytes(
            f"{DAILY_DATASET}/date={day}/part-0.json", orjson.dumps(result), "application/json"
        )
        files += len(keys)
        tickets += sum(r["tickets"] for r in result)
        rows += len(result)
        context.log.info(
            f"tickets {day}: {len(keys)} files, {sum(r['tickets'] for r in result)} tickets"
        )
    return dg.MaterializeResult(
        metadata={
            "engine": config.engine,
            "days": len(context.partition_keys),
            "files_read": files,
            "tickets": tickets,
            "rows": rows,
            "seconds": round(time.monotonic() - began, 2),
        }
    )
