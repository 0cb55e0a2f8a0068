"""One KST day of Neople timelines: fetch, validate, and store as parquet and in Postgres.

A day is stored whole or not at all. Every row is validated before anything is written; a
row without `code` or `date` (or with a malformed one) fails the day with an error naming
the character, the page, the row and the field, and the previous version of the day stays
as it was. Rows with codes nobody knows, and unexpected keys, are kept verbatim: `data` as
JSON text, other top-level keys in `extra`.

Storing a day is one PostgreSQL transaction: delete the day's rows, COPY the new ones,
upload the parquet file (one object per day, replaced atomically by S3), record the day
in `raw.ingest_partitions`, commit. A failure before the commit rolls Postgres back and
leaves the old object in place; the record of what was written (rows, object size and
ETag, the character list) is what later runs compare with to skip a day already stored,
or to reload Postgres from the intact parquet file without calling the API again.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from signalbox.domains.game_timelines.neople import Character, NeopleClient, TimelinePage
from signalbox.platform.object_store import (
    ObjectNotFoundError,
    ObjectStoreResource,
    StoredObject,
)
from signalbox.platform.warehouse import WarehouseResource

DATASET = "neople_timeline"  # object keys: neople_timeline/date=YYYY-MM-DD/part-0.parquet
RAW_TABLE = "raw.neople_timeline_events"
PARTITIONS_TABLE = "raw.ingest_partitions"

# one row per timeline row; the column order is the parquet file's and the COPY's
TIMELINE_SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("server_id", pa.string(), nullable=False),
        pa.field("character_id", pa.string(), nullable=False),
        pa.field("character_name", pa.string()),
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("code", pa.int32(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("date", pa.string(), nullable=False),
        pa.field("data", pa.string()),
        pa.field("extra", pa.string()),
    ],
    metadata={"signalbox.dataset": DATASET, "signalbox.schema_version": "1"},
)
COLUMNS = TIMELINE_SCHEMA.names
COLUMN_NOTES = {
    "day": "The KST day (partition) the row belongs to.",
    "server_id": "Dungeon&Fighter server id (cain, siroco, ...).",
    "character_id": "Neople character id.",
    "character_name": "Character name as the timeline answer gave it.",
    "seq": "Position in the character's day as the API served it (0 = newest).",
    "code": "Timeline code, verbatim (unknown codes are kept).",
    "name": "Timeline code name, verbatim.",
    "date": "Event minute, verbatim KST text `YYYY-MM-DD HH:MM`.",
    "data": "The row's `data` object as JSON text, verbatim.",
    "extra": "Top-level keys beyond code/name/date/data as a JSON object, else null.",
}

RAW_DDL = f"""
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE IF NOT EXISTS {RAW_TABLE} (
    day date NOT NULL,
    server_id text NOT NULL,
    character_id text NOT NULL,
    character_name text,
    seq integer NOT NULL,
    code integer NOT NULL,
    name text,
    date text NOT NULL,
    data jsonb,
    extra jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, character_id, seq)
);
CREATE TABLE IF NOT EXISTS {PARTITIONS_TABLE} (
    dataset text NOT NULL,
    partition_key text NOT NULL,
    row_count bigint NOT NULL,
    object_key text,
    object_url text,
    object_size bigint,
    object_etag text,
    source_fingerprint text,
    details jsonb,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, partition_key)
);
"""

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})$")
_ROW_FIELDS = ("code", "name", "date", "data")
MAX_PROBLEMS_SHOWN = 10


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- validation


def row_problem(row: Any, day: date) -> str | None:
    """Why a timeline row cannot be stored for `day` (field named), or None when it can."""
    if not isinstance(row, dict):
        return f"is not a JSON object but {type(row).__name__}"
    missing = [name for name in ("code", "date") if row.get(name) is None]
    if missing:
        return "missing " + " and ".join(f"'{name}'" for name in missing)
    code = row["code"]
    if isinstance(code, bool) or not isinstance(code, int) or not -(2**31) <= code < 2**31:
        return f"'code' is not an integer: {code!r}"
    text = row["date"]
    match = _DATE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        return f"'date' is not 'YYYY-MM-DD HH:MM': {text!r}"
    try:
        datetime(*(int(part) for part in match.groups()))
    except ValueError:
        return f"'date' is not a real minute: {text!r}"
    if text[:10] != day.isoformat():
        return f"'date' {text!r} is outside the KST day {day}"
    if row.get("name") is not None and not isinstance(row["name"], str):
        return f"'name' is not text: {row['name']!r}"
    return None


@dataclass(frozen=True)
class RowProblem:
    character: str
    page: int
    position: int  # 1-based on the page
    problem: str
    row: str  # the row as JSON text, cut short

    def __str__(self) -> str:
        return (
            f"{self.character} page {self.page} row {self.position}: {self.problem} in {self.row}"
        )


class InvalidTimelineRows(ValueError):
    """Rows of a day that cannot be stored; the day is not stored and its previous version
    (if any) is kept."""

    def __init__(self, day: date, problems: Sequence[RowProblem]):
        self.day = day
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(
            f"neople: {len(self.problems)} invalid timeline row(s) on KST day {day}; the day "
            f"was not stored and its previous version (if any) is kept: {shown}{tail}"
        )


# --------------------------------------------------------------------------- a day's rows


@dataclass
class CharacterDay:
    character: Character
    name: str | None
    rows: int = 0
    pages: int = 0


@dataclass
class DayRows:
    """The validated rows of one KST day, collected page by page, as columns."""

    day: date
    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    characters: dict[str, CharacterDay] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return sum(c.pages for c in self.characters.values())

    @property
    def rows(self) -> int:
        return len(self.columns["seq"])

    def add_page(self, character: Character, page: TimelinePage) -> None:
        entry = self.characters.get(character.character_id)
        if entry is None:
            name = page.profile.get("characterName") or character.character_name
            entry = self.characters[character.character_id] = CharacterDay(character, name)
        entry.pages += 1
        cols = self.columns
        for position, row in enumerate(page.rows, start=1):
            problem = row_problem(row, self.day)
            if problem is not None:
                self.problems.append(
                    RowProblem(character.label, page.number, position, problem, _excerpt(row))
                )
                continue
            data = row.get("data")
            extra = {k: v for k, v in row.items() if k not in _ROW_FIELDS}
            cols["server_id"].append(character.server_id)
            cols["character_id"].append(character.character_id)
            cols["character_name"].append(entry.name)
            cols["seq"].append(entry.rows)
            cols["code"].append(row["code"])
            cols["name"].append(row.get("name"))
            cols["date"].append(row["date"])
            cols["data"].append(None if data is None and "data" not in row else _json(data))
            cols["extra"].append(_json(extra) if extra else None)
            entry.rows += 1

    def table(self) -> pa.Table:
        """The day as an arrow table (TIMELINE_SCHEMA); InvalidTimelineRows if any row is bad."""
        if self.problems:
            raise InvalidTimelineRows(self.day, self.problems)
        columns = dict(self.columns)
        columns["day"] = [self.day] * self.rows
        return pa.Table.from_pydict({c: columns[c] for c in COLUMNS}, schema=TIMELINE_SCHEMA)


def _excerpt(row: Any, limit: int = 200) -> str:
    try:
        text = _json(row)
    except (TypeError, ValueError):
        text = repr(row)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fetch_day(
    client: NeopleClient,
    characters: Sequence[Character],
    day: date,
    on_page: Callable[[Character, TimelinePage], None] | None = None,
) -> DayRows:
    """Every character's timeline rows of a KST day, all pages, validated (not yet raised)."""
    rows = DayRows(day)
    for character in characters:
        for page in client.timeline_day(character, day):
            rows.add_page(character, page)
            if on_page is not None:
                on_page(character, page)
        if character.character_id not in rows.characters:  # pragma: no cover - always a page
            rows.characters[character.character_id] = CharacterDay(character, None)
    return rows


