"""The ticket processor: one member of a consumer group, in small batches.

A batch is what one `consume()` returns, bounded by `max_batch` messages and by
`max_wait` (about a second). For each batch:
1. every message is parsed; a valid ticket is routed to a team, anything else becomes a
   dead letter with its reason and original bytes;
2. routed tickets and their window aggregates are written as JSON to the object store,
   then tickets, aggregates and dead letters to the warehouse in one transaction, and the
   dead letters to the dead-letter topic;
3. only then are the offsets committed, and the batch reported to Dagster.
A crash anywhere before 3 redelivers the batch, and the idempotent writes (store.py) make
that harmless. Scale-out is Kafka's: more partitions and more processes in the group.
`stop()` (SIGTERM in the CLI) lets the batch in hand finish and commit, then leaves the
group cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from signalbox.domains.tickets import store
from signalbox.domains.tickets.settings import TicketStreamResource
from signalbox.domains.tickets.tickets import Rejected, Routing, default_routing, parse
from signalbox.platform.kafka import KafkaResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource

log = logging.getLogger("signalbox.tickets")


class ProcessorError(RuntimeError):
    """A batch could not be written after every attempt, or taken again after a refused
    commit; nothing of it was committed."""


@dataclass
class BatchResult:
    """What one batch did; becomes the materializations' metadata."""

    batch_ids: list[str]
    messages: int
    routed: int
    new_tickets: int  # not seen before (a redelivered batch has routed > new_tickets)
    dead_letters: int
    default_team: int  # routed to the default team (unknown request type)
    offsets: dict[int, tuple[int, int]]  # partition -> (first, last) offset
    files: list[str]
    reasons: dict[str, int]
    seconds: float
    lag: int | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))


Reporter = Callable[[BatchResult], None]


