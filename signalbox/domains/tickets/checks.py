"""Checks on the stream: the processors keep up (lag), and they are alive (stall).

Both read the broker (end offsets against the group's committed offsets) and the
warehouse (when the last batch was written), and run every five minutes on their own
schedule: the processor runs outside Dagster, so no run of it could trigger them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from signalbox.domains.tickets import store
from signalbox.domains.tickets.raw import TICKETS_ROUTED
from signalbox.domains.tickets.settings import TicketStreamResource
from signalbox.platform.kafka import KafkaError, KafkaResource
from signalbox.platform.warehouse import WarehouseResource


def _offsets(kafka: KafkaResource, stream: TicketStreamResource) -> dict[str, object]:
    partitions = kafka.group_lag(stream.group_id, stream.topic)
    table = "\n".join(
        ["| partition | committed | end | lag |", "|---|---|---|---|"]
        + [f"| {p.partition} | {p.committed} | {p.end} | {p.lag} |" for p in partitions]
    )
    return {"lag": sum(p.lag for p in partitions), "partitions": dg.MetadataValue.md(table)}


def _broker_down(kafka: KafkaResource, exc: Exception) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        metadata={"problem": f"the broker at {kafka.bootstrap_servers} did not answer: {exc}"},
    )


@dg.asset_check(
    asset=TICKETS_ROUTED,
    description=(
        "Consumer lag: messages on the tickets topic not yet committed by the processors' "
        "group. Fails above SIGNALBOX_TICKETS_MAX_LAG (default 1000)."
    ),
)
def tickets_consumer_lag(
    kafka: KafkaResource, ticket_stream: TicketStreamResource
) -> dg.AssetCheckResult:
    try:
        metadata = _offsets(kafka, ticket_stream)
    except KafkaError as exc:
        return _broker_down(kafka, exc)
    metadata["max_lag"] = ticket_stream.max_lag
    return dg.AssetCheckResult(passed=metadata["lag"] <= ticket_stream.max_lag, metadata=metadata)


def last_batch_at(warehouse: WarehouseResource) -> datetime | None:
    """When the processors last wrote a batch (a routed ticket or a dead letter)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        store.create_tables(cur)
        cur.execute(
            f"SELECT greatest((SELECT max(routed_at) FROM {store.ROUTED_TABLE}),"
            f" (SELECT max(received_at) FROM {store.DEAD_LETTERS_TABLE}))"
        )
        return cur.fetchone()[0]


def judge_stall(
    lag: int, last_batch: datetime | None, now: datetime, stall: timedelta
) -> str | None:
    """Why the stream is stalled, or None: messages wait and no batch came for `stall`."""
    if lag <= 0:
        return None
    if last_batch is None:
        return f"{lag} messages wait and no batch was ever processed"
    idle = now - last_batch
    if idle > stall:
        minutes = idle.total_seconds() / 60
        return f"{lag} messages wait and the last batch was {minutes:.0f} minutes ago"
    return None


@dg.asset_check(
    asset=TICKETS_ROUTED,
    description=(
        "The processors are alive: fails when messages wait on the topic and no batch was "
        "written for SIGNALBOX_TICKETS_STALL_MINUTES (default 10). An idle topic passes."
    ),
)
def tickets_processor_stalled(
    kafka: KafkaResource, ticket_stream: TicketStreamResource, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    try:
        metadata = _offsets(kafka, ticket_stream)
    except KafkaError as exc:
        return _broker_down(kafka, exc)
    last = last_batch_at(warehouse)
    now = datetime.now(UTC)
    problem = judge_stall(
        int(metadata["lag"]), last, now, timedelta(minutes=ticket_stream.stall_minutes)
    )
    metadata["last_batch_at"] = last.isoformat() if last else "-"
    metadata["stall_minutes"] = ticket_stream.stall_minutes
    if problem:
        metadata["problem"] = problem
    return dg.AssetCheckResult(passed=problem is None, metadata=metadata)


stream_checks = [tickets_consumer_lag, tickets_processor_stalled]

tickets_checks_job = dg.define_asset_job(
    "tickets_stream_checks",
    selection=dg.AssetSelection.checks(*stream_checks),
    description="Consumer lag and processor liveness of the tickets stream.",
)
tickets_checks_schedule = dg.ScheduleDefinition(
    name="tickets_stream_checks_every_5_minutes",
    job=tickets_checks_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
