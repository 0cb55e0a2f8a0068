"""Mailbox benchmarks: raw load vs COPY, ingest rate vs the rate limit, incremental vs
full crawl. Ratios are measured side by side in this one process, on the same embedded
PostgreSQL and simulator."""

from __future__ import annotations

import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from tqdm import tqdm

from benchmarks.report import report
from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.domains.mailbox.ingest import (
    CONVERSATIONS,
    crawl_conversations,
    load_mailboxes,
    stored_mailbox_ids,
)
from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.warehouse import RawJsonTable, WarehouseResource, _copy_buffer
from signalbox.simulators.helpscout import HelpScoutSimulator
from signalbox.simulators.helpscout_world import HelpScoutWorld

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROWS = 200_000


@contextmanager
def scratch_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="signalbox-bench-", dir="/tmp"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)


@contextmanager
def database(server: EmbeddedPostgres, name: str) -> Iterator[WarehouseResource]:
    admin = psycopg2.connect(server.url(database="postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield WarehouseResource(url=server.url(database=name))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def helpscout_for(sim: HelpScoutSimulator, start: datetime) -> HelpScoutResource:
    return HelpScoutResource(
        base_url=sim.url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        backfill_start=start.isoformat(),
    )


def crawl(helpscout: HelpScoutResource, warehouse: WarehouseResource):
    client = helpscout.client()
    load_mailboxes(client, warehouse)
    result = crawl_conversations(
        client,
        warehouse,
        mailbox_ids=stored_mailbox_ids(warehouse),
        backfill_start=helpscout.backfill_start_at(),
    )
    return result, client


# --------------------------------------------------------------------------- raw load


def bench_raw_load_vs_copy(server: EmbeddedPostgres) -> None:
    world = HelpScoutWorld(seed=7)
    rows = []
    payloads = world.iter_conversations(NOW)
    for conversation in tqdm(payloads, total=ROWS, desc="payloads", leave=False):
        rows.append((conversation["id"], conversation["mailboxId"], conversation))
        if len(rows) == ROWS:
            break
    # both sides get the same JSON text, so serialising is not part of either
    texts = [(i, m, _json(p)) for i, m, p in rows]

    def copy_baseline(warehouse: WarehouseResource) -> float:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE copy_target (id bigint PRIMARY KEY, mailbox_id bigint,"
                " payload jsonb NOT NULL)"
            )
            conn.commit()
            started = time.perf_counter()
            cur.copy_expert(
                "COPY copy_target (id, mailbox_id, payload) FROM STDIN", _copy_buffer(texts)
            )
            conn.commit()
            return time.perf_counter() - started

    def raw_load(warehouse: WarehouseResource) -> float:
        table = RawJsonTable("raw.helpscout_conversations", columns={"mailbox_id": "bigint"})
        with warehouse.connect() as conn, conn.cursor() as cur:
            table.create(cur)
            conn.commit()
            started = time.perf_counter()
            for at in range(0, len(texts), 500):  # the crawl's batch size
                table.upsert(cur, texts[at : at + 500])
                conn.commit()
            return time.perf_counter() - started

    copy_times, load_times = [], []
    for attempt in range(2):  # alternate, keep the best of each: the machine is shared
        with database(server, f"bench_copy_{attempt}") as warehouse:
            copy_times.append(copy_baseline(warehouse))
        with database(server, f"bench_load_{attempt}") as warehouse:
            load_times.append(raw_load(warehouse))
    report("mailbox.raw_load_vs_copy", min(copy_times) / min(load_times), ">=0.50")
    report("mailbox.raw_load_rows_per_s", ROWS / min(load_times))
    report("mailbox.unit_cost_us_per_conversation_loaded", 1e6 * min(load_times) / ROWS)


def _json(payload) -> str:
    import json

    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- ingest rate


def bench_ingest_rate(server: EmbeddedPostgres) -> None:
    limit = 1200  # per minute: 20 requests/s, so ~15 s of crawling gives a steady state
    with (
        HelpScoutSimulator(
            world=HelpScoutWorld(seed=7), now=NOW, rate_limit_per_minute=limit
        ) as sim,
        database(server, "bench_rate") as warehouse,
    ):
        helpscout = helpscout_for(sim, NOW - timedelta(days=75))
        started = time.perf_counter()
        result, client = crawl(helpscout, warehouse)
        elapsed = time.perf_counter() - started
        rate = client.http.stats.requests / elapsed
        report("mailbox.ingest_rate_vs_limit", rate / (limit / 60), ">=0.90")
        report("mailbox.ingest_429_responses", client.http.stats.rate_limited, "<=0")
        report("mailbox.ingest_pages", result.pages)


# --------------------------------------------------------------------------- incremental


def bench_incremental_vs_full(server: EmbeddedPostgres) -> None:
    with (
        HelpScoutSimulator(
            world=HelpScoutWorld(seed=7), now=NOW, rate_limit_per_minute=1_000_000
        ) as sim,
        database(server, "bench_incremental") as warehouse,
    ):
        helpscout = helpscout_for(sim, NOW - timedelta(days=180))
        started = time.perf_counter()
        full, _ = crawl(helpscout, warehouse)
        full_seconds = time.perf_counter() - started

        ids = [row[0] for row in warehouse.query(f"SELECT id FROM {CONVERSATIONS.name}")]
        changed = random.Random(1).sample(ids, len(ids) // 100)
        sim.advance(timedelta(hours=1))
        sim.touch(changed, at=sim.now - timedelta(minutes=30))
        started = time.perf_counter()
        incremental, _ = crawl(helpscout, warehouse)
        incremental_seconds = time.perf_counter() - started
        assert incremental.updated >= len(changed), (incremental.updated, len(changed))
        report("mailbox.incremental_1pct_vs_full", incremental_seconds / full_seconds, "<0.05")
        report("mailbox.full_crawl_conversations", full.received)


def main() -> None:
    with scratch_home() as home:
        server = EmbeddedPostgres(home / "postgres")
        server.start()
        try:
            bench_raw_load_vs_copy(server)
            bench_ingest_rate(server)
            bench_incremental_vs_full(server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
