"""Fixtures for the user-activity slice: the session's chDB directory (chDB runs one data
directory per process, so every module shares the session's SIGNALBOX_HOME), with a
database of this slice's own so other modules' tables never mix with these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signalbox.platform.clickhouse import ClickHouseResource

DATABASE = "user_activity_test"


@pytest.fixture(scope="package")
def clickhouse(clickhouse_database) -> Iterator[ClickHouseResource]:
    with clickhouse_database(DATABASE) as resource:
        yield resource
