"""Game-timelines benchmarks on a day of one million timeline rows (from the Neople
simulator's world, in the raw table's parquet schema), measured side by side in this one
process on the embedded PostgreSQL and the embedded S3 server (nanio, the demo's store):

- `game_timelines.raw_load_vs_copy`: PostgreSQL `COPY` of the day's rows (CSV prepared
  in memory beforehand, into an empty table like the raw one) over the asset's load of the
  day from its parquet file into the empty raw table (`restore_day`: download and decode
  the parquet file, then in one transaction delete the day, COPY, update the load record).
  Replacing a day that is already there also deletes its million rows first: reported on
  its own (`raw_replace_day_seconds`), with no goal.
- `game_timelines.parquet_write_vs_pyarrow`: a bare `pyarrow.parquet.write_table` to a
  local file over the object store's `write_parquet` (encode and upload). Uploading to
  the local S3 server dominates that path, so the encode alone (`write_parquet`'s own
  encode into its spool, no upload) is reported as well, and the upload rate.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from benchmarks.mailbox import database, scratch_home
from benchmarks.report import report
from signalbox.domains.game_timelines.ingest import (
    RAW_DDL,
    RAW_TABLE,
    TIMELINE_SCHEMA,
    character_fingerprint,
    load_day,
    read_stored_day,
    restore_day,
)
from signalbox.domains.game_timelines.neople import Character
from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.embedded.s3 import EmbeddedS3
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.simulators.neople_world import NeopleWorld

ROWS = 1_000_000
DAY = date(2026, 11, 19)  # a Thursday: the weekly reset, the busiest day of the week
ROUNDS = 2  # alternate the two sides, keep the best of each: the machine is shared


def day_table(rows: int = ROWS) -> tuple[pa.Table, list[Character]]:
    """A KST day of at least `rows` timeline rows, in the raw table's parquet schema."""
    world = NeopleWorld.sized_for(rows, DAY)
    columns = world.day_columns(DAY)
    count = len(columns["code"])
    character_ids = np.array(columns["characterId"], dtype=object)
    # rows come grouped by character, newest first: seq restarts at each new character
    starts = np.flatnonzero(np.r_[True, character_ids[1:] != character_ids[:-1]])
    seq = np.arange(count) - np.repeat(starts, np.diff(np.r_[starts, count]))
    names = {c.character_id: c.character_name for c in world.specs}
    table = pa.Table.from_pydict(
        {
            "day": pa.array(np.full(count, np.datetime64(DAY, "D"))),
            "server_id": columns["serverId"],
            "character_id": columns["characterId"],
            "character_name": [names[c] for c in columns["characterId"]],
            "seq": pa.array(seq, pa.int32()),
            "code": pa.array(columns["code"], pa.int32()),
            "name": columns["name"],
            "date": columns["date"],
            "data": columns["data"],
            "extra": pa.nulls(count, pa.string()),
        },
        schema=TIMELINE_SCHEMA,
    )
    characters = [Character(c.server_id, c.character_id) for c in world.specs]
    return table, characters


def best(fn: Callable[[], float], rounds: int = ROUNDS) -> float:
    return min(fn() for _ in range(rounds))


@contextmanager
def object_store(home) -> Iterator[ObjectStoreResource]:
    with EmbeddedS3(home / "objectstore") as s3:
        saved = {k: os.environ.get(k) for k in s3.client_env()}
        os.environ.update(s3.client_env())
        try:
            store = ObjectStoreResource(bucket="bench", endpoint_url=s3.url, prefix="bench")
            store.ensure_bucket()
            yield store
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# --------------------------------------------------------------------------- load


