"""Fixtures for the user-activity slice: the session's chDB directory (chDB runs one data
directory per process, so every module shares the session's SIGNALBOX_HOME) and the
session's ClickHouse server, with a database of this slice's own so other modules'
tables never mix with these."""

from __future__ import annotations

import pytest

DATABASE = "user_activity_test"


@pytest.fixture(scope="package", params=["chdb", "server"])
def clickhouse(request, clickhouse_database, clickhouse_server_database):
    """chDB in this process, or a ClickHouse server over HTTP (SIGNALBOX_CLICKHOUSE_URL's
    path: the embedded engine behind ClickHouse's HTTP interface in a process of its own)."""
    databases = clickhouse_database if request.param == "chdb" else clickhouse_server_database
    with databases(DATABASE) as resource:
        yield resource
