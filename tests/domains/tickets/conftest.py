"""Fixtures for the tickets stream: the embedded Kafka-API broker (Tansu, in memory) and
moto's S3 server for the package, and per test a topic, a group, an object-store prefix
and a warehouse database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from moto_s3 import aws_environment, moto_server

from signalbox.domains.tickets.settings import TicketStreamResource
from signalbox.platform.embedded.kafka import EmbeddedKafka
from signalbox.platform.kafka import KafkaResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource

BUCKET = "tickets-test"


@pytest.fixture(scope="package")
def aws_env(tmp_path_factory) -> Iterator[None]:
    with aws_environment(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="package")
def moto_url(aws_env) -> Iterator[str]:
    with moto_server() as url:
        ObjectStoreResource(bucket=BUCKET, endpoint_url=url).ensure_bucket()
        yield url


@pytest.fixture(scope="package")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("kafka") / "tansu.log"
    with EmbeddedKafka(log_path=log) as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaResource:
    return KafkaResource(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def stream() -> TicketStreamResource:
    """A topic and group of the test's own; short sessions so a rebalance takes seconds
    (Tansu's group join waits about half the session timeout)."""
    name = f"tickets-{uuid.uuid4().hex[:8]}"
    return TicketStreamResource(
        topic=name,
        dead_letter_topic=f"{name}.dead-letter",
        group_id=f"{name}-group",
        session_timeout_ms=2000,
        max_wait_seconds=0.5,
        lag_interval_seconds=0.0,
    )


@pytest.fixture
def store(moto_url: str) -> ObjectStoreResource:
    return ObjectStoreResource(
        bucket=BUCKET, endpoint_url=moto_url, prefix=f"t-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as warehouse:
        yield warehouse
