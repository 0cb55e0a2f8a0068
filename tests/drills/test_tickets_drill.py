"""Tickets: the stream processor (Kafka-API broker -> routing -> object store and PostgreSQL)
killed mid-batch, mid-transaction, between the sink's commit and the offset commit, and
after the offset commit, while tickets (and now and then a bad message) keep arriving.
After every kill no ticket is stored twice and the group's committed offsets are never
ahead of the sink; after a last run the sink holds every ticket once, as it was sent, and
every bad message as one dead letter."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import drill
import psycopg2
import pytest
from drill import DrillScore, KillPoint

from signalbox.domains.tickets import store as ticket_store
from signalbox.domains.tickets.process import TicketProcessor
from signalbox.domains.tickets.settings import TicketStreamResource
from signalbox.domains.tickets.tickets import Rejected, generate, parse
from signalbox.platform.embedded.kafka import EmbeddedKafka
from signalbox.platform.kafka import KafkaResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource

pytestmark = pytest.mark.timeout(600)

RUNNER = "test_tickets_drill:process"
PROCESSOR = "signalbox.domains.tickets.process:TicketProcessor"
STORE = "signalbox.domains.tickets.store"
LOCKED = "test_tickets_drill:transaction_open"
BUCKET = "tickets-drill"
FIRST_BURST = 300  # tickets on the topic before the first run; a burst more before each run
BURST = 20
BAD_EVERY = 15  # about one message in this many is not a ticket
POINTS = [
    # mid-batch: consumed, nothing written
    KillPoint(f"{PROCESSOR}.process", 1, note="consumed, nothing written"),
    KillPoint(f"{PROCESSOR}.process", 3, note="consumed, nothing written"),
    KillPoint(f"{STORE}:write_warehouse", 2, note="JSON in flight, warehouse untouched"),
    KillPoint(f"{STORE}:write_json", 2, "after", "JSON written, warehouse racing"),
    # mid-transaction
    KillPoint(f"{STORE}:create_tables", 2, "after", "transaction open, no row yet"),
    KillPoint(LOCKED, 1, note="tickets and aggregates written, not committed"),
    # the sink committed, the offsets not
    KillPoint(f"{STORE}:write_warehouse", 1, "after", "warehouse committed, offsets not"),
    KillPoint(f"{STORE}:write_warehouse", 3, "after", "warehouse committed, offsets not"),
    KillPoint(f"{PROCESSOR}._send_dead_letters", 1, "after", "dead letters sent, offsets not"),
    KillPoint(f"{PROCESSOR}._commit", 1, note="sink committed, offsets not"),
    KillPoint(f"{PROCESSOR}._commit", 2, note="sink committed, offsets not"),
    KillPoint(f"{PROCESSOR}._commit", 4, note="sink committed, offsets not"),
    # the offsets committed
    KillPoint(f"{PROCESSOR}._commit", 1, "after", "offsets committed"),
    KillPoint(f"{PROCESSOR}._commit", 3, "after", "offsets committed"),
    KillPoint(f"{PROCESSOR}._account", 2, "after", "batch committed and counted"),
]


# --------------------------------------------------------------------------- the child


def process(settings: dict) -> bool:
    """The child's run: the processor `signalbox tickets process` runs (in small batches),
    until the topic is drained (`--idle-exit`)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        os.environ.pop(name, None)
    os.environ.update(settings["env"])  # the fork server's environment predates the test's
    if settings.get("watch_lock"):
        threading.Thread(target=_watch_lock, args=(settings["warehouse"],), daemon=True).start()
    processor = TicketProcessor(
        KafkaResource(**settings["kafka"]),
        WarehouseResource(url=settings["warehouse"]),
        ObjectStoreResource(**settings["store"]),
        TicketStreamResource(**settings["stream"]),
    )
    processor.run(idle_exit=settings["idle_exit"])
    return True


def transaction_open() -> None:
    """A kill point: the processor's transaction has written its batch's tickets and
    aggregates, and waits, uncommitted, on a dead-letter row the test holds locked."""


