"""Fixtures for the user-activity slice: the session's chDB directory (chDB runs one data
directory per process, so every module shares the session's SIGNALBOX_HOME), with a
database of this slice's own so other modules' tables never mix with these."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.platform.clickhouse import ClickHouseResource

DATABASE = "user_activity_test"


@pytest.fixture(scope="package")
def clickhouse(signalbox_home: Path) -> Iterator[ClickHouseResource]:
    previous = os.environ.get("SIGNALBOX_HOME")
    os.environ["SIGNALBOX_HOME"] = str(signalbox_home)
    resource = ClickHouseResource(database=DATABASE, lock_timeout_seconds=120)
    try:
        yield resource
        with resource.client("test cleanup") as client:
            for suffix in ("", "_staging", "_intermediate", "_marts", "_empty"):
                client.command(f"DROP DATABASE IF EXISTS `{DATABASE}{suffix}`")
    finally:
        if previous is None:
            os.environ.pop("SIGNALBOX_HOME", None)
        else:
            os.environ["SIGNALBOX_HOME"] = previous
