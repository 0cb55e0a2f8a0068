"""The ticket producer (the seed's, keyed and idempotent): `signalbox tickets produce`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from signalbox.domains.tickets.tickets import Ticket, generate
from signalbox.platform.kafka import KafkaResource


@dataclass(frozen=True)
class ProduceSummary:
    sent: int
    failed: int
    seconds: float
    first_error: str | None = None

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (
            f"sent {self.sent}, failed {self.failed} in {self.seconds:.2f}s "
            f"({self.per_second:,.0f}/s)"
        )
        return text + (f"; first error: {self.first_error}" if self.first_error else "")


def produce_tickets(
    kafka: KafkaResource,
    topic: str,
    partitions: int,
    count: int,
    *,
    rate: float | None = None,
    tickets: Iterable[Ticket] | None = None,
    encoded: Iterable[tuple[str, bytes]] | None = None,
    on_delivered: Callable[[int], None] | None = None,
    timeout: float = 30.0,
) -> ProduceSummary:
    """Send `count` generated tickets (or `tickets`, or `encoded` (ticket id, JSON) pairs),
    keyed by ticket id, at most `rate` a second; waits for every delivery report.
    `on_delivered(n)` is called as reports arrive (a progress bar)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 tickets a second, got {rate}")
    kafka.ensure_topic(topic, partitions)
    producer = kafka.producer()
    sent = failed = 0
    first_error: list[str] = []

    reported = 0

    def delivered(error, message) -> None:
        nonlocal sent, failed, reported
        if error is None:
            sent += 1
        else:
            failed += 1
            if not first_error:
                first_error.append(str(error))
        if on_delivered is not None and sent + failed - reported >= 500:
            on_delivered(sent + failed - reported)  # a progress bar moves in steps
            reported = sent + failed

    began = time.monotonic()
    if encoded is None:
        source = tickets if tickets is not None else generate(count)
        encoded = ((ticket.ticket_id, ticket.to_json()) for ticket in source)
    for number, (key, value) in enumerate(encoded):
        if number >= count:
            break
        if rate is not None:
            due = began + number / rate
            while (wait := due - time.monotonic()) > 0:
                producer.poll(min(wait, 0.1))
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        if number % 1000 == 0:
            producer.poll(0)  # serve delivery reports as they come
    remaining = producer.flush(timeout)
    if on_delivered is not None and sent + failed > reported:
        on_delivered(sent + failed - reported)
    if remaining:
        failed += remaining
        if not first_error:
            first_error.append(f"{remaining} not delivered in {timeout:.0f}s")
    return ProduceSummary(
        sent, failed, time.monotonic() - began, first_error[0] if first_error else None
    )