def bench_load_vs_copy(server: EmbeddedPostgres, store: ObjectStoreResource, table, characters):
    csv = io.BytesIO()
    pa_csv.write_csv(table, csv, pa_csv.WriteOptions(include_header=False))
    csv_bytes = csv.getvalue()
    columns = ", ".join(f'"{c}"' for c in table.column_names)

    with database(server, "bench_timelines") as warehouse:
        # the day stored once by the asset's own path: rows, parquet file, load record
        load_day(warehouse, store, table, day=DAY, fingerprint=character_fingerprint(characters))
        with warehouse.connect() as conn, conn.cursor() as cur:
            record = read_stored_day(cur, DAY)
            cur.execute(RAW_DDL.replace(RAW_TABLE, "raw.copy_baseline"))
        assert record is not None

        def copy_baseline() -> float:
            with warehouse.connect() as conn, conn.cursor() as cur:
                cur.execute("TRUNCATE raw.copy_baseline")
                conn.commit()
                started = time.perf_counter()
                cur.copy_expert(
                    f"COPY raw.copy_baseline ({columns}) FROM STDIN WITH (FORMAT csv)",
                    io.BytesIO(csv_bytes),
                    size=1 << 20,  # the chunk size the load uses too
                )
                conn.commit()
                return time.perf_counter() - started

        def load_from_parquet() -> float:
            with warehouse.connect() as conn, conn.cursor() as cur:
                cur.execute(f"TRUNCATE {RAW_TABLE}")  # the day not loaded yet, as for COPY
            started = time.perf_counter()
            loaded = restore_day(warehouse, store, record)
            elapsed = time.perf_counter() - started
            assert (loaded.rows, loaded.replaced_rows) == (table.num_rows, 0)
            return elapsed

        copy_times, load_times = [], []
        for _ in range(ROUNDS):
            copy_times.append(copy_baseline())
            load_times.append(load_from_parquet())
        started = time.perf_counter()
        replaced = restore_day(warehouse, store, record)  # onto the day already there
        replace_s = time.perf_counter() - started
        assert replaced.replaced_rows == table.num_rows
        rows = warehouse.scalar(f"SELECT count(*) FROM {RAW_TABLE}")
        assert rows == table.num_rows, rows
    copy_s, load_s = min(copy_times), min(load_times)
    report("game_timelines.raw_load_vs_copy", copy_s / load_s, ">=0.50")
    report("game_timelines.raw_load_rows_per_s", table.num_rows / load_s)
    report("game_timelines.unit_cost_us_per_event_loaded", 1e6 * load_s / table.num_rows)
    report("game_timelines.copy_rows_per_s", table.num_rows / copy_s)
    report("game_timelines.raw_replace_day_seconds", replace_s)
    report("game_timelines.parquet_bytes", record.object_size)


# --------------------------------------------------------------------------- parquet write


def bench_parquet_write(store: ObjectStoreResource, table: pa.Table, scratch) -> None:
    """Our write (encode + upload through the object store) vs pyarrow writing the same
    rows to the same S3 server on its own (its native S3 filesystem): the goal line. A
    write to a local file is reported too, to show what the network hop costs."""
    from urllib.parse import urlsplit

    import pyarrow.fs as pafs

    path = scratch / "bare.parquet"
    key = store.partition_key("bench_timeline", DAY)
    endpoint = urlsplit(store.endpoint_url or "")
    s3 = pafs.S3FileSystem(
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=store.region,
        endpoint_override=endpoint.netloc or None,
        scheme=endpoint.scheme or "https",
    )
    bare_path = f"{store.bucket}/{store.full_key(store.partition_key('bench_bare', DAY))}"

    def timed(write) -> float:
        started = time.perf_counter()
        write()
        return time.perf_counter() - started

    def bare_s3() -> None:
        pq.write_table(table, bare_path, filesystem=s3, compression="snappy")

    def through_store() -> None:
        store.write_parquet(key, table)

    def bare_local() -> None:
        pq.write_table(table, path, compression="snappy")

    through_store(), bare_s3()  # warm the clients and the bucket path
    times: dict[str, list[float]] = {"s3": [], "store": [], "local": []}
    for _ in range(ROUNDS):  # interleaved, best of each: the machine is shared
        times["s3"].append(timed(bare_s3))
        times["store"].append(timed(through_store))
        times["local"].append(timed(bare_local))
    s3_s, store_s, local_s = (min(times[k]) for k in ("s3", "store", "local"))
    report("game_timelines.parquet_write_vs_pyarrow", s3_s / store_s, ">=0.80")
    report("game_timelines.parquet_write_vs_local_file", local_s / store_s)
    report("game_timelines.parquet_upload_mb_per_s", path.stat().st_size / 1e6 / store_s)


def main() -> None:
    started = time.perf_counter()
    table, characters = day_table()
    print(
        f"game_timelines: {table.num_rows:,} rows of {len(characters):,} characters on {DAY} "
        f"built in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    with scratch_home() as home:
        server = EmbeddedPostgres(home / "postgres")
        server.start()
        try:
            with object_store(home) as store:
                bench_load_vs_copy(server, store, table, characters)
                bench_parquet_write(store, table, home)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
