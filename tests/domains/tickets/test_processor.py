"""The processor on the embedded broker, moto's S3 and the embedded PostgreSQL: every
ticket routed exactly once in every output, dead letters kept with their reason, crashes
between the writes and the commit, two processors across a rebalance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import dagster as dg
import pytest

from signalbox.domains.tickets import store as ticket_store
from signalbox.domains.tickets.process import ProcessorError, TicketProcessor
from signalbox.domains.tickets.produce import produce_tickets
from signalbox.domains.tickets.raw import TICKETS_DEAD_LETTERS, TICKETS_ROUTED, dagster_reporter
from signalbox.domains.tickets.settings import changed
from signalbox.domains.tickets.tickets import generate
from signalbox.platform.warehouse import WarehouseResource

pytestmark = pytest.mark.timeout(300)


def outputs(warehouse, store) -> dict:
    """What every output holds: warehouse rows, object-store lines, aggregate sums."""
    rows = warehouse.query(f"SELECT ticket_id FROM {ticket_store.ROUTED_TABLE}")
    lines: list[str] = []
    aggregated = 0
    for key in store.list("tickets/"):
        body = store.get_bytes(key).decode()
        if key.startswith(ticket_store.ROUTED_DATASET):
            lines += [json.loads(line)["ticket_id"] for line in body.splitlines()]
        else:
            aggregated += sum(row["tickets"] for row in json.loads(body))
    return {
        "warehouse": Counter(r[0] for r in rows),
        "files": Counter(lines),
        "file_aggregates": aggregated,
        "warehouse_aggregates": int(
            warehouse.scalar(
                f"SELECT coalesce(sum(tickets), 0) FROM {ticket_store.AGGREGATES_TABLE}"
            )
        ),
    }


def assert_exactly_once(found: dict, ids: set[str]) -> None:
    for output in ("warehouse", "files"):
        assert set(found[output]) == ids, f"{output}: lost or extra tickets"
        assert max(found[output].values()) == 1, f"{output}: a ticket twice"
    assert found["file_aggregates"] == found["warehouse_aggregates"] == len(ids)


def send_raw(kafka, topic: str, values: list[bytes | None]) -> None:
    producer = kafka.producer()
    for number, value in enumerate(values):
        producer.produce(topic, key=f"bad-{number}", value=value)
    assert producer.flush(10) == 0


def test_every_ticket_is_routed_once_and_bad_messages_become_dead_letters(
    kafka, stream, store, warehouse
):
    tickets = list(generate(300, seed=11))
    summary = produce_tickets(kafka, stream.topic, stream.partitions, 300, tickets=tickets)
    assert (summary.sent, summary.failed) == (300, 0)
    bad = [b"{oops", json.dumps({"ticket_id": "x"}).encode(), None,
           tickets[0].to_json().replace(b'"low"', b'"meh"').replace(b'"medium"', b'"meh"')
           .replace(b'"high"', b'"meh"').replace(b'"urgent"', b'"meh"'),
           b"{" + b" " * 70_000 + b"}"]  # fmt: skip
    send_raw(kafka, stream.topic, bad)
    reports = []
    processor = TicketProcessor(kafka, warehouse, store, stream, report=reports.append)
    processor.run(idle_exit=3)

    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets})
    dead = warehouse.query(
        f"SELECT reason, message_value FROM {ticket_store.DEAD_LETTERS_TABLE} ORDER BY kafka_offset"
    )
    assert sorted(r[0] for r in dead) == sorted(
        ["not_json", "missing_fields", "empty", "unknown_priority", "oversized"]
    )
    assert {bytes(r[1]) if r[1] is not None else None for r in dead} == set(bad)  # original bytes
    assert sum(r.dead_letters for r in reports) == 5
    assert kafka.lag(stream.group_id, stream.topic) == dict.fromkeys(range(3), 0)

    # the dead-letter topic has them too, with the reason in a header
    consumer = kafka.consumer(f"{stream.group_id}-dlq", **{"session.timeout.ms": 2000})
    consumer.subscribe([stream.dead_letter_topic])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        seen += [m for m in consumer.consume(10, 1.0) if not m.error()]
    consumer.close()
    assert sorted(dict(m.headers())["reason"].decode() for m in seen) == sorted(r[0] for r in dead)

    # the routing is the configuration's, the aggregates count by window, type, team, priority
    teams = dict(warehouse.query(
        f"SELECT ticket_id, team FROM {ticket_store.ROUTED_TABLE}"))  # fmt: skip
    for ticket in tickets[:20]:
        assert teams[ticket.ticket_id] == processor.routing.team(ticket.request_type)


def test_each_batch_reaches_the_dagster_instance_as_materializations(
    kafka, stream, store, warehouse
):
    produce_tickets(kafka, stream.topic, stream.partitions, 120)
    send_raw(kafka, stream.topic, [b"not a ticket"])
    instance = dg.DagsterInstance.ephemeral()
    processor = TicketProcessor(
        kafka, warehouse, store, stream, report=dagster_reporter(instance, stream.topic)
    )
    processor.run(idle_exit=3)
    routed = instance.fetch_materializations(TICKETS_ROUTED, limit=100).records
    assert len(routed) == processor.batches >= 1
    metadata = [r.asset_materialization.metadata for r in routed]
    assert sum(m["new_tickets"].value for m in metadata) == 120
    assert all("offsets" in m and "lag" in m for m in metadata)
    dead = instance.fetch_materializations(TICKETS_DEAD_LETTERS, limit=10).records
    assert sum(r.asset_materialization.metadata["dead_letters"].value for r in dead) == 1


class NeverCommits(TicketProcessor):
    """Writes its batch and dies before the commit (the in-process twin of a SIGKILL)."""

    def _commit(self, consumer, result) -> None:
        pass


def test_a_redelivered_batch_changes_no_output(kafka, stream, store, warehouse):
    """A batch written but not committed comes again from the same offsets; smaller or
    larger this time, it overwrites its own files and adds no row."""
    tickets = list(generate(200, seed=5))
    produce_tickets(kafka, stream.topic, stream.partitions, 200, tickets=tickets)
    NeverCommits(kafka, warehouse, store, stream).run(max_batches=1)
    for size in (7, 500):  # redelivered in smaller batches, then in one
        again = TicketProcessor(kafka, warehouse, store, changed(stream, {"max_batch": size}))
        again.run(max_batches=1)
    TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets})


class CommitsRefused(TicketProcessor):
    """Its first commits refused by the group, as in a rebalance (a fault the broker will
    not give on demand)."""

    refusals = 2

    def _commit(self, consumer, result) -> None:
        from confluent_kafka import KafkaError, KafkaException

        class Refusing:  # the consumer, but for its commits
            def commit(self, **_):
                raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

            def __getattr__(self, name):
                return getattr(consumer, name)

        refused = self.totals["commits_failed"] < self.refusals
        super()._commit(Refusing() if refused else consumer, result)


def test_a_refused_commit_takes_its_batch_again_before_anything_newer(
    kafka, stream, store, warehouse
):
    """Two batches whose commits were refused, then a crash: what comes again, in another
    size, lands on the same files (a second batch written past a failed commit would
    leave its tickets in two files)."""
    tickets = list(generate(150, seed=6))
    produce_tickets(kafka, stream.topic, stream.partitions, 150, tickets=tickets)
    refused = CommitsRefused(kafka, warehouse, store, changed(stream, {"max_batch": 40}))
    refused.run(max_batches=2)  # then gone, as if killed: nothing committed
    assert refused.totals["commits_failed"] == 2
    again = TicketProcessor(kafka, warehouse, store, changed(stream, {"max_batch": 500}))
    again.run(idle_exit=3)
    assert again.totals["new_tickets"] == 150 - refused.totals["new_tickets"]
    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets})
    # refused, then accepted: the processor goes on and takes every ticket once
    more = list(generate(100, seed=7))
    produce_tickets(kafka, stream.topic, stream.partitions, 100, tickets=more)
    recovering = CommitsRefused(kafka, warehouse, store, changed(stream, {"max_batch": 30}))
    recovering.run(idle_exit=3)
    assert recovering.totals["commits_failed"] == 2
    assert recovering.totals["new_tickets"] == 100
    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets + more})


def test_a_refused_commit_leaves_a_revoked_partition_to_its_owner_and_stops_if_it_cannot_rewind(
    kafka, stream, store, warehouse
):
    """What a real group gives only in a badly timed rebalance, on a stand-in consumer."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from signalbox.domains.tickets.process import BatchResult

    class Consumer:
        def __init__(self, owned, seek_fails=False):
            self.owned, self.seek_fails, self.sought = owned, seek_fails, []

        def assignment(self):
            return [TopicPartition(stream.topic, p) for p in self.owned]

        def seek(self, tp):
            if self.seek_fails:
                raise KafkaException(KafkaError(KafkaError._STATE))
            self.sought.append((tp.partition, tp.offset))

    processor = TicketProcessor(kafka, warehouse, store, stream)
    batch = BatchResult(batch_ids=[], messages=3, routed=3, new_tickets=3, dead_letters=0,
                        default_team=0, offsets={0: (10, 11), 1: (20, 20)}, files=[],
                        reasons={}, seconds=0.1)  # fmt: skip
    processor._next_offset = {0: 12, 1: 21}
    kept = Consumer(owned=[0])  # partition 1 went to another member
    processor._rewind(kept, batch)
    assert kept.sought == [(0, 10)] and processor._next_offset == {0: 10}
    with pytest.raises(ProcessorError, match="offset 10"):
        processor._rewind(Consumer(owned=[0], seek_fails=True), batch)


