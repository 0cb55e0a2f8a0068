"""Where a processed batch lands: JSON in the object store and tables in the warehouse.

Both writes are idempotent, so a batch delivered again after a crash (offsets are
committed only after both) changes nothing:
- object store: one file per partition of the batch, named by the partition and the
  batch's first offset there, in the folder of that first message's day (its Kafka
  timestamp): `tickets/routed/date=D/batch=p0-o000000000042.jsonl`. Offsets are committed
  after every batch (a failed commit takes its batch again before anything newer), so
  at most one batch per partition is ever redelivered, and it starts at that same
  offset: it overwrites the same key, whatever its size;
- warehouse: `raw.tickets_routed` keeps the first row per ticket id, and the window
  aggregates are incremented only by tickets that row insert was new for, in the same
  statement; dead letters are keyed by topic, partition and offset.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from signalbox.domains.tickets.tickets import Ticket
from signalbox.platform.object_store import ObjectStoreResource, StoredObject
from signalbox.platform.warehouse import WarehouseResource, copy_value

ROUTED_TABLE = "raw.tickets_routed"
AGGREGATES_TABLE = "raw.tickets_aggregates"
DEAD_LETTERS_TABLE = "raw.tickets_dead_letters"
ROUTED_DATASET = "tickets/routed"
AGGREGATES_DATASET = "tickets/aggregates"


@dataclass(frozen=True)
class RoutedTicket:
    ticket: Ticket
    team: str
    routed_at: datetime
    partition: int
    offset: int
    batch_id: str
    batch_day: str  # YYYY-MM-DD of the batch's first message in this partition

    def to_dict(self) -> dict:
        t = self.ticket
        return {
            "ticket_id": t.ticket_id,
            "client_id": t.client_id,
            "request_type": t.request_type,
            "priority": t.priority,
            "team": self.team,
            "created_at": iso(t.created_at),
            "routed_at": iso(self.routed_at),
            "text": t.text,
            "partition": self.partition,
            "offset": self.offset,
            "batch_id": self.batch_id,
        }


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    received_at: datetime


@dataclass(frozen=True)
class WarehouseCounts:
    new_tickets: int  # rows inserted into raw.tickets_routed (0 for a redelivered ticket)
    aggregate_rows: int  # window rows inserted or incremented
    dead_letters: int  # new dead-letter rows


def batch_id(partition: int, first_offset: int) -> str:
    return f"p{partition}-o{first_offset:012d}"


def window_start(moment: datetime, window: timedelta) -> datetime:
    seconds = int(window.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def aggregate_row(
    start: datetime, seconds: int, request_type: str, team: str, priority: str, tickets: int
) -> dict:
    """One row of an aggregates JSON file (the stream's and the recompute's alike)."""
    return {"window_start": iso(start), "window_seconds": seconds, "request_type": request_type,
            "team": team, "priority": priority, "tickets": int(tickets)}  # fmt: skip


def aggregate(routed: Sequence[RoutedTicket], window: timedelta) -> list[dict]:
    """Tickets per window, request type, team and priority (what the JSON file holds)."""
    counts = Counter(
        (
            window_start(r.ticket.created_at, window),
            r.ticket.request_type,
            r.team,
            r.ticket.priority,
        )
        for r in routed
    )
    seconds = int(window.total_seconds())
    return [
        aggregate_row(w, seconds, rt, team, pr, n)
        for (w, rt, team, pr), n in sorted(counts.items())
    ]  # fmt: skip


# --------------------------------------------------------------------------- object store


def write_json(
    store: ObjectStoreResource, routed: Sequence[RoutedTicket], window: timedelta
) -> list[StoredObject]:
    """One routed-tickets file (JSON lines) and one aggregates file (a JSON array) per
    batch id (partition and first offset); the same batch always writes the same keys."""
    groups: dict[tuple[str, str], list[RoutedTicket]] = {}
    for r in routed:
        groups.setdefault((r.batch_day, r.batch_id), []).append(r)
    stored = []
    for (day, batch), rows in sorted(groups.items()):
        lines = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in rows)
        stored.append(
            store.put_bytes(
                f"{ROUTED_DATASET}/date={day}/batch={batch}.jsonl",
                lines,
                "application/x-ndjson",
            )
        )
        stored.append(
            store.put_bytes(
                f"{AGGREGATES_DATASET}/date={day}/batch={batch}.json",
                orjson.dumps(aggregate(rows, window)),
                "application/json",
            )
        )
    return stored


# --------------------------------------------------------------------------- warehouse


def create_tables(cur) -> None:
    cur.execute(
        f"""
        CREATE SCHEMA IF NOT EXISTS raw;
        CREATE TABLE IF NOT EXISTS {ROUTED_TABLE} (
            ticket_id text PRIMARY KEY,
            client_id bigint NOT NULL,
            request_type text NOT NULL,
            priority text NOT NULL,
            team text NOT NULL,
            created_at timestamptz NOT NULL,
            routed_at timestamptz NOT NULL,
            text text NOT NULL,
            kafka_partition integer NOT NULL,
            kafka_offset bigint NOT NULL,
            batch_id text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {AGGREGATES_TABLE} (
            window_start timestamptz NOT NULL,
            window_seconds integer NOT NULL,
            request_type text NOT NULL,
            team text NOT NULL,
            priority text NOT NULL,
            tickets bigint NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (window_start, window_seconds, request_type, team, priority)
        );
        CREATE TABLE IF NOT EXISTS {DEAD_LETTERS_TABLE} (
            kafka_topic text NOT NULL,
            kafka_partition integer NOT NULL,
            kafka_offset bigint NOT NULL,
            message_key bytea,
            message_value bytea,
            reason text NOT NULL,
            detail text NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset)
        );
        """
    )


def write_warehouse(
    warehouse: WarehouseResource,
    routed: Sequence[RoutedTicket],
    dead_letters: Sequence[DeadLetter],
    window: timedelta,
) -> WarehouseCounts:
    """One transaction: new tickets, the aggregates of exactly those, new dead letters."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        create_tables(cur)
        cur.execute(
            "CREATE TEMP TABLE _tickets_in (ticket_id text, client_id bigint, request_type text,"
            " priority text, team text, created_at timestamptz, routed_at timestamptz,"
            " text text, kafka_partition integer, kafka_offset bigint, batch_id text)"
            " ON COMMIT DROP"
        )
        buffer = io.StringIO()
        routed_at = {}  # one routing time per batch: formatted once
        for r in routed:
            if r.routed_at not in routed_at:
                routed_at[r.routed_at] = r.routed_at.isoformat()
            t = r.ticket
            # only the free-text fields can hold a tab, a newline or a backslash
            buffer.write(
                f"{copy_value(t.ticket_id)}\t{t.client_id}\t{copy_value(t.request_type)}\t"
                f"{t.priority}\t{copy_value(r.team)}\t{t.created_at.isoformat()}\t"
                f"{routed_at[r.routed_at]}\t{copy_value(t.text)}\t{r.partition}\t{r.offset}\t"
                f"{r.batch_id}\n"
            )
        buffer.seek(0)
        cur.copy_expert("COPY _tickets_in FROM STDIN", buffer)
        cur.execute(
            f"""
            WITH new AS (
                INSERT INTO {ROUTED_TABLE}
                SELECT DISTINCT ON (ticket_id) * FROM _tickets_in ORDER BY ticket_id, kafka_offset
                ON CONFLICT (ticket_id) DO NOTHING
                RETURNING created_at, request_type, team, priority
            ), counted AS (
                INSERT INTO {AGGREGATES_TABLE} AS a
                SELECT date_bin(make_interval(secs => %(window)s), created_at,
                                timestamptz '1970-01-01 00:00:00+00'),
                       %(window)s, request_type, team, priority, count(*), now()
                FROM new GROUP BY 1, 2, 3, 4, 5
                ON CONFLICT (window_start, window_seconds, request_type, team, priority)
                DO UPDATE SET tickets = a.tickets + EXCLUDED.tickets, updated_at = now()
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM counted)
            """,
            {"window": int(window.total_seconds())},
        )
        new_tickets, aggregate_rows = cur.fetchone()
        dead = 0
        for letter in dead_letters:
            cur.execute(
                f"INSERT INTO {DEAD_LETTERS_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (letter.topic, letter.partition, letter.offset, letter.key, letter.value,
                 letter.reason, letter.detail, letter.received_at),
            )  # fmt: skip
            dead += cur.rowcount
    return WarehouseCounts(new_tickets, aggregate_rows, dead)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
