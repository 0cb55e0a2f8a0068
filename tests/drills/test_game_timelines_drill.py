"""Game timelines: a four-day range re-fetched and killed mid-fetch, with a day's rows
replaced but not committed, between the parquet write and the warehouse commit, after a day
is stored, and at random. After every kill each day is whole or absent: the warehouse's
rows of a day are the count its load recorded (or none). After the last run every day
equals the API's truth in both stores, once."""

from __future__ import annotations

import os
import uuid
from datetime import date, datetime

import dagster as dg
import drill
import pytest
from drill import DrillScore, KillPoint
from moto_s3 import aws_environment, moto_server

from signalbox.domains.game_timelines.ingest import (
    DATASET,
    PARTITIONS_TABLE,
    RAW_TABLE,
    ensure_tables,
    read_stored_day,
)
from signalbox.domains.game_timelines.neople import NeopleResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleFaults, NeopleSimulator
from signalbox.simulators.neople_world import KST, NeopleWorld

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=KST)
BUCKET = "signalbox-drills"
DAYS = [date(2026, 11, 14), date(2026, 11, 15), date(2026, 11, 16), date(2026, 11, 17)]
RUNNER = "test_game_timelines_drill:materialize"
INGEST = "signalbox.domains.game_timelines.ingest"
POINTS = [
    *(KillPoint("signalbox.platform.http:HttpClient._run", n, note="mid-fetch")
      for n in (1, 3, 6, 10, 14)),
    *(KillPoint(f"{INGEST}:replace_rows", n, "after", "rows replaced, not committed")
      for n in (1, 2)),
    *(KillPoint("signalbox.platform.object_store:ObjectStoreResource.write_parquet", n, "after",
                "parquet written, warehouse not committed") for n in (1, 3)),
    KillPoint("signalbox.platform.object_store:ObjectStoreResource.write_parquet", 2, "before",
              "between two days"),
    KillPoint(f"{INGEST}:stored_state", 3, "before", "after two days stored"),
]  # fmt: skip


def character_list(world: NeopleWorld) -> str:
    return ",".join(f"{c.server_id}:{c.character_id}" for c in world.specs)


def truth_rows(world: NeopleWorld, day: date) -> int:
    """The API's rows of every character for a KST day, straight from the world."""
    start, end = (
        datetime.combine(day, datetime.min.time()),
        datetime(day.year, day.month, day.day, 23, 59),
    )
    return sum(len(world.timeline(c.character_id, start, end, now=NOW)) for c in world.specs)


def materialize(settings: dict) -> bool:
    """The child's run: the raw asset over the range, as a backfill runs it."""
    from signalbox.domains.game_timelines.raw import neople_timeline_events

    result = dg.materialize(
        [neople_timeline_events],
        resources={
            "neople": NeopleResource(**settings["neople"]),
            "warehouse": WarehouseResource(url=settings["warehouse"]),
            "object_store": ObjectStoreResource(**settings["object_store"]),
        },
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
        run_config={
            "ops": {"raw__neople_timeline_events": {"config": {"refetch": settings["refetch"]}}}
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return drill.succeeded(result)


@pytest.fixture
def store(tmp_path):
    with aws_environment(tmp_path), moto_server() as url:
        store = ObjectStoreResource(
            bucket=BUCKET, endpoint_url=url, prefix=f"d-{uuid.uuid4().hex[:8]}"
        )
        store.ensure_bucket()
        yield store


def partial_days(warehouse) -> int:
    """Days whose warehouse rows are not the whole load recorded for them (none when no
    load is recorded). The parquet file may be newer than the record after a kill between
    its write and the commit: the next run compares ETags and fetches that day again."""
    partial = 0
    with warehouse.connect() as conn, conn.cursor() as cur:
        ensure_tables(cur)
        for day in DAYS:
            record = read_stored_day(cur, day)
            cur.execute(f"SELECT count(*) FROM {RAW_TABLE} WHERE day = %s", (day,))
            rows = cur.fetchone()[0]
            partial += rows != (record.row_count if record else 0)
    return partial


def test_the_timelines_backfill_survives_sigkill_anywhere(warehouse, store):
    world = NeopleWorld(seed=7)
    with NeopleSimulator(world, now=NOW, rate_limit=100_000, faults=NeopleFaults()) as sim:
        settings = {
            "warehouse": warehouse.url,
            "neople": {
                "base_url": sim.url,
                "api_key": DEFAULT_API_KEY,
                "characters": character_list(world),
                "rate_limit_per_minute": None,
                "backoff_base_seconds": 0.01,
                "max_attempts": 3,
                "read_timeout_seconds": 5,
            },
            "object_store": {
                "bucket": store.bucket,
                "endpoint_url": store.endpoint_url,
                "prefix": store.prefix,
            },
            "env": {k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        }
        score = DrillScore("game_timelines")
        plan = drill.plan(POINTS, seed=3, random_kills=4, longest=1.8)
        for point, delay in plan:
            # the chosen kills re-fetch the whole range (a refetch replaces stored days: a
            # kill must leave the previous version whole); the random ones resume it
            refetch = point is not None
            outcome = drill.run(
                RUNNER, {**settings, "refetch": refetch}, kill=point, kill_after=delay
            )
            drill.tally(score, point, outcome)
            score.partial_partitions += partial_days(warehouse)
        final = drill.run(RUNNER, {**settings, "refetch": False})
        assert final.succeeded, final.error

    lost = duplicates = 0
    for day in DAYS:
        want = truth_rows(world, day)
        have = warehouse.scalar(f"SELECT count(*) FROM {RAW_TABLE} WHERE day = %s", (day,))
        distinct = warehouse.scalar(
            f"SELECT count(DISTINCT (character_id, seq)) FROM {RAW_TABLE} WHERE day = %s", (day,)
        )
        lost += max(0, want - distinct)
        duplicates += have - distinct
        record = warehouse.query(
            f"SELECT row_count, object_key FROM {PARTITIONS_TABLE}"
            " WHERE dataset = %s AND partition_key = %s",
            (DATASET, day.isoformat()),
        )
        assert record and record[0][0] == want == have
        assert store.read_parquet(record[0][1]).num_rows == want
    score.rows_lost, score.duplicates = lost, duplicates
    drill.record(score)
    assert (score.rows_lost, score.duplicates, score.partial_partitions) == (0, 0, 0)
