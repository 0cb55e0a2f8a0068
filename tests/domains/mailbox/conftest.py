"""Fixtures for the mailbox slice: a Help Scout simulator with a fixed clock and a fresh
warehouse database per test on the session's embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.helpscout import HelpScoutSimulator
from signalbox.simulators.helpscout_world import HelpScoutWorld

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BACKFILL_START = "2026-02-24"  # two weeks before NOW


@pytest.fixture
def helpscout_sim() -> Iterator[HelpScoutSimulator]:
    with HelpScoutSimulator(
        world=HelpScoutWorld(seed=11), now=NOW, rate_limit_per_minute=12000
    ) as sim:
        yield sim


@pytest.fixture
def helpscout(helpscout_sim: HelpScoutSimulator) -> HelpScoutResource:
    return HelpScoutResource(
        base_url=helpscout_sim.url,
        client_id=helpscout_sim.client_id,
        client_secret=helpscout_sim.client_secret,
        backfill_start=BACKFILL_START,
        backoff_base_seconds=0.01,
    )


@pytest.fixture
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as database:
        yield database
