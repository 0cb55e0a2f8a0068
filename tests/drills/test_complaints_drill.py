"""Complaints: the CFPB pull killed mid-page, mid-transaction (a page upserted, not
committed), between pages and windows, and at random, while complaints keep being
published. The pull's watermark is the stored data itself (the next run starts at the
newest stored date received minus the lookback): after every kill, every complaint
received before that start is stored. After the last run: the API's truth, once each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import drill
import pytest
from drill import DrillScore, KillPoint

from signalbox.domains.complaints.cfpb import CfpbResource
from signalbox.domains.complaints.ingest import COMPLAINTS
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.cfpb import SEARCH_PATH, CfpbSimulator
from signalbox.simulators.cfpb_world import CfpbWorld

NOW = datetime(2024, 3, 15, 17, 0, tzinfo=UTC)
START = "2024-02-26"
LOOKBACK_DAYS = 16
RUNNER = "test_complaints_drill:materialize"
POINTS = [
    *(KillPoint("signalbox.platform.http:HttpClient._run", n, note="mid-crawl")
      for n in (1, 2, 4, 7, 11, 16)),
    KillPoint("signalbox.platform.http:HttpClient._run", 5, "after", "a page read, unstored"),
    *(KillPoint("signalbox.platform.warehouse:RawJsonTable.upsert", n, "after", "mid-transaction")
      for n in (1, 3, 6)),
    KillPoint("signalbox.domains.complaints.ingest:changed_before", 1, "before",
              "a reconcile pass, before its count"),
]  # fmt: skip


def materialize(settings: dict) -> bool:
    """The child's run: the raw asset with its API check, as the poller's runs do."""
    from signalbox.domains.complaints.raw import (
        RETRY_DELAY_ENV,
        build_cfpb_complaints_asset,
        complaints_retry_policy,
    )

    delay = settings.get("retry_delay_seconds", "30")
    asset = build_cfpb_complaints_asset(complaints_retry_policy({RETRY_DELAY_ENV: delay}))
    config = {"reconcile": settings.get("reconcile", False)}
    result = dg.materialize(
        [asset],
        resources={
            "warehouse": WarehouseResource(url=settings["warehouse"]),
            "cfpb": CfpbResource(**settings["cfpb"]),
        },
        run_config={"ops": {"raw__cfpb_complaints": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return drill.succeeded(result)


@pytest.fixture
def sim():
    world = CfpbWorld(seed=5, start=date(2024, 1, 1), daily_rate=120.0)
    with CfpbSimulator(world, now=NOW - timedelta(days=4), search_rate_per_minute=10**6) as server:
        yield server


def stored(warehouse) -> dict[str, dict]:
    return dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))


def truth(sim) -> dict[str, dict]:
    published = sim.world.complaints(date.fromisoformat(START), None, at=sim.now)
    return {c["complaint_id"]: c for c in published}


def watermark_ahead(warehouse, sim) -> int:
    """Complaints received before the next run's start that are not stored."""
    newest = (
        warehouse.scalar(
            "SELECT max(date_received) FROM raw.cfpb_complaints"
            " WHERE to_regclass('raw.cfpb_complaints') IS NOT NULL"
        )
        if warehouse.scalar("SELECT to_regclass('raw.cfpb_complaints') IS NOT NULL")
        else None
    )
    if newest is None:
        return 0
    start = str(newest - timedelta(days=LOOKBACK_DAYS))
    have = stored(warehouse)
    return sum(
        1 for cid, c in truth(sim).items() if c["date_received"][:10] < start and cid not in have
    )


def test_the_complaints_pull_survives_sigkill_anywhere(sim, warehouse):
    settings = {
        "warehouse": warehouse.url,
        "cfpb": {
            "base_url": f"{sim.url}{SEARCH_PATH}",
            "rate_limit_per_minute": None,
            "backoff_base_seconds": 0.01,
            "backfill_start": START,
            "lookback_days": LOOKBACK_DAYS,
            "reconcile_days": 30,
        },
    }
    score = DrillScore("complaints")
    plan = drill.plan(POINTS, seed=2, random_kills=4, longest=1.5)
    for point, delay in plan:
        sim.advance(timedelta(hours=6))  # complaints keep being published, late ones too
        reconcile = point is not None and "reconcile" in point.note
        outcome = drill.run(
            RUNNER, {**settings, "reconcile": reconcile}, kill=point, kill_after=delay
        )
        drill.tally(score, point, outcome)
        score.watermarks_ahead += watermark_ahead(warehouse, sim)
    # the last run is the scheduled reconcile pass: company responses that came later than
    # the lookback reaches are in the truth too
    final = drill.run(RUNNER, {**settings, "reconcile": True})
    assert final.succeeded, final.error
    have, want = stored(warehouse), truth(sim)
    score.rows_lost = drill.rows_lost(have, want)
    score.duplicates = warehouse.scalar(
        f"SELECT count(*) - count(DISTINCT complaint_id) FROM {COMPLAINTS.name}"
    )
    drill.record(score)
    assert (score.rows_lost, score.duplicates, score.watermarks_ahead) == (0, 0, 0)
    assert set(have) == set(want)