def _watch_lock(url: str) -> None:
    """Calls `transaction_open` once the processor's dead-letter insert waits on the lock
    (its tickets and aggregates statement is done by then: it runs first)."""
    conn = psycopg2.connect(WarehouseResource(url=url).resolved_url(), application_name="watch")
    conn.autocommit = True
    with conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'signalbox' AND wait_event_type = 'Lock'"
                " AND query LIKE %s",
                (f"%INSERT INTO {ticket_store.DEAD_LETTERS_TABLE} %",),
            )
            if cur.fetchone()[0]:
                transaction_open()
                return
            time.sleep(0.005)


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory) -> Iterator[None]:
    from moto_s3 import aws_environment

    with aws_environment(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="module")
def moto_url(aws_env) -> Iterator[str]:
    from moto_s3 import moto_server

    with moto_server() as url:
        ObjectStoreResource(bucket=BUCKET, endpoint_url=url).ensure_bucket()
        yield url


@pytest.fixture(scope="module")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    with EmbeddedKafka(log_path=tmp_path_factory.mktemp("kafka") / "tansu.log") as broker:
        yield broker.bootstrap


# --------------------------------------------------------------------------- the source


class Topic:
    """What was sent to the tickets topic, by partition and offset (the delivery reports)."""

    def __init__(self, kafka: KafkaResource, name: str, partitions: int, seed: int):
        self.kafka = kafka
        self.name = name
        self.rng = random.Random(seed)
        self.tickets = generate(10**6, seed=seed)
        self.sent: dict[tuple[int, int], tuple[str, bytes | None]] = {}  # -> key, value
        self.bad = 0
        kafka.ensure_topic(name, partitions)

    def burst(self, count: int) -> None:
        """`count` tickets, keyed by ticket id as the producer keys them, and now and then
        a message that is not a ticket."""
        messages: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            ticket = next(self.tickets)
            messages.append((ticket.ticket_id, ticket.to_json()))
            if self.rng.random() < 1 / BAD_EVERY:
                self.bad += 1
                messages.append((f"bad-{self.bad}", bad_value(self.bad, ticket.to_json())))
        producer = self.kafka.producer()
        failures: list[str] = []

        def delivered(error, message) -> None:
            if error is not None:
                failures.append(str(error))
            else:
                key = message.key().decode()
                self.sent[(message.partition(), message.offset())] = (key, message.value())

        for key, value in messages:
            producer.produce(self.name, key=key, value=value, on_delivery=delivered)
        assert producer.flush(30) == 0 and not failures, failures

    def tickets_sent(self) -> dict[str, dict]:
        return {
            key: json.loads(value)
            for key, value in self.sent.values()
            if not key.startswith("bad-")
        }

    def bad_sent(self) -> dict[tuple[int, int], bytes | None]:
        return {at: value for at, (key, value) in self.sent.items() if key.startswith("bad-")}


def bad_value(number: int, ticket: bytes) -> bytes | None:
    return [
        b"{not json",
        None,
        json.dumps({"ticket_id": f"bad-{number}"}).encode(),
        ticket.replace(b'"priority":"', b'"priority":"x-'),
        ticket.replace(b',"request_type":', b',"request_type":7,"was":'),
    ][number % 5]


def reason(value: bytes | None) -> str:
    try:
        parse(value)
    except Rejected as rejected:
        return rejected.reason
    raise AssertionError(f"a bad message parses: {value!r}")


# --------------------------------------------------------------------------- the sink


def stored_offsets(warehouse: WarehouseResource) -> set[tuple[int, int]]:
    """The messages the warehouse holds, as tickets or as dead letters."""
    held = set()
    for table in (ticket_store.ROUTED_TABLE, ticket_store.DEAD_LETTERS_TABLE):
        held |= set(warehouse.query(f"SELECT kafka_partition, kafka_offset FROM {table}"))
    return held


def files(store: ObjectStoreResource) -> tuple[Counter, int]:
    """The tickets in the routed JSON files (id -> lines holding it), and the sum of the
    aggregates files."""
    lines: Counter = Counter()
    aggregated = 0
    for key in store.list("tickets/"):
        body = store.get_bytes(key).decode()
        if key.startswith(ticket_store.ROUTED_DATASET):
            lines.update(json.loads(line)["ticket_id"] for line in body.splitlines())
        else:
            aggregated += sum(row["tickets"] for row in json.loads(body))
    return lines, aggregated


