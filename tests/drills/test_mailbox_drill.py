"""Mailbox: the Help Scout crawl killed mid-page, mid-transaction, between the last page
and the watermark, and with the watermark written but not committed, while conversations
keep changing at the source. After every kill the watermark is never ahead of the stored
data; after the last run the warehouse holds every conversation once, as the API shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import drill
import pytest
from drill import DrillScore, KillPoint

from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.domains.mailbox.ingest import CONVERSATIONS, WATERMARK
from signalbox.platform.warehouse import WarehouseResource, read_watermark
from signalbox.simulators.helpscout import HelpScoutSimulator
from signalbox.simulators.helpscout_world import HelpScoutWorld

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BACKFILL_START = "2026-02-17"
RUNNER = "test_mailbox_drill:materialize"
POINTS = [
    *(KillPoint("signalbox.platform.http:HttpClient._run", n, note="mid-crawl")
      for n in (2, 3, 5, 8, 12, 17)),
    KillPoint("signalbox.platform.http:HttpClient._run", 4, "after", "a page read, unstored"),
    KillPoint("signalbox.platform.warehouse:RawJsonTable.upsert", 1, "after", "mid-transaction"),
    KillPoint("signalbox.platform.warehouse:RawJsonTable.upsert", 2, "after", "mid-transaction"),
    KillPoint("signalbox.domains.mailbox.ingest:write_watermark", 1, "before",
              "pages committed, watermark not written"),
    KillPoint("signalbox.domains.mailbox.ingest:write_watermark", 1, "after",
              "watermark written, not committed"),
]  # fmt: skip


def materialize(settings: dict) -> bool:
    """The child's run: mailboxes and conversations, as the hourly schedule runs them."""
    from signalbox.domains.mailbox.raw import helpscout_conversations, helpscout_mailboxes

    result = dg.materialize(
        [helpscout_mailboxes, helpscout_conversations],
        resources={
            "warehouse": WarehouseResource(url=settings["warehouse"]),
            "helpscout": HelpScoutResource(**settings["helpscout"]),
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return drill.succeeded(result)


@pytest.fixture
def sim():
    # 250 conversations a page at most would make few pages: the API's 25 a page, many days
    with HelpScoutSimulator(
        world=HelpScoutWorld(seed=23), now=NOW, rate_limit_per_minute=100_000
    ) as server:
        yield server


def stored(warehouse) -> dict[int, dict]:
    return dict(warehouse.query(f"SELECT id, payload FROM {CONVERSATIONS.name}"))


def truth(sim, at: datetime | None = None) -> dict[int, dict]:
    start = datetime.fromisoformat(BACKFILL_START).replace(tzinfo=UTC)
    return {c["id"]: c for c in sim.world.conversations(at or sim.now, modified_since=start)}


def watermark_ahead(warehouse, sim) -> int:
    """Conversations modified before the stored watermark that are not stored: a mark
    ahead of the data would skip them for ever."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        mark = read_watermark(cur, WATERMARK) if _has_table(cur) else None
    if mark is None:
        return 0
    return len(set(truth(sim, mark)) - set(stored(warehouse)))


def _has_table(cur) -> bool:
    cur.execute("SELECT to_regclass('raw.ingest_watermarks') IS NOT NULL")
    return cur.fetchone()[0]


def test_the_mailbox_crawl_survives_sigkill_anywhere(sim, warehouse):
    settings = {
        "warehouse": warehouse.url,
        "helpscout": {
            "base_url": sim.url,
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "backfill_start": BACKFILL_START,
            "backoff_base_seconds": 0.01,
        },
    }
    score = DrillScore("mailbox")
    plan = drill.plan(POINTS, seed=1, random_kills=4, longest=1.5)
    for point, delay in plan:
        sim.advance(timedelta(minutes=20))  # the source keeps changing between runs
        outcome = drill.run(RUNNER, settings, kill=point, kill_after=delay)
        drill.tally(score, point, outcome)
        score.watermarks_ahead += watermark_ahead(warehouse, sim)
    # a run that is not killed ends the drill: the warehouse is the API's truth
    sim.advance(timedelta(minutes=20))
    final = drill.run(RUNNER, settings)
    assert final.succeeded, final.error
    have, want = stored(warehouse), truth(sim)
    score.rows_lost = drill.rows_lost(have, want)
    score.duplicates = warehouse.scalar(
        f"SELECT count(*) - count(DISTINCT id) FROM {CONVERSATIONS.name}"
    )
    drill.record(score)
    assert (score.rows_lost, score.duplicates, score.watermarks_ahead) == (0, 0, 0)
    assert set(have) - set(want) == set()