def character_fingerprint(characters: Iterable[Character]) -> str:
    """Identifies the character list a day was fetched for (order does not matter)."""
    items = sorted(f"{c.server_id}:{c.character_id}" for c in characters)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- what is stored


@dataclass(frozen=True)
class StoredDay:
    """A day's entry in raw.ingest_partitions: what the last successful load wrote."""

    day: date
    row_count: int
    object_key: str
    object_url: str
    object_size: int
    object_etag: str
    source_fingerprint: str
    details: dict[str, Any]
    loaded_at: datetime


@dataclass(frozen=True)
class StoredState:
    """Whether a day is already stored completely for the current character list, and if
    not, whether its parquet file is intact so Postgres can be reloaded from it."""

    stored: StoredDay | None
    complete: bool
    reason: str  # why it is (not) complete, for the run log
    restorable: bool = False


def decide_stored(
    record: StoredDay | None,
    fingerprint: str,
    postgres_rows: int,
    stored_object: StoredObject | None,
) -> StoredState:
    """A day counts as stored when its load was recorded for the same characters, Postgres
    still holds as many rows as were loaded, and the parquet object is the one written
    (same size and ETag)."""
    if record is None:
        return StoredState(None, False, "not stored yet")
    if record.source_fingerprint != fingerprint:
        return StoredState(record, False, "stored for a different character list")
    if stored_object is None:
        return StoredState(record, False, f"{record.object_url} is missing")
    if (stored_object.size, stored_object.etag) != (record.object_size, record.object_etag):
        return StoredState(record, False, f"{record.object_url} was replaced since the load")
    if postgres_rows != record.row_count:
        reason = (
            f"Postgres holds {postgres_rows} rows, {record.row_count} were loaded; "
            f"{record.object_url} is intact"
        )
        return StoredState(record, False, reason, restorable=True)
    return StoredState(record, True, f"stored at {record.loaded_at:%Y-%m-%d %H:%M} UTC")