def aggregated(warehouse: WarehouseResource) -> int:
    return int(
        warehouse.scalar(f"SELECT coalesce(sum(tickets), 0) FROM {ticket_store.AGGREGATES_TABLE}")
    )


def settle(warehouse: WarehouseResource) -> None:
    """Wait until the killed run's database sessions are gone (a backend learns that its
    client died when it next reads from it)."""
    deadline = time.monotonic() + 15
    conn = psycopg2.connect(warehouse.resolved_url(), application_name="drill")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name IN ('signalbox', 'watch')"
                )
                if cur.fetchone()[0] == 0:
                    return
                time.sleep(0.02)
    finally:
        conn.close()
    raise AssertionError("the killed run's database sessions did not end")


def at_rest(kafka, stream, warehouse, store, topic: Topic) -> tuple[int, int]:
    """(duplicates, messages before a committed offset that the sink does not hold)."""
    ids = Counter(
        row[0] for row in warehouse.query(f"SELECT ticket_id FROM {ticket_store.ROUTED_TABLE}")
    )
    in_files, _ = files(store)  # an uncommitted batch's files may lack their aggregates
    duplicates = (
        sum(n - 1 for n in ids.values())
        + sum(n - 1 for n in in_files.values())
        + abs(aggregated(warehouse) - ids.total())  # each stored ticket counted once
    )
    committed = kafka.committed_offsets(stream.group_id, stream.topic)
    held = stored_offsets(warehouse)
    ahead = sum(
        1
        for (partition, offset), (key, _) in topic.sent.items()
        if offset < (committed.get(partition) or 0)
        and (
            (partition, offset) not in held or (not key.startswith("bad-") and key not in in_files)
        )
    )  # a ticket is stored in both the warehouse and a JSON file
    return duplicates, ahead


def hold_a_dead_letter(warehouse, topic: Topic, committed: dict[int, int | None]):
    """Insert, uncommitted, the dead-letter row of the next bad message the processor will
    meet: its transaction will wait on it with the batch's tickets written. Returns the
    connection (to roll back) and the message's partition and offset."""
    held = stored_offsets(warehouse)
    waiting = [
        (offset - (committed.get(partition) or 0), partition, offset)
        for (partition, offset) in topic.bad_sent()
        if (partition, offset) not in held
    ]
    assert waiting, "no bad message left to hold"
    _, partition, offset = min(waiting)
    conn = psycopg2.connect(warehouse.resolved_url(), application_name="drill-lock")
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {ticket_store.DEAD_LETTERS_TABLE}"
            " VALUES (%s, %s, %s, NULL, NULL, 'drill-lock', '', now())",
            (topic.name, partition, offset),
        )
    return conn, (partition, offset)


def dead_letter_topic(kafka: KafkaResource, stream: TicketStreamResource) -> Counter:
    """The sources (topic/partition/offset) of the letters on the dead-letter topic, read
    by assignment (no group to join)."""
    from confluent_kafka import TopicPartition

    end = kafka.end_offsets(stream.dead_letter_topic)
    consumer = kafka.consumer(f"{stream.group_id}-dead-letters")
    consumer.assign([TopicPartition(stream.dead_letter_topic, p, 0) for p in end])
    sources: Counter = Counter()
    deadline = time.monotonic() + 30
    while sources.total() < sum(end.values()) and time.monotonic() < deadline:
        for message in consumer.consume(100, 1.0):
            if not message.error():
                sources[dict(message.headers())["source"].decode()] += 1
    consumer.close()
    return sources


def same(row: tuple, sent: dict) -> bool:
    client_id, request_type, priority, created_at, text = row
    return (client_id, request_type, priority, ticket_store.iso(created_at), text) == (
        sent["client_id"],
        sent["request_type"],
        sent["priority"],
        sent["created_at"],
        sent["text"],
    )


# --------------------------------------------------------------------------- the drill


