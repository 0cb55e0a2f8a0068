"""The stream's checks on a real broker: lag above its bound fails, a stalled processor
fails, an idle or keeping-up stream passes; and the broker keeps its state on S3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signalbox.domains.tickets.checks import (
    judge_stall,
    tickets_consumer_lag,
    tickets_processor_stalled,
)
from signalbox.domains.tickets.process import TicketProcessor
from signalbox.domains.tickets.produce import produce_tickets
from signalbox.domains.tickets.settings import changed
from signalbox.platform.embedded.kafka import EmbeddedKafka
from signalbox.platform.embedded.s3 import DEMO_ACCESS_KEY, DEMO_SECRET_KEY
from signalbox.platform.kafka import KafkaResource
from signalbox.platform.object_store import ObjectStoreResource

pytestmark = pytest.mark.timeout(300)


def test_lag_fails_above_its_bound_and_passes_once_processed(kafka, stream, store, warehouse):
    stream = changed(stream, {"max_lag": 40})
    produce_tickets(kafka, stream.topic, stream.partitions, 100)
    behind = tickets_consumer_lag(kafka=kafka, ticket_stream=stream)
    assert not behind.passed and behind.metadata["lag"].value == 100
    TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
    caught_up = tickets_consumer_lag(kafka=kafka, ticket_stream=stream)
    assert caught_up.passed and caught_up.metadata["lag"].value == 0


def test_a_stalled_processor_fails_and_an_idle_topic_passes(kafka, stream, store, warehouse):
    kafka.ensure_topic(stream.topic, stream.partitions)
    idle = tickets_processor_stalled(kafka=kafka, ticket_stream=stream, warehouse=warehouse)
    assert idle.passed  # nothing waits: quiet is not a stall
    produce_tickets(kafka, stream.topic, stream.partitions, 10)
    never = tickets_processor_stalled(kafka=kafka, ticket_stream=stream, warehouse=warehouse)
    assert not never.passed and "ever processed" in never.metadata["problem"].value
    TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
    produce_tickets(kafka, stream.topic, stream.partitions, 10)  # waiting, but a batch just ran
    recent = tickets_processor_stalled(kafka=kafka, ticket_stream=stream, warehouse=warehouse)
    assert recent.passed and recent.metadata["lag"].value == 10


def test_the_stall_rule():
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    stall = timedelta(minutes=10)
    assert judge_stall(0, None, now, stall) is None
    assert judge_stall(5, now - timedelta(minutes=3), now, stall) is None
    assert "11 minutes ago" in judge_stall(5, now - timedelta(minutes=11), now, stall)
    assert "ever processed" in judge_stall(1, None, now, stall)


def test_an_unreachable_broker_fails_the_checks_with_a_reason(stream, warehouse):
    down = KafkaResource(bootstrap_servers="127.0.0.1:1", timeout_seconds=1)
    result = tickets_consumer_lag(kafka=down, ticket_stream=stream)
    assert not result.passed and "did not answer" in result.metadata["problem"].value


def test_the_embedded_broker_keeps_topics_data_and_offsets_on_s3(moto_url, tmp_path):
    ObjectStoreResource(bucket="broker-state", endpoint_url=moto_url).ensure_bucket()
    settings = dict(s3_endpoint=moto_url, bucket="broker-state", access_key=DEMO_ACCESS_KEY,
                    secret_key=DEMO_SECRET_KEY, log_path=tmp_path / "tansu.log")  # fmt: skip
    with EmbeddedKafka(**settings) as broker:
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
        produce_tickets(kafka, "kept", 2, 30)
        consumer = kafka.consumer("kept-group", **{"session.timeout.ms": 2000})
        consumer.subscribe(["kept"])
        read = 0
        while read < 10:
            read += len([m for m in consumer.consume(10 - read, 1.0) if not m.error()])
        consumer.commit(asynchronous=False)
        consumer.close()
    with EmbeddedKafka(**settings) as broker:  # a new process on the same bucket
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap)
        assert kafka.partitions("kept") == [0, 1]
        assert sum(kafka.end_offsets("kept").values()) == 30
        assert sum(kafka.lag("kept-group", "kept").values()) == 20