def ensure_tables(cur) -> None:
    cur.execute(RAW_DDL)


def read_stored_day(cur, day: date) -> StoredDay | None:
    cur.execute(
        f"SELECT row_count, object_key, object_url, object_size, object_etag,"
        f" source_fingerprint, details, loaded_at FROM {PARTITIONS_TABLE}"
        " WHERE dataset = %s AND partition_key = %s",
        (DATASET, day.isoformat()),
    )
    found = cur.fetchone()
    if found is None:
        return None
    rows, key, url, size, etag, fingerprint, details, loaded_at = found
    return StoredDay(day, rows, key, url, size, etag, fingerprint, details or {}, loaded_at)


def stored_state(
    warehouse: WarehouseResource, store: ObjectStoreResource, day: date, fingerprint: str
) -> StoredState:
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        record = read_stored_day(cur, day)
        cur.execute(f"SELECT count(*) FROM {RAW_TABLE} WHERE day = %s", (day,))
        postgres_rows = cur.fetchone()[0]
    stored_object = None
    if record is not None:
        try:
            stored_object = store.head(record.object_key)
        except ObjectNotFoundError:
            stored_object = None
    return decide_stored(record, fingerprint, postgres_rows, stored_object)


# --------------------------------------------------------------------------- storing a day


@dataclass(frozen=True)
class LoadedDay:
    day: date
    rows: int
    replaced_rows: int  # rows of the previous version, now gone
    stored: StoredObject


def object_key(store: ObjectStoreResource, day: date) -> str:
    return store.partition_key(DATASET, day)


def load_day(
    warehouse: WarehouseResource,
    store: ObjectStoreResource,
    table: pa.Table,
    *,
    day: date,
    fingerprint: str,
    details: dict[str, Any] | None = None,
) -> LoadedDay:
    """Replace the day in Postgres and in the object store, all or nothing (see module)."""
    if not table.schema.equals(TIMELINE_SCHEMA, check_metadata=False):
        raise ValueError(f"neople: the table for {day} does not have the timeline schema")
    key = object_key(store, day)
    with warehouse.connect() as conn, conn.cursor() as cur:
        replaced = replace_rows(cur, day, table)
        stored = store.write_parquet(key, table)  # inside the transaction: see module docs
        cur.execute(
            f"""
            INSERT INTO {PARTITIONS_TABLE} (dataset, partition_key, row_count, object_key,
                object_url, object_size, object_etag, source_fingerprint, details, loaded_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (dataset, partition_key) DO UPDATE SET
                row_count = EXCLUDED.row_count, object_key = EXCLUDED.object_key,
                object_url = EXCLUDED.object_url, object_size = EXCLUDED.object_size,
                object_etag = EXCLUDED.object_etag,
                source_fingerprint = EXCLUDED.source_fingerprint,
                details = EXCLUDED.details, loaded_at = EXCLUDED.loaded_at
            """,
            (
                DATASET,
                day.isoformat(),
                table.num_rows,
                key,
                stored.url,
                stored.size,
                stored.etag,
                fingerprint,
                _json(details or {}),
            ),
        )
    return LoadedDay(day, table.num_rows, replaced, stored)