def test_the_ticket_processor_survives_sigkill_anywhere(kafka_bootstrap, moto_url, warehouse):
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    name = f"tickets-drill-{uuid.uuid4().hex[:8]}"
    stream = TicketStreamResource(
        topic=name,
        dead_letter_topic=f"{name}.dead-letter",
        group_id=f"{name}-group",
        max_batch=10,  # many batches from a few hundred tickets
        max_wait_seconds=0.5,
        session_timeout_ms=1000,  # a killed member's partitions move in a second
        retry_wait_seconds=0.1,
    )
    store = ObjectStoreResource(bucket=BUCKET, endpoint_url=moto_url, prefix=name)
    with warehouse.connect() as conn, conn.cursor() as cur:
        ticket_store.create_tables(cur)  # as the demo does before the processor starts
    topic = Topic(kafka, stream.topic, stream.partitions, seed=31)
    topic.burst(FIRST_BURST)
    settings = {
        "env": {k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "kafka": kafka.model_dump(),
        "stream": stream.model_dump(),
        "store": store.model_dump(),
        "warehouse": warehouse.url,
        "idle_exit": 8.0,  # the killed runs die long before
    }
    score = DrillScore("tickets")
    plan = drill.plan(POINTS, seed=7, random_kills=4, longest=4.0)
    for number, (point, delay) in enumerate(plan):
        if number:
            topic.burst(BURST)  # the tickets keep coming between runs
        lock = held = None
        if point is not None and point.target == LOCKED:
            committed = kafka.committed_offsets(stream.group_id, stream.topic)
            lock, held = hold_a_dead_letter(warehouse, topic, committed)
        try:
            outcome = drill.run(
                RUNNER, {**settings, "watch_lock": lock is not None}, kill=point, kill_after=delay
            )
        finally:
            if lock is not None:
                lock.rollback()
                lock.close()
        drill.tally(score, point, outcome)
        settle(warehouse)
        if held is not None:  # the transaction that waited on the lock never committed
            assert held not in stored_offsets(warehouse)
        duplicates, ahead = at_rest(kafka, stream, warehouse, store, topic)
        score.duplicates += duplicates
        score.watermarks_ahead += ahead
        assert (duplicates, ahead) == (0, 0), f"after {point or f'a kill at {delay}s'}"

    # a run that is not killed ends the drill: the sink is what was sent, once
    final = drill.run(RUNNER, {**settings, "idle_exit": 6.0})
    score.runs += 1
    score.seconds += final.seconds
    assert final.succeeded, final.error
    lag = kafka.lag(stream.group_id, stream.topic)
    want = topic.tickets_sent()
    have = {
        row[0]: row[1:]
        for row in warehouse.query(
            "SELECT ticket_id, client_id, request_type, priority, created_at, text"
            f" FROM {ticket_store.ROUTED_TABLE}"
        )
    }
    in_files, file_aggregates = files(store)
    score.rows_lost = (
        len(set(want) - set(have))
        + sum(1 for tid, sent in want.items() if tid in have and not same(have[tid], sent))
        + len(set(want) - set(in_files))
    )
    score.duplicates += (
        warehouse.scalar(
            f"SELECT count(*) - count(DISTINCT ticket_id) FROM {ticket_store.ROUTED_TABLE}"
        )
        + len(set(have) - set(want))
        + sum(n - 1 for n in in_files.values())
        + abs(file_aggregates - in_files.total())
        + abs(aggregated(warehouse) - len(have))
    )
    # every bad message is one dead letter, with its original bytes and its reason
    bad = topic.bad_sent()
    letters = {
        (p, o): (bytes(v) if v is not None else None, why)
        for p, o, v, why in warehouse.query(
            "SELECT kafka_partition, kafka_offset, message_value, reason"
            f" FROM {ticket_store.DEAD_LETTERS_TABLE}"
        )
    }
    score.rows_lost += sum(1 for at, v in bad.items() if letters.get(at) != (v, reason(v)))
    score.duplicates += len(set(letters) - set(bad))
    drill.record(score)
    assert sum(lag.values()) == 0, f"the last run did not drain the topic: {lag}"
    assert (score.rows_lost, score.duplicates, score.watermarks_ahead) == (0, 0, 0)
    assert set(have) == set(want) == set(in_files)
    # the dead-letter topic has each at least once (a batch redelivered sends its again)
    sources = dead_letter_topic(kafka, stream)
    assert set(sources) == {f"{stream.topic}/{p}/{o}" for p, o in bad}