CRASHING_PROCESSOR = textwrap.dedent(
    """
    import os, signal, sys
    from signalbox.domains.tickets.process import ProcessorError, TicketProcessor
    from signalbox.domains.tickets.settings import TicketStreamResource
    from signalbox.platform.kafka import KafkaResource
    from signalbox.platform.object_store import ObjectStoreResource
    from signalbox.platform.warehouse import WarehouseResource

    crash_at = int(os.environ["CRASH_AT_BATCH"])

    class Crashing(TicketProcessor):
        def _commit(self, consumer, result):
            if self.batches + 1 == crash_at:  # both writes done, the commit not yet
                os.kill(os.getpid(), signal.SIGKILL)
            super()._commit(consumer, result)

    stream = TicketStreamResource.model_validate_json(os.environ["STREAM"])
    store = ObjectStoreResource.model_validate_json(os.environ["STORE"])
    Crashing(KafkaResource(bootstrap_servers=os.environ["BOOTSTRAP"]),
             WarehouseResource(url=os.environ["WAREHOUSE"]), store, stream).run(idle_exit=5)
    """
)


def test_sigkill_between_the_writes_and_the_commit_loses_and_duplicates_nothing(
    kafka, stream, store, warehouse
):
    stream = changed(stream, {"max_batch": 100})
    tickets = list(generate(400, seed=9))
    produce_tickets(kafka, stream.topic, stream.partitions, 400, tickets=tickets)
    env = {
        **os.environ,
        "CRASH_AT_BATCH": "2",
        "STREAM": stream.model_dump_json(),
        "STORE": store.model_dump_json(),
        "BOOTSTRAP": kafka.bootstrap_servers,
        "WAREHOUSE": warehouse.url,
    }
    crashed = subprocess.run([sys.executable, "-c", CRASHING_PROCESSOR], env=env, timeout=120)
    assert crashed.returncode == -signal.SIGKILL
    before = outputs(warehouse, store)
    assert 0 < len(before["warehouse"]) < 400  # it got somewhere, and not to the end
    # a restarted member waits for the killed one's session to expire, then redelivers
    restarted = TicketProcessor(kafka, warehouse, store, stream)
    restarted.run(idle_exit=5)
    assert restarted.totals["routed"] > restarted.totals["new_tickets"]  # some came again
    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets})


