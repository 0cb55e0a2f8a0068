"""The tickets dbt models over what the processor wrote: lineage from the stream's assets,
marts that equal a pandas computation over the routed tickets, and dbt tests as checks."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from signalbox.domains.tickets.process import TicketProcessor
from signalbox.domains.tickets.produce import produce_tickets
from signalbox.domains.tickets.tickets import generate

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(tmp_path_factory, fresh_database, moto_url, kafka_bootstrap, code_location):
    import signalbox.domains.tickets
    from signalbox.domains.tickets.settings import TicketStreamResource
    from signalbox.platform.dbt import dbt_resource, warehouse_project
    from signalbox.platform.kafka import KafkaResource
    from signalbox.platform.object_store import ObjectStoreResource

    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    stream = TicketStreamResource(
        topic="tickets-models", group_id="tickets-models", session_timeout_ms=2000,
        dead_letter_topic="tickets-models.dlq",
    )  # fmt: skip
    store = ObjectStoreResource(bucket="tickets-test", endpoint_url=moto_url, prefix="models")
    with fresh_database() as warehouse:
        produce_tickets(kafka, stream.topic, 3, 400, tickets=list(generate(400, seed=4)))
        producer = kafka.producer()
        producer.produce(stream.topic, key=b"x", value=b"not json")
        producer.flush(10)
        TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
        resources = {
            "warehouse": warehouse,
            "warehouse_dbt": dbt_resource(warehouse_project),
            "kafka": kafka,
            "ticket_stream": stream,
            "object_store": store,
        }
        defs = dg.load_definitions_from_package_module(
            signalbox.domains.tickets, resources=resources
        )
        result = defs.resolve_job_def("tickets_models").execute_in_process(
            instance=dg.DagsterInstance.ephemeral()
        )
        yield defs, result, warehouse


def test_the_models_build_downstream_of_the_stream_and_their_tests_pass(built):
    defs, result, _ = built
    assert result.success
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {
            p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(key)).parent_keys
        }

    assert parents("staging/stg_tickets__routed") == {"raw/tickets_routed"}
    assert parents("staging/stg_tickets__dead_letters") == {"raw/tickets_dead_letters"}
    assert parents("marts/tickets_per_team_hourly") == {"staging/stg_tickets__routed"}
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {
        "staging/stg_tickets__routed",
        "staging/stg_tickets__dead_letters",
        "marts/tickets_per_team_hourly",
        "marts/tickets_backlog_by_priority",
        "marts/tickets_time_to_route",
    }
    checks = result.get_asset_check_evaluations()
    assert "assert_aggregates_count_every_ticket_once" in {c.check_name for c in checks}
    assert len(checks) >= 15 and all(c.passed for c in checks)


def test_the_marts_equal_pandas_over_the_routed_tickets(built):
    _, _, warehouse = built
    with warehouse.connect() as conn:
        routed = pd.read_sql("SELECT * FROM raw.tickets_routed", conn)
        hourly = pd.read_sql("SELECT * FROM marts.tickets_per_team_hourly", conn)
        backlog = pd.read_sql("SELECT * FROM marts.tickets_backlog_by_priority", conn)
        latency = pd.read_sql("SELECT * FROM marts.tickets_time_to_route", conn)
    assert len(routed) == 400
    routed["hour_start"] = routed["created_at"].dt.tz_convert("UTC").dt.floor("h")
    expected = routed.groupby(["hour_start", "team"]).agg(
        tickets=("ticket_id", "size"),
        urgent_tickets=("priority", lambda p: int((p == "urgent").sum())),
        clients=("client_id", "nunique"),
    )
    got = hourly.assign(hour_start=hourly["hour_start"].dt.tz_convert("UTC")).set_index(
        ["hour_start", "team"]
    )[["tickets", "urgent_tickets", "clients"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    by_priority = routed.groupby(["priority", "team"]).size()
    assert backlog.set_index(["priority", "team"])["open_tickets"].sort_index().tolist() == (
        by_priority.sort_index().tolist()
    )
    seconds = (routed["routed_at"] - routed["created_at"]).dt.total_seconds().clip(lower=0)
    p95 = seconds.groupby([routed["hour_start"], routed["team"]]).quantile(0.95)
    assert latency["p95_seconds"].sort_values().to_numpy() == pytest.approx(
        p95.sort_values().to_numpy()
    )