def restore_day(
    warehouse: WarehouseResource, store: ObjectStoreResource, record: StoredDay
) -> LoadedDay:
    """Reload a day's Postgres rows from its parquet file, without calling the API (the
    file is the one recorded: same size and ETag, checked by `stored_state`)."""
    table = store.read_parquet(record.object_key)
    if not table.schema.equals(TIMELINE_SCHEMA, check_metadata=False):
        raise ValueError(f"neople: {record.object_url} does not have the timeline schema")
    if table.num_rows != record.row_count:
        raise ValueError(
            f"neople: {record.object_url} has {table.num_rows} rows, {record.row_count} were "
            "loaded; fetch the day again (refetch: true)"
        )
    with warehouse.connect() as conn, conn.cursor() as cur:
        replaced = replace_rows(cur, record.day, table)
        cur.execute(
            f"UPDATE {PARTITIONS_TABLE} SET loaded_at = now()"
            " WHERE dataset = %s AND partition_key = %s",
            (DATASET, record.day.isoformat()),
        )
    stored = StoredObject(
        record.object_key, record.object_url, record.object_size, record.object_etag
    )
    return LoadedDay(record.day, table.num_rows, replaced, stored)


def replace_rows(cur, day: date, table: pa.Table) -> int:
    """In the caller's transaction: the day's rows replaced by the table's; the number of
    rows replaced. One load per day at a time: a second waits for the first's commit."""
    ensure_tables(cur)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{DATASET}:{day}",))
    cur.execute(f"DELETE FROM {RAW_TABLE} WHERE day = %s", (day,))
    replaced = cur.rowcount
    copy_table(cur, RAW_TABLE, table)
    return replaced


class _CsvStream(io.RawIOBase):
    """An arrow table as COPY CSV, encoded batch by batch as COPY reads it (arrow's C++
    CSV writer: nulls unquoted and empty, strings quoted, which is what COPY expects)."""

    def __init__(self, table: pa.Table, batch_rows: int = 65_536):
        self._batches = iter(table.to_batches(max_chunksize=batch_rows))
        self._options = pa_csv.WriteOptions(include_header=False)
        self._chunk = b""
        self._at = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._at >= len(self._chunk):
            batch = next(self._batches, None)
            if batch is None:
                return b""
            sink = io.BytesIO()
            pa_csv.write_csv(batch, sink, self._options)
            self._chunk, self._at = sink.getvalue(), 0
        end = len(self._chunk) if size is None or size < 0 else self._at + size
        out = self._chunk[self._at : end]
        self._at += len(out)
        return out


def copy_table(cur, table_name: str, table: pa.Table) -> None:
    """COPY an arrow table into `table_name` (columns by name, in the table's order)."""
    columns = ", ".join(f'"{name}"' for name in table.column_names)
    cur.copy_expert(
        f"COPY {table_name} ({columns}) FROM STDIN WITH (FORMAT csv)",
        _CsvStream(table),
        size=1 << 20,
    )


# --------------------------------------------------------------------------- for people


def code_counts(table: pa.Table) -> list[dict[str, Any]]:
    """Rows per timeline code (and its name), most frequent first."""
    if table.num_rows == 0:
        return []
    grouped = table.group_by(["code", "name"]).aggregate([("seq", "count")]).to_pylist()
    counts = [{"code": g["code"], "name": g["name"], "rows": g["seq_count"]} for g in grouped]
    return sorted(counts, key=lambda c: (-c["rows"], c["code"]))


def preview_rows(table: pa.Table, limit: int = 10) -> list[dict[str, Any]]:
    """The first rows, `data` cut to a readable length."""
    rows = (
        table.slice(0, limit).select(["character_name", "code", "name", "date", "data"]).to_pylist()
    )
    for row in rows:
        data = row["data"] or ""
        row["data"] = data if len(data) <= 80 else data[:79] + "…"
    return rows
