"""Recomputing the aggregates from the stream's JSON: the warehouse engine equals the
processor's own aggregates, routing again follows routing.yaml, and PySpark equals the
warehouse engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pytest

from signalbox.domains.tickets import store as ticket_store
from signalbox.domains.tickets.process import TicketProcessor
from signalbox.domains.tickets.produce import produce_tickets
from signalbox.domains.tickets.recompute import (
    DAILY_DATASET,
    aggregate_in_spark,
    aggregate_in_warehouse,
    routed_keys,
    tickets_daily_aggregates,
)
from signalbox.domains.tickets.tickets import Routing, default_routing, generate

pytestmark = pytest.mark.timeout(600)
WINDOW = timedelta(seconds=60)  # the stream's default aggregation window


@pytest.fixture
def processed(kafka, stream, store, warehouse):
    produce_tickets(
        kafka, stream.topic, stream.partitions, 500, tickets=list(generate(500, seed=8))
    )
    TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
    return datetime.now(UTC).date().isoformat()


def keyed(rows) -> dict[tuple, int]:
    return {(r["window_start"], r["request_type"], r["team"], r["priority"]): r["tickets"]
            for r in rows}  # fmt: skip


def stream_aggregates(warehouse) -> dict[tuple, int]:
    rows = warehouse.query(
        f"SELECT window_start, request_type, team, priority, tickets"
        f" FROM {ticket_store.AGGREGATES_TABLE}"
    )
    return {(ticket_store.iso(w), rt, t, p): n for w, rt, t, p, n in rows}


def test_the_backfill_recomputes_what_the_stream_aggregated(processed, store, warehouse, stream):
    day = processed
    result = dg.materialize(
        [tickets_daily_aggregates],
        partition_key=day,
        resources={"warehouse": warehouse, "object_store": store, "ticket_stream": stream},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    stored = orjson.loads(store.get_bytes(f"{DAILY_DATASET}/date={day}/part-0.json"))
    assert keyed(stored) == stream_aggregates(warehouse)
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["tickets"].value == 500 and metadata["engine"].value == "warehouse"


def test_recomputing_routes_again_with_the_routing_as_it_is_now(processed, store, warehouse):
    keys = routed_keys(store, processed)
    everyone = Routing({}, "one_team")
    rows = aggregate_in_warehouse(warehouse, store, keys, everyone, WINDOW)
    assert {r["team"] for r in rows} == {"one_team"}
    assert sum(r["tickets"] for r in rows) == 500


@pytest.mark.slow
def test_pyspark_recomputes_the_same_aggregates(processed, store, warehouse):
    pytest.importorskip(
        "pyspark", reason="the spark extra is not installed (make test installs it)"
    )
    keys = routed_keys(store, processed)
    routing = default_routing()
    on_warehouse = aggregate_in_warehouse(warehouse, store, keys, routing, WINDOW)
    on_spark = aggregate_in_spark(store, keys, routing, WINDOW, master="local[2]")
    assert on_spark == on_warehouse
    assert sum(r["tickets"] for r in on_spark) == 500
