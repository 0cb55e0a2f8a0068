"""The stream broker: any Kafka-API cluster through confluent-kafka (librdkafka).

`SIGNALBOX_KAFKA_BOOTSTRAP` names the cluster (Apache Kafka, Redpanda, a managed service);
unset, the local stack starts the embedded broker (`embedded/kafka.py`) and sets it.
Security comes from the environment too (`SIGNALBOX_KAFKA_SECURITY_PROTOCOL`, SASL
mechanism, username and password, a CA file), never from code or run config.

Topics are created explicitly with their partition count (`ensure_topic`), never by a
broker's auto-create. `end_offsets` reads the true end of each partition, also on brokers
whose high watermark is wrong (Tansu reports the base offset of the last batch + 1).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from signalbox.platform.settings import env_fields

if TYPE_CHECKING:  # imported where used: librdkafka is not needed to load the code location
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

BOOTSTRAP_ENV = "SIGNALBOX_KAFKA_BOOTSTRAP"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class KafkaError(RuntimeError):
    """The broker is unreachable or refused an operation; says which and where."""


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None  # None: the group never committed here
    end: int  # the offset after the partition's last message

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


class KafkaResource(dg.ConfigurableResource):
    """Connection settings of one Kafka-API cluster, and the clients built from them."""

    bootstrap_servers: str | None = Field(
        default=None, description=f"{BOOTSTRAP_ENV}: host:port[,host:port...]"
    )
    security_protocol: str = Field(
        default="PLAINTEXT",
        description="SIGNALBOX_KAFKA_SECURITY_PROTOCOL: " + "|".join(SECURITY_PROTOCOLS),
    )
    sasl_mechanism: str | None = Field(
        default=None,
        description="SIGNALBOX_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
    )
    sasl_username: str | None = Field(default=None, description="SIGNALBOX_KAFKA_SASL_USERNAME")
    sasl_password: str | None = Field(default=None, description="SIGNALBOX_KAFKA_SASL_PASSWORD")
    ssl_ca_location: str | None = Field(
        default=None, description="SIGNALBOX_KAFKA_SSL_CA_LOCATION: CA bundle for TLS"
    )
    client_id: str = Field(default="signalbox", description="client.id sent to the broker")
    timeout_seconds: float = Field(default=10.0, description="Admin and metadata calls.")

    @classmethod
    def from_env(cls, **overrides: Any) -> KafkaResource:
        fields = env_fields(
            bootstrap_servers=BOOTSTRAP_ENV,
            security_protocol="SIGNALBOX_KAFKA_SECURITY_PROTOCOL",
            sasl_mechanism="SIGNALBOX_KAFKA_SASL_MECHANISM",
            sasl_username="SIGNALBOX_KAFKA_SASL_USERNAME",
            sasl_password="SIGNALBOX_KAFKA_SASL_PASSWORD",
            ssl_ca_location="SIGNALBOX_KAFKA_SSL_CA_LOCATION",
        )
        return cls(**{**fields, **overrides})

    # -- client configuration

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings shared by every client, plus `extra` (dots as in librdkafka)."""
        if not self.bootstrap_servers:
            raise KafkaError(
                f"{BOOTSTRAP_ENV} is not set: point it at a Kafka-API cluster, or run through "
                "`signalbox demo`, which starts an embedded broker"
            )
        protocol = self.security_protocol.upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise KafkaError(
                f"SIGNALBOX_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)},"
                f" got {self.security_protocol!r}"
            )
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": protocol,
        }
        if protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.sasl_mechanism or "PLAIN"
            if self.sasl_username:
                config["sasl.username"] = self.sasl_username
            if self.sasl_password:
                config["sasl.password"] = self.sasl_password
        if self.ssl_ca_location and protocol.endswith("SSL"):
            config["ssl.ca.location"] = self.ssl_ca_location
        config.update(extra)
        return config

    def producer(self, **extra: Any) -> Producer:
        """An idempotent producer (acks=all, ordered retries, no duplicates on retry)."""
        from confluent_kafka import Producer

        settings = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, **extra}
        return Producer(self.client_config(**settings))

    def consumer(self, group_id: str, **extra: Any) -> Consumer:
        """A consumer in `group_id` that commits only when told to."""
        from confluent_kafka import Consumer

        settings = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **extra,
        }
        return Consumer(self.client_config(**settings))

    def admin(self) -> AdminClient:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_config())

    # -- topics and offsets

    def ensure_topic(self, name: str, partitions: int, replication_factor: int = 1) -> bool:
        """Create `name` with `partitions` if it does not exist; True if it was created.
        An existing topic with fewer partitions is an error (keys would move partition
        if it were grown silently)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic

        if partitions < 1:
            raise ValueError(f"a topic needs at least one partition, got {partitions}")
        admin = self.admin()
        existing = self._topics(admin)
        if name in existing:
            have = len(existing[name].partitions)
            if have < partitions:
                raise KafkaError(
                    f"topic {name!r} on {self.bootstrap_servers} has {have} partitions, "
                    f"configured {partitions}: add partitions on purpose (kafka-topics --alter)"
                )
            return False
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
            operation_timeout=self.timeout_seconds,
        )
        try:
            futures[name].result(self.timeout_seconds)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                return False  # another process won the race
            raise KafkaError(f"creating topic {name!r} on {self.bootstrap_servers}: {exc}") from exc
        return True

    def partitions(self, topic: str) -> list[int]:
        topics = self._topics(self.admin())
        if topic not in topics:
            raise KafkaError(f"topic {topic!r} does not exist on {self.bootstrap_servers}")
        return sorted(topics[topic].partitions)

    def end_offsets(self, topic: str, partitions: list[int] | None = None) -> dict[int, int]:
        """The offset after each partition's last message.

        The high watermark, checked by reading the partition's last batch from one before
        it to the end: on a correct broker that reads one message and agrees; on Tansu,
        whose watermark is the last batch's base offset + 1, it finds the real end."""
        from confluent_kafka import KafkaError as RdKafkaError
        from confluent_kafka import TopicPartition

        probe = self.consumer(
            f"signalbox-probe-{os.getpid()}",
            **{"enable.partition.eof": True, "fetch.wait.max.ms": 10},
        )
        ends: dict[int, int] = {}
        try:
            for partition in partitions or self.partitions(topic):
                tp = TopicPartition(topic, partition)
                low, high = probe.get_watermark_offsets(tp, timeout=self.timeout_seconds)
                ends[partition] = high
                if high <= low:
                    continue
                probe.assign([TopicPartition(topic, partition, max(low, high - 1))])
                while True:
                    message = probe.poll(self.timeout_seconds)
                    if message is None:
                        break
                    if message.error():
                        if message.error().code() != RdKafkaError._PARTITION_EOF:
                            raise KafkaError(
                                f"reading the end of {topic}[{partition}]: {message.error()}"
                            )
                        break
                    ends[partition] = max(ends[partition], message.offset() + 1)
                probe.unassign()
        finally:
            probe.close()
        return ends

    def committed_offsets(
        self, group_id: str, topic: str, partitions: list[int] | None = None
    ) -> dict[int, int | None]:
        """The group's committed offset per partition (None: nothing committed yet)."""
        from confluent_kafka import TopicPartition

        consumer = self.consumer(group_id)
        try:
            committed = consumer.committed(
                [TopicPartition(topic, p) for p in partitions or self.partitions(topic)],
                timeout=self.timeout_seconds,
            )
        finally:
            consumer.close()
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in committed}

    def group_lag(self, group_id: str, topic: str) -> list[PartitionLag]:
        """Per partition: the group's committed offset, the end, and the lag between them."""
        partitions = self.partitions(topic)
        ends = self.end_offsets(topic, partitions)
        committed = self.committed_offsets(group_id, topic, partitions)
        return [PartitionLag(p, committed.get(p), ends[p]) for p in sorted(ends)]

    def lag(self, group_id: str, topic: str) -> dict[int, int]:
        """Messages not yet committed by the group, per partition."""
        return {p.partition: p.lag for p in self.group_lag(group_id, topic)}

    def require_reachable(self) -> None:
        """A one-line `KafkaError` unless the first bootstrap address accepts a TCP
        connection (librdkafka itself would retry quietly for its whole timeout)."""
        self.client_config()  # says so when no broker is configured at all
        host, _, port = self.bootstrap_servers.split(",")[0].strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
                return
        except (OSError, ValueError):
            raise KafkaError(f"no Kafka broker answers at {self.bootstrap_servers}") from None

    def _topics(self, admin: AdminClient) -> Mapping[str, Any]:
        from confluent_kafka import KafkaException

        try:
            return admin.list_topics(timeout=self.timeout_seconds).topics
        except KafkaException as exc:
            raise KafkaError(
                f"the Kafka broker at {self.bootstrap_servers} did not answer within "
                f"{self.timeout_seconds:.0f}s ({exc.args[0].str() if exc.args else exc})"
            ) from exc
