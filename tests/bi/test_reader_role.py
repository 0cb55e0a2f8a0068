"""Superset reaches the warehouse as `signalbox_bi`, a role that may only read the
dashboards' schemas: SQL Lab runs whatever a person types."""

from __future__ import annotations

import psycopg2
import pytest

from signalbox.bi.superset import READER, reader_url

pytestmark = pytest.mark.integration


def test_the_reader_reads_the_dashboards_schemas_and_nothing_more(fresh_database):
    with fresh_database() as warehouse:
        owner = warehouse.resolved_url()
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE SCHEMA marts; CREATE SCHEMA raw")
            cur.execute("CREATE TABLE marts.before (n int); INSERT INTO marts.before VALUES (1)")
            cur.execute("CREATE TABLE raw.secret (n int)")
        reader = reader_url(owner, {"marts"})
        assert f"{READER}:" in reader and reader != owner
        with warehouse.connect() as conn, conn.cursor() as cur:  # as dbt would, later
            cur.execute("CREATE TABLE marts.after (n int); INSERT INTO marts.after VALUES (2)")

        def run(sql: str):
            with psycopg2.connect(reader) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else None

        assert run("SELECT n FROM marts.before") == [(1,)]
        assert run("SELECT n FROM marts.after") == [(2,)]
        for denied in (
            "SELECT * FROM raw.secret",
            "INSERT INTO marts.before VALUES (3)",
            "CREATE TABLE marts.mine (n int)",
            "SELECT pg_read_file('PG_VERSION')",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                run(denied)
        # a new start gives the role a new password: the old URL stops working
        assert reader_url(owner, {"marts"}) != reader
        with pytest.raises(psycopg2.OperationalError, match="password"):
            run("SELECT 1")