def test_two_processors_on_four_partitions_share_the_work_across_rebalances(
    kafka, stream, store, warehouse
):
    stream = changed(stream, {"partitions": 4, "max_batch": 50})
    kafka.ensure_topic(stream.topic, 4)
    tickets = list(generate(3000, seed=21))
    first = TicketProcessor(kafka, warehouse, store, stream)
    second = TicketProcessor(kafka, warehouse, store, stream)
    threads = [threading.Thread(target=p.run, kwargs={"idle_exit": 6}) for p in (first, second)]
    producer = threading.Thread(
        target=produce_tickets,
        args=(kafka, stream.topic, 4, 3000),
        kwargs={"tickets": tickets, "rate": 600},
    )
    producer.start()
    threads[0].start()
    time.sleep(2)
    threads[1].start()  # joins: the partitions are split between the two
    time.sleep(2)
    first.stop()  # leaves mid-stream: its partitions move to the second
    for thread in (producer, *threads):
        thread.join(120)
    assert first.batches > 0 and second.batches > 0
    leftover = TicketProcessor(kafka, warehouse, store, stream)  # anything not yet committed
    leftover.run(idle_exit=4)
    assert_exactly_once(outputs(warehouse, store), {t.ticket_id for t in tickets})
    assert sum(kafka.lag(stream.group_id, stream.topic).values()) == 0


def test_a_warehouse_that_stays_down_stops_the_processor_with_nothing_committed(
    kafka, stream, store, warehouse
):
    """Writes are retried with backoff; when every attempt fails the processor stops with
    one error and commits nothing, so the next member (here: the same, restarted against
    a warehouse that is back) takes the whole batch."""
    produce_tickets(kafka, stream.topic, stream.partitions, 60)
    down = WarehouseResource(url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    impatient = changed(stream, {"write_attempts": 2, "retry_wait_seconds": 0.1})
    with pytest.raises(ProcessorError, match="after 2 attempts"):
        TicketProcessor(kafka, down, store, impatient).run(idle_exit=3)
    assert sum(kafka.lag(stream.group_id, stream.topic).values()) == 60
    TicketProcessor(kafka, warehouse, store, stream).run(idle_exit=3)
    assert warehouse.scalar(f"SELECT count(*) FROM {ticket_store.ROUTED_TABLE}") == 60
