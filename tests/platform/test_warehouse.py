"""Raw JSON tables and watermarks on the embedded PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from signalbox.platform.warehouse import (
    RawJsonTable,
    WarehouseResource,
    libpq_url,
    read_watermark,
    write_watermark,
)


@pytest.fixture
def warehouse(pg_url):
    return WarehouseResource(url=pg_url)


@pytest.fixture
def table(warehouse):
    t = RawJsonTable(f"raw.test_{uuid.uuid4().hex[:8]}", columns={"group_id": "bigint"})
    with warehouse.connect() as conn, conn.cursor() as cur:
        t.create(cur)
    return t


def test_upsert_inserts_updates_and_skips_unchanged(warehouse, table):
    rows = [(1, 10, {"a": 1, "b": "x"}), (2, 10, {"a": 2}), (3, 11, '{"a": 3}')]
    with warehouse.connect() as conn, conn.cursor() as cur:
        counts = table.upsert(cur, rows)
    assert (counts.received, counts.inserted, counts.updated) == (3, 3, 0)
    # same content with another key order is unchanged; a changed payload is replaced
    again = [(1, 10, {"b": "x", "a": 1}), (2, 12, {"a": 22}), (4, 11, {"a": 4})]
    with warehouse.connect() as conn, conn.cursor() as cur:
        counts = table.upsert(cur, again)
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    stored = dict(warehouse.query(f"SELECT id, payload->>'a' FROM {table.name}"))
    assert stored == {1: "1", 2: "22", 3: "3", 4: "4"}
    assert warehouse.scalar(f"SELECT group_id FROM {table.name} WHERE id = 2") == 12


def test_upsert_keeps_awkward_text_verbatim(warehouse, table):
    payload = {"body": 'tab\there "quote" back\\slash\nnew line ünïcode \\N', "extra": [1, None]}
    with warehouse.connect() as conn, conn.cursor() as cur:
        table.upsert(cur, [(7, None, payload)])
    assert warehouse.scalar(f"SELECT payload FROM {table.name} WHERE id = 7") == payload


def test_duplicate_keys_in_one_load_keep_the_last(warehouse, table):
    with warehouse.connect() as conn, conn.cursor() as cur:
        counts = table.upsert(cur, [(5, 1, {"v": 1}), (5, 1, {"v": 2})])
    assert counts.inserted == 1
    assert warehouse.scalar(f"SELECT payload->>'v' FROM {table.name} WHERE id = 5") == "2"


def test_failed_transaction_stores_nothing(warehouse, table):
    with pytest.raises(psycopg2.Error), warehouse.connect() as conn, conn.cursor() as cur:
        table.upsert(cur, [(8, 1, {"ok": True})])
        table.upsert(cur, [("not-a-number", 1, {"ok": False})])
    assert warehouse.scalar(f"SELECT count(*) FROM {table.name} WHERE id = 8") == 0


def test_watermark_only_moves_forward(warehouse):
    source = f"test.{uuid.uuid4().hex[:6]}"
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with warehouse.connect() as conn, conn.cursor() as cur:
        assert read_watermark(cur, source) is None
        write_watermark(cur, source, now)
        write_watermark(cur, source, now - timedelta(days=1))
        assert read_watermark(cur, source) == now


def test_dbt_env_from_url():
    env = WarehouseResource(url="postgresql+psycopg2://u%40x:p%2F@db.example:6543/wh").dbt_env()
    assert env == {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "u@x",
        "PGPASSWORD": "p/",
        "PGDATABASE": "wh",
    }
    assert libpq_url("postgresql+psycopg2://a@b/c") == "postgresql://a@b/c"
