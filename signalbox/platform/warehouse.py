"""The PostgreSQL warehouse: connections, verbatim raw JSON tables, and ingest watermarks.

`SIGNALBOX_WAREHOUSE_URL` points at a production server; unset, the embedded PostgreSQL
under `SIGNALBOX_HOME` is used (started if nothing has started it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg
import psycopg2
import psycopg2.extensions
from pydantic import Field

from signalbox.platform.embedded import embedded_warehouse_url
from signalbox.platform.settings import refuse_embedded

WATERMARKS_TABLE = "raw.ingest_watermarks"


def libpq_url(url: str) -> str:
    """`postgresql+psycopg2://...` (SQLAlchemy style) -> `postgresql://...` for libpq."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


class WarehouseResource(dg.ConfigurableResource):
    """PostgreSQL warehouse holding the raw, staging and mart schemas."""

    url: str | None = Field(
        default=None,
        description="PostgreSQL URL (SIGNALBOX_WAREHOUSE_URL); unset = embedded pgserver.",
    )

    def resolved_url(self) -> str:
        if self.url:
            return libpq_url(self.url)
        refuse_embedded("the embedded PostgreSQL", "SIGNALBOX_WAREHOUSE_URL")
        return embedded_warehouse_url()

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        """A connection whose work commits on success and rolls back on any error."""
        conn = psycopg2.connect(self.resolved_url(), application_name="signalbox")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def dbt_env(self) -> dict[str, str]:
        """libpq variables the dbt profile reads (dbt runs as a subprocess)."""
        parts = urlsplit(self.resolved_url())
        return {
            "PGHOST": parts.hostname or "127.0.0.1",
            "PGPORT": str(parts.port or 5432),
            "PGUSER": unquote(parts.username or "postgres"),
            "PGPASSWORD": unquote(parts.password or ""),
            "PGDATABASE": (parts.path or "/signalbox").lstrip("/") or "signalbox",
        }


# --------------------------------------------------------------------------- raw JSON tables


@dataclass(frozen=True)
class UpsertCounts:
    received: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted - self.updated


@dataclass(frozen=True)
class RawJsonTable:
    """A table of verbatim API payloads, one row per key, replaced when the payload changes.

    Columns: the key, optional typed columns extracted for indexing, `payload jsonb`,
    `payload_md5` (of the normalised jsonb text, so key order does not count as a change),
    `first_loaded_at` and `loaded_at`.
    """

    name: str  # schema-qualified, e.g. raw.helpscout_conversations
    key: str = "id"
    key_type: str = "bigint"
    columns: dict[str, str] = field(default_factory=dict)  # extra column -> SQL type

    @property
    def _all_columns(self) -> list[str]:
        return [self.key, *self.columns]

    def create(self, cur) -> None:
        schema = self.name.split(".")[0]
        extra = "".join(f", {c} {t}" for c, t in self.columns.items())
        cur.execute(
            f"CREATE SCHEMA IF NOT EXISTS {schema};"
            f"CREATE TABLE IF NOT EXISTS {self.name} ("
            f"{self.key} {self.key_type} PRIMARY KEY{extra}, payload jsonb NOT NULL,"
            " payload_md5 text NOT NULL, first_loaded_at timestamptz NOT NULL,"
            " loaded_at timestamptz NOT NULL)"
        )

    def upsert(self, cur, rows: Iterable[Sequence[Any]]) -> UpsertCounts:
        """Load `(key, *extra columns, payload)` rows; payload is a dict or JSON text.

        Rows are streamed with COPY into a temporary table and merged in one statement;
        the caller's transaction makes a page all-or-nothing. A key seen twice in one call
        keeps its last payload.
        """
        columns = self._all_columns
        temp = "_signalbox_load"
        typed = ", ".join(f"{c} {self._type(c)}" for c in columns)
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {temp} (ord bigserial, {typed}, payload text)"
            " ON COMMIT DROP"
        )
        buffer = _copy_buffer(rows)
        cur.copy_expert(f"COPY {temp} ({', '.join(columns)}, payload) FROM STDIN", buffer)
        cols = ", ".join(columns)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
        updates = f"{updates}, " if updates else ""
        cur.execute(
            f"""
            WITH src AS (
                SELECT DISTINCT ON ({self.key}) {cols}, payload::jsonb AS payload
                FROM {temp} ORDER BY {self.key}, ord DESC
            ), merged AS (
                INSERT INTO {self.name} AS t ({cols}, payload, payload_md5,
                                               first_loaded_at, loaded_at)
                SELECT {cols}, payload, md5(payload::text), now(), now() FROM src
                ON CONFLICT ({self.key}) DO UPDATE SET {updates}
                    payload = EXCLUDED.payload, payload_md5 = EXCLUDED.payload_md5,
                    loaded_at = EXCLUDED.loaded_at
                WHERE t.payload_md5 IS DISTINCT FROM EXCLUDED.payload_md5
                RETURNING (xmax = 0) AS inserted
            )
            SELECT (SELECT count(*) FROM {temp}),
                   count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
            FROM merged
            """
        )
        received, inserted, updated = cur.fetchone()
        cur.execute(f"TRUNCATE {temp}")
        return UpsertCounts(received, inserted, updated)

    def _type(self, column: str) -> str:
        return self.key_type if column == self.key else self.columns[column]


def _copy_buffer(rows: Iterable[Sequence[Any]]) -> io.StringIO:
    """COPY text format: tab-separated, backslashes escaped, `\\N` for NULL."""
    out = io.StringIO()
    for row in rows:
        *values, payload = row
        if not isinstance(payload, str):
            payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        fields = [copy_value(v) for v in values]
        fields.append(copy_value(payload))
        out.write("\t".join(fields))
        out.write("\n")
    out.seek(0)
    return out


def copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# --------------------------------------------------------------------------- watermarks


def ensure_watermarks(cur) -> None:
    cur.execute(
        "CREATE SCHEMA IF NOT EXISTS raw;"
        f"CREATE TABLE IF NOT EXISTS {WATERMARKS_TABLE} ("
        " source text PRIMARY KEY, mark timestamptz NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now(), details jsonb)"
    )


def read_watermark(cur, source: str) -> datetime | None:
    ensure_watermarks(cur)
    cur.execute(f"SELECT mark FROM {WATERMARKS_TABLE} WHERE source = %s", (source,))
    row = cur.fetchone()
    return row[0] if row else None


def write_watermark(cur, source: str, mark: datetime, details: dict | None = None) -> None:
    """Advance (never move back) the mark of `source`."""
    ensure_watermarks(cur)
    cur.execute(
        f"""
        INSERT INTO {WATERMARKS_TABLE} (source, mark, details) VALUES (%s, %s, %s)
        ON CONFLICT (source) DO UPDATE SET mark = GREATEST({WATERMARKS_TABLE}.mark, EXCLUDED.mark),
            updated_at = now(), details = EXCLUDED.details
        """,
        (source, mark, json.dumps(details or {})),
    )
