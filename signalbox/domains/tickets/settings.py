"""The ticket stream's settings: topics, consumer group, batching, windows and the bounds
its checks hold it to. Every field has an environment variable; the defaults suit the demo."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from signalbox.platform.settings import env_fields, env_int_fields


class TicketStreamResource(dg.ConfigurableResource):
    topic: str = Field(default="tickets", description="SIGNALBOX_TICKETS_TOPIC")
    partitions: int = Field(
        default=3, description="SIGNALBOX_TICKETS_PARTITIONS: the topic's partitions when created"
    )
    dead_letter_topic: str = Field(
        default="tickets.dead-letter", description="SIGNALBOX_TICKETS_DEAD_LETTER_TOPIC"
    )
    group_id: str = Field(
        default="signalbox-tickets", description="SIGNALBOX_TICKETS_GROUP: the processors' group"
    )
    max_batch: int = Field(
        default=5000,
        description=(
            "Messages per batch at most: reached only when messages wait (a backlog); "
            "otherwise the wait below closes the batch"
        ),
    )
    max_wait_seconds: float = Field(default=1.0, description="A batch waits this long at most.")
    window_seconds: int = Field(default=60, description="Aggregation window of the aggregates.")
    max_message_bytes: int = Field(
        default=64 * 1024, description="Larger messages are dead letters."
    )
    session_timeout_ms: int = Field(
        default=10_000,
        description=(
            "SIGNALBOX_TICKETS_SESSION_TIMEOUT_MS: a dead processor's partitions move after "
            "this (Kafka refuses less than its group.min.session.timeout.ms, 6 s by default)"
        ),
    )
    write_attempts: int = Field(
        default=5, description="Attempts to write a batch before the processor gives up."
    )
    retry_wait_seconds: float = Field(
        default=1.0, description="First wait between attempts (doubling, at most 30 s)."
    )
    lag_interval_seconds: float = Field(
        default=5.0, description="Lag is measured this often at most."
    )
    max_lag: int = Field(
        default=1000, description="SIGNALBOX_TICKETS_MAX_LAG: the lag check fails above it"
    )
    stall_minutes: int = Field(
        default=10,
        description=(
            "SIGNALBOX_TICKETS_STALL_MINUTES: with messages waiting, no batch for this long "
            "fails the stall check"
        ),
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> TicketStreamResource:
        fields = {
            **env_fields(
                topic="SIGNALBOX_TICKETS_TOPIC",
                dead_letter_topic="SIGNALBOX_TICKETS_DEAD_LETTER_TOPIC",
                group_id="SIGNALBOX_TICKETS_GROUP",
            ),
            **env_int_fields(
                partitions="SIGNALBOX_TICKETS_PARTITIONS",
                session_timeout_ms="SIGNALBOX_TICKETS_SESSION_TIMEOUT_MS",
                max_lag="SIGNALBOX_TICKETS_MAX_LAG",
                stall_minutes="SIGNALBOX_TICKETS_STALL_MINUTES",
            ),
        }
        return cls(**{**fields, **overrides})


def changed(stream: TicketStreamResource, changes: dict[str, Any]) -> TicketStreamResource:
    """A copy with some settings changed (a resource's own `model_copy` keeps the original
    configuration for Dagster's invocation)."""
    return TicketStreamResource(**{**stream.model_dump(), **changes})