class TicketProcessor:
    def __init__(
        self,
        kafka: KafkaResource,
        warehouse: WarehouseResource,
        object_store: ObjectStoreResource,
        stream: TicketStreamResource,
        *,
        routing: Routing | None = None,
        report: Reporter | None = None,
        consumer_settings: dict[str, Any] | None = None,
    ):
        self.kafka = kafka
        self.warehouse = warehouse
        self.object_store = object_store
        self.stream = stream
        self.routing = routing or default_routing()
        self.report = report
        self.consumer_settings = consumer_settings or {}
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tickets-json")
        self.batches = 0
        self.totals = {
            "messages": 0,
            "routed": 0,
            "new_tickets": 0,
            "dead_letters": 0,
            "commits_failed": 0,  # shown when the processor stops (redelivered, not lost)
        }
        self._lag_checked = 0.0
        self._next_offset: dict[int, int] = {}  # per partition, the offset after the last taken
        self.skipped_repeats = 0

    def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, max_batches: int | None = None, idle_exit: float | None = None) -> None:
        """Consume until `stop()` (or `max_batches` batches, or `idle_exit` seconds with no
        message since the last batch or assignment: for tests and benchmarks). Before the
        first assignment the wait is longer by three session timeouts: after a crash the
        group waits that long for the dead member before it hands out its partitions."""
        from confluent_kafka import KafkaError as RdKafkaError

        stream = self.stream
        self.kafka.ensure_topic(stream.topic, stream.partitions)
        self.kafka.ensure_topic(stream.dead_letter_topic, 1)
        consumer = self.kafka.consumer(
            stream.group_id,
            **{
                "session.timeout.ms": stream.session_timeout_ms,
                "heartbeat.interval.ms": max(100, stream.session_timeout_ms // 4),
                "partition.assignment.strategy": "cooperative-sticky",
                **self.consumer_settings,
            },
        )
        dead_letter_producer = self.kafka.producer()

        idle_since = time.monotonic()
        first_assignment = 3 * stream.session_timeout_ms / 1000  # extra wait until then

        def assigned(consumer, partitions) -> None:
            nonlocal idle_since, first_assignment
            idle_since, first_assignment = time.monotonic(), 0.0  # idle counts from here
            for tp in partitions:  # a partition (re)gained starts at its committed offset
                self._next_offset.pop(tp.partition, None)

        consumer.subscribe([stream.topic], on_assign=assigned)
        try:
            while not self.stopping:
                messages = consumer.consume(stream.max_batch, stream.max_wait_seconds)
                errors = [m for m in messages if m.error()]
                for message in errors:
                    if message.error().code() != RdKafkaError._PARTITION_EOF:
                        log.warning("tickets: consumer error: %s", message.error())
                messages = self._unseen([m for m in messages if not m.error()])
                if not messages:
                    waited = time.monotonic() - idle_since
                    if idle_exit is not None and waited > idle_exit + first_assignment:
                        break
                    continue
                idle_since = time.monotonic()
                result = self._process_with_retries(messages, dead_letter_producer)
                self._commit(consumer, result)
                self._account(result)
                if max_batches is not None and self.batches >= max_batches:
                    break
        finally:
            consumer.close()  # leaves the group: its partitions move at once
            dead_letter_producer.flush(10)
            self._writer.shutdown()

    def process(self, messages: Sequence[Any], dead_letter_producer: Any) -> BatchResult:
        """Parse, route and write one batch (steps 1 and 2); not committed yet."""
        began = time.monotonic()
        now = datetime.now(UTC)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        day: dict[int, str] = {}
        for m in messages:
            if m.partition() not in first:
                first[m.partition()] = m.offset()
                day[m.partition()] = _message_day(m, now)
            last[m.partition()] = m.offset()
        routed: list[store.RoutedTicket] = []
        dead: list[store.DeadLetter] = []
        reasons: dict[str, int] = {}
        for m in messages:
            try:
                ticket = parse(m.value(), self.stream.max_message_bytes)
            except Rejected as rejected:
                reasons[rejected.reason] = reasons.get(rejected.reason, 0) + 1
                dead.append(
                    store.DeadLetter(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        rejected.reason,
                        rejected.detail,
                        now,
                    )  # fmt: skip
                )
                continue
            routed.append(
                store.RoutedTicket(
                    ticket,
                    self.routing.team(ticket.request_type),
                    now,
                    m.partition(),
                    m.offset(),
                    store.batch_id(m.partition(), first[m.partition()]),
                    day[m.partition()],
                )  # fmt: skip
            )
        window = timedelta(seconds=self.stream.window_seconds)
        # the two writes wait on different servers: side by side, both finished before
        # anything else happens
        json_written = self._writer.submit(store.write_json, self.object_store, routed, window)
        try:
            counts = store.write_warehouse(self.warehouse, routed, dead, window)
        finally:
            files = json_written.result()
        if dead:
            self._send_dead_letters(dead_letter_producer, dead)
        return BatchResult(
            batch_ids=[store.batch_id(p, o) for p, o in sorted(first.items())],
            messages=len(messages),
            routed=len(routed),
            new_tickets=counts.new_tickets,
            dead_letters=len(dead),
            default_team=sum(not self.routing.known(r.ticket.request_type) for r in routed),
            offsets={p: (first[p], last[p]) for p in sorted(first)},
            files=[f.url for f in files],
            reasons=reasons,
            seconds=time.monotonic() - began,
        )

    # -- internals

    def _process_with_retries(self, messages: Sequence[Any], dead_letter_producer: Any):
        """`process`, again with backoff when a write fails (a server restarting, a network
        blip); the writes are idempotent, so a half-written attempt is simply redone. After
        the last attempt the processor stops without committing: the batch stays on the
        topic for the next member."""
        from tenacity import Retrying, stop_after_attempt, wait_exponential

        attempts = Retrying(
            stop=stop_after_attempt(self.stream.write_attempts),
            wait=wait_exponential(multiplier=self.stream.retry_wait_seconds, max=30),
            before_sleep=lambda state: log.warning(
                "tickets: writing the batch failed (attempt %d of %d): %s",
                state.attempt_number,
                self.stream.write_attempts,
                state.outcome.exception(),
            ),  # fmt: skip
            reraise=True,
        )
        try:
            return attempts(self.process, messages, dead_letter_producer)
        except Exception as exc:
            offsets = ", ".join(f"p{m.partition()}@{m.offset()}" for m in messages[:1])
            raise ProcessorError(
                f"a batch of {len(messages)} messages from {offsets} could not be written after "
                f"{self.stream.write_attempts} attempts ({type(exc).__name__}: {exc}); nothing "
                "of it was committed"
            ) from exc

    def _unseen(self, messages: Sequence[Any]) -> list[Any]:
        """Messages past the last offset taken from their partition. A broker may send a
        fetched range again (Tansu does): offsets already in hand are dropped here, so a
        ticket never lands in two batches' files."""
        fresh = []
        for m in messages:
            if m.offset() < self._next_offset.get(m.partition(), -1):
                self.skipped_repeats += 1
                continue
            self._next_offset[m.partition()] = m.offset() + 1
            fresh.append(m)
        return fresh

    def _send_dead_letters(self, producer: Any, dead: Sequence[store.DeadLetter]) -> None:
        failures: list[str] = []

        def delivered(error, message) -> None:
            if error is not None:
                failures.append(str(error))

        for letter in dead:
            producer.produce(
                self.stream.dead_letter_topic,
                key=letter.key,
                value=letter.value,
                headers={
                    "reason": letter.reason,
                    "detail": letter.detail[:500],
                    "source": f"{letter.topic}/{letter.partition}/{letter.offset}",
                },
                on_delivery=delivered,
            )
        producer.flush(30)
        if failures or len(producer):
            # not committed: the batch comes again (the table already holds these letters)
            raise RuntimeError(f"dead-letter topic: {len(failures) or len(producer)} not delivered")

    def _commit(self, consumer: Any, result: BatchResult) -> None:
        """Commit the offset after the batch's last message in each of its partitions
        (offsets only grow within a batch: `_unseen` drops anything older)."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [
            TopicPartition(self.stream.topic, partition, last + 1)
            for partition, (_, last) in result.offsets.items()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.totals["commits_failed"] += 1
            log.warning("tickets: commit of %s failed (%s); the batch is taken again", offsets, exc)
            self._rewind(consumer, result)

    def _rewind(self, consumer: Any, result: BatchResult) -> None:
        """After a failed commit, the batch again from its first offsets before anything
        newer. Files are keyed by a batch's first offset, so at most one batch per
        partition may be written and not committed: a crash now redelivers that one,
        whatever its new size, onto its own keys; a second uncommitted batch, redelivered
        merged with the first, would leave its tickets in two files."""
        from confluent_kafka import KafkaException, TopicPartition

        owned = {tp.partition for tp in consumer.assignment()}
        for partition, (first, _) in result.offsets.items():
            if partition not in owned:  # revoked: its new owner starts from the last commit
                self._next_offset.pop(partition, None)
                continue
            self._next_offset[partition] = first
            try:
                consumer.seek(TopicPartition(self.stream.topic, partition, first))
            except KafkaException as exc:  # stop: a restart starts from the last commit
                raise ProcessorError(
                    f"partition {partition}: commit refused and the batch could not be taken "
                    f"again from offset {first} ({exc}); stopping, nothing is lost"
                ) from exc

    def _account(self, result: BatchResult) -> None:
        self.batches += 1
        self.totals["messages"] += result.messages
        self.totals["routed"] += result.routed
        self.totals["new_tickets"] += result.new_tickets
        self.totals["dead_letters"] += result.dead_letters
        self.totals["repeats_dropped"] = self.skipped_repeats
        now = time.monotonic()
        if now - self._lag_checked >= self.stream.lag_interval_seconds:
            self._lag_checked = now
            try:
                result.lag = sum(self.kafka.lag(self.stream.group_id, self.stream.topic).values())
            except Exception as exc:  # metadata only: never stop the stream for it
                log.warning("tickets: measuring the lag failed: %s", exc)
        log.info(
            "tickets: batch %s: %d messages, %d routed (%d new), %d dead letters, %.2fs",
            ",".join(result.batch_ids), result.messages, result.routed, result.new_tickets,
            result.dead_letters, result.seconds,
        )  # fmt: skip
        if self.report is not None:
            try:
                self.report(result)
            except Exception as exc:  # the data is committed; a lost report is only metadata
                log.warning("tickets: reporting the batch to Dagster failed: %s", exc)


def _message_day(message: Any, fallback: datetime) -> str:
    """The UTC day of a message's Kafka timestamp (the same on every redelivery)."""
    kind, millis = message.timestamp()
    if kind == 0 or millis is None or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return fallback.date().isoformat()
    return datetime.fromtimestamp(millis / 1000, UTC).date().isoformat()
