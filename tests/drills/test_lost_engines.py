"""Engines lost mid-run: the warehouse's PostgreSQL stopped during a complaints run, and
the object store down during a game-timelines re-fetch. Each run fails cleanly, within a
bound, with an error that says what was lost; nothing half-written stays behind; and the
next run, with the engine back, reaches the source's truth.

(Elsewhere: the chDB lock held by another process is a clear error naming the holder,
tests/platform/test_clickhouse.py; e-mail and chat down never fail a data asset,
tests/domains/game_timelines and tests/sensors.)"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import drill
import pytest
from drill import DrillScore, KillPoint

from signalbox.domains.complaints.ingest import COMPLAINTS
from signalbox.domains.game_timelines.ingest import RAW_TABLE
from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.embedded.s3 import EmbeddedS3
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.cfpb import SEARCH_PATH, CfpbSimulator
from signalbox.simulators.cfpb_world import CfpbWorld
from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleFaults, NeopleSimulator
from signalbox.simulators.neople_world import NeopleWorld

POSTGRES_DIR_ENV = "DRILL_POSTGRES_DIR"


def stop_postgres() -> None:
    """The fault: the warehouse's server stops (fast shutdown: clients are cut off)."""
    EmbeddedPostgres(Path(os.environ[POSTGRES_DIR_ENV])).stop()


@pytest.fixture
def scratch():
    path = Path(tempfile.mkdtemp(prefix="signalbox-lost-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_postgres_stopped_mid_run(scratch):
    server = EmbeddedPostgres(scratch / "postgres")
    url = server.start()
    world = CfpbWorld(seed=9, start=date(2024, 1, 1), daily_rate=120.0)
    now = datetime(2024, 3, 15, 17, 0, tzinfo=UTC)
    score = DrillScore("lost postgres")
    try:
        with CfpbSimulator(world, now=now, search_rate_per_minute=10**6) as sim:
            settings = {
                "warehouse": url,
                "cfpb": {
                    "base_url": f"{sim.url}{SEARCH_PATH}",
                    "rate_limit_per_minute": None,
                    "backoff_base_seconds": 0.01,
                    "backfill_start": "2024-03-01",
                },
                "retry_delay_seconds": "0.002",  # Dagster's 10 retries, doubling: 2 s
                "env": {POSTGRES_DIR_ENV: str(server.data_dir)},
            }
            lost = KillPoint(
                "signalbox.platform.warehouse:RawJsonTable.upsert",
                3,
                "after",
                "PostgreSQL stopped mid-transaction",
                fault="test_lost_engines:stop_postgres",
            )
            outcome = drill.run("test_complaints_drill:materialize", settings, kill=lost)
            score.runs += 1
            score.faults += 1
            assert not outcome.succeeded and not outcome.killed
            assert outcome.seconds < 60  # failed, not hung (10 retries included)
            assert "OperationalError" in outcome.error and "connection" in outcome.error
            assert server.running_port() is None

            settings["warehouse"] = server.start()  # back (on a port of its own): recovers
            again = drill.run("test_complaints_drill:materialize", settings)
            score.runs += 1
            assert again.succeeded, again.error
            warehouse = WarehouseResource(url=server.url())
            have = dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))
            want = {c["complaint_id"]: c for c in world.complaints(date(2024, 3, 1), None, at=now)}
            score.rows_lost = len(set(want) - set(have))
            score.duplicates = warehouse.scalar(
                f"SELECT count(*) - count(DISTINCT complaint_id) FROM {COMPLAINTS.name}"
            )
            assert have == want
    finally:
        server.stop()
        drill.record(score)


def test_object_store_down_during_a_refetch(scratch, warehouse):
    s3 = EmbeddedS3(scratch / "objects")
    s3.start()
    world = NeopleWorld(seed=7)
    days = (date(2026, 11, 16), date(2026, 11, 17))
    score = DrillScore("lost object store")
    try:
        with NeopleSimulator(world, now=datetime(2026, 11, 20, 3, 0, tzinfo=UTC),
                             rate_limit=100_000, faults=NeopleFaults()) as sim:  # fmt: skip
            settings = {
                "warehouse": warehouse.url,
                "neople": {
                    "base_url": sim.url,
                    "api_key": DEFAULT_API_KEY,
                    "characters": ",".join(f"{c.server_id}:{c.character_id}" for c in world.specs),
                    "rate_limit_per_minute": None,
                    "backoff_base_seconds": 0.01,
                    "max_attempts": 2,
                    "read_timeout_seconds": 5,
                },
                "object_store": {"bucket": "drill", "endpoint_url": s3.url},
                "env": {**s3.client_env(), "AWS_CONFIG_FILE": "/dev/null"},
                "refetch": False,
                "days": [day.isoformat() for day in days],
            }
            first = drill.run("test_lost_engines:timelines", settings)
            assert first.succeeded, first.error
            before = stored_days(warehouse)
            assert len(before) == 2

            port = s3.port
            s3.stop()  # the object store is gone: a re-fetch cannot write its files
            down = drill.run("test_lost_engines:timelines", {**settings, "refetch": True})
            score.runs += 2
            score.faults += 1
            assert not down.succeeded and not down.killed and down.seconds < 120
            assert s3.url.split("//")[1] in down.error or "object store" in down.error.lower()
            # the stored days were not touched: their previous version is whole
            assert stored_days(warehouse) == before

            s3 = EmbeddedS3(scratch / "objects", port=port)
            s3.start()
            again = drill.run("test_lost_engines:timelines", {**settings, "refetch": True})
            score.runs += 1
            assert again.succeeded, again.error
            after = dict(warehouse.query(f"SELECT day, count(*) FROM {RAW_TABLE} GROUP BY day"))
            assert after == {day: count for day, count, _ in before}
            score.duplicates = warehouse.scalar(
                f"SELECT count(*) - count(DISTINCT (character_id, day, seq)) FROM {RAW_TABLE}"
            )
            assert score.duplicates == 0
    finally:
        s3.stop()
        drill.record(score)


def stored_days(warehouse: WarehouseResource) -> list[tuple]:
    return warehouse.query(
        f"SELECT day, count(*), max(loaded_at) FROM {RAW_TABLE} GROUP BY day ORDER BY day"
    )


def timelines(settings: dict) -> bool:
    """The child's run: the raw timelines of `days`, created bucket and all."""
    import dagster as dg

    from signalbox.domains.game_timelines.neople import NeopleResource
    from signalbox.domains.game_timelines.raw import neople_timeline_events
    from signalbox.platform.object_store import ObjectStoreResource

    store = ObjectStoreResource(**settings["object_store"])
    if not settings["refetch"]:
        store.ensure_bucket()
    first, last = settings["days"][0], settings["days"][-1]
    result = dg.materialize(
        [neople_timeline_events],
        resources={
            "neople": NeopleResource(**settings["neople"]),
            "warehouse": WarehouseResource(url=settings["warehouse"]),
            "object_store": store,
        },
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        run_config={
            "ops": {"raw__neople_timeline_events": {"config": {"refetch": settings["refetch"]}}}
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return drill.succeeded(result)
