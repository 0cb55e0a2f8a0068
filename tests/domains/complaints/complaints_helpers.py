"""Shared values and builders of the complaints tests (imported by conftest and tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from signalbox.domains.complaints.cfpb import CfpbResource
from signalbox.simulators.cfpb import SEARCH_PATH, CfpbSimulator
from signalbox.simulators.cfpb_world import CfpbWorld

NOW = datetime(2024, 3, 15, 17, 0, tzinfo=UTC)  # noon in Washington, a Friday
WORLD_START = date(2024, 1, 1)
DAILY_RATE = 120.0  # a weekday fills two pages of 100


def make_world() -> CfpbWorld:
    return CfpbWorld(seed=7, start=WORLD_START, daily_rate=DAILY_RATE)


def resource_for(sim: CfpbSimulator, **fields) -> CfpbResource:
    settings = {
        "base_url": f"{sim.url}{SEARCH_PATH}",
        "rate_limit_per_minute": None,
        "backoff_base_seconds": 0.01,
        "read_timeout_seconds": 10.0,
        **fields,
    }
    return CfpbResource(**settings)
