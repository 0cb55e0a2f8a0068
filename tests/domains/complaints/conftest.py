"""Fixtures for the complaints slice: a CFPB simulator with a fixed clock over a fresh
world (its throttle raised for speed; the throttle test sets its own), and a fresh
warehouse database per test on the session's embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from complaints_helpers import NOW, make_world, resource_for

from signalbox.domains.complaints.cfpb import CfpbResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.cfpb import CfpbSimulator


@pytest.fixture
def cfpb_sim() -> Iterator[CfpbSimulator]:
    with CfpbSimulator(make_world(), now=NOW, search_rate_per_minute=1_000_000) as sim:
        yield sim


@pytest.fixture
def cfpb(cfpb_sim: CfpbSimulator) -> CfpbResource:
    return resource_for(cfpb_sim, backfill_start="2024-03-04")


@pytest.fixture
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as database:
        yield database
