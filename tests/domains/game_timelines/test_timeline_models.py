"""The game-timelines dbt models (`dbt build --select` of the domain) on days loaded by the
raw asset: every test passes (warn-level ones warn where the data says so), and the marts'
numbers equal an independent count over the simulator's world. Also the Dagster side:
one lineage from the raw asset through the dbt models, one group, one daily job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from game_timelines_support import BUCKET, DAYS, NOW, character_list, expected_rows, materialize

from signalbox.domains.game_timelines import checks, raw, schedules
from signalbox.domains.game_timelines.neople import NeopleResource
from signalbox.domains.game_timelines.raw import GROUP, RAW_TIMELINE_EVENTS
from signalbox.platform.email import EmailResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.settings import DBT_ROOT
from signalbox.platform.telegram import TelegramResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleFaults, NeopleSimulator
from signalbox.simulators.neople_world import RARITIES

PROJECT = DBT_ROOT / "warehouse"
SELECTION = ["+path:models/marts/game_timelines"]  # seeds, source, staging, marts, tests
RARITY_KEYS = dict(zip(RARITIES, ["common", "uncommon", "rare", "unique", "legendary", "epic",
                                  "primeval"], strict=True))  # fmt: skip
DROP_CODES = {504, 505, 507, 513}
UNKNOWN_DAY = DAYS[2]  # loaded with the unknown-codes fault on


@dataclass
class Build:
    results: dict[str, dict]  # unique_id -> run result
    manifest: dict
    seconds: float

    def statuses(self) -> dict[str, str]:
        return {uid: r["status"] for uid, r in self.results.items()}

    def test_name(self, uid: str) -> str:
        node = self.manifest["nodes"][uid]
        meta = node.get("test_metadata") or {}
        attached = (node.get("attached_node") or "").rsplit(".", 1)[-1]
        return f"{meta.get('name', node['name'])}:{attached}:{node.get('column_name')}"


class DbtRunner:
    """`dbt` beside this interpreter, on the module's database, with a target dir of its own
    (partial parsing carries over between the module's invocations)."""

    def __init__(self, warehouse: WarehouseResource, workdir: Path):
        self.env = {
            **os.environ,
            **warehouse.dbt_env(),
            "PGTZ": "America/New_York",  # no figure may depend on the session's zone
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        self.workdir = workdir
        self.dbt = str(Path(sys.executable).with_name("dbt"))

    def build(self) -> Build:
        target = self.workdir / "target"
        started = time.monotonic()
        done = subprocess.run(
            [self.dbt, "build", "--select", *SELECTION,
             "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
             "--target-path", str(target), "--log-path", str(self.workdir / "logs")],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        seconds = time.monotonic() - started
        assert done.returncode == 0, f"dbt build failed:\n{done.stdout[-6000:]}"
        results = json.loads((target / "run_results.json").read_text())["results"]
        manifest = json.loads((target / "manifest.json").read_text())
        return Build({r["unique_id"]: r for r in results}, manifest, seconds)


@pytest.fixture(scope="module")
def stack(fresh_database, moto_url, world, tmp_path_factory):
    """One simulator, database and key prefix for the module's loads and builds."""
    with (
        NeopleSimulator(world, now=NOW, rate_limit=100_000, faults=NeopleFaults()) as sim,
        fresh_database() as warehouse,
    ):
        store = ObjectStoreResource(bucket=BUCKET, endpoint_url=moto_url, prefix="models")
        resources = {
            "neople": NeopleResource(
                base_url=sim.url, api_key=DEFAULT_API_KEY, characters=character_list(world)
            ),
            "warehouse": warehouse,
            "object_store": store,
            # notifications are off in this module's runs (config notify: false)
            "email": EmailResource(host="127.0.0.1", port=9),
            "telegram": TelegramResource(bot_token="0:unused", chat_id="1"),
        }
        workdir = tmp_path_factory.mktemp("dbt")
        yield sim, warehouse, resources, DbtRunner(warehouse, workdir)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def builds(stack) -> Iterator[tuple[Build, int, Build]]:
    """A build before any day is loaded (no raw table yet), then one on three loaded days
    (the second reuses the first's parse)."""
    sim, warehouse, resources, dbt = stack
    empty = dbt.build()
    rows_before = warehouse.scalar("SELECT count(*) FROM marts.game_character_daily")
    for day in DAYS:
        sim.faults.unknown_codes = day == UNKNOWN_DAY
        assert materialize(resources, day, notify=False).success
    loaded = dbt.build()
    print(f"dbt build: {empty.seconds:.1f}s empty, {loaded.seconds:.1f}s loaded")
    yield empty, rows_before, loaded


def test_build_before_any_load_is_empty_and_passes(builds):
    empty, rows, _ = builds
    assert set(empty.statuses().values()) <= {"success", "pass"}
    assert len([uid for uid in empty.results if uid.startswith("model.")]) == 4
    assert rows == 0


def test_build_on_loaded_days_passes_and_warns_on_unknown_codes_only(builds):
    _, _, loaded = builds
    statuses = loaded.statuses()
    assert not {u: s for u, s in statuses.items() if s not in ("success", "pass", "warn")}
    warned = {loaded.test_name(u) for u, s in statuses.items() if s == "warn"}
    assert warned == {"relationships:fct_game_timeline_events:timeline_code"}
    singular = [u for u in statuses if u.startswith("test.") and ".assert_" in u]
    assert len(singular) == 3 and all(statuses[u] == "pass" for u in singular)
    seeds = [u for u in statuses if u.startswith("seed.")]
    assert len(seeds) == 2


def test_marts_equal_a_count_over_the_world(builds, stack, world):
    _, warehouse, _, _ = stack
    expected: dict[tuple[date, str], Counter] = defaultdict(Counter)
    clears: Counter = Counter()
    for day in DAYS:
        faults = {"unknown_codes": day == UNKNOWN_DAY}
        for character_id, rows in expected_rows(world, day, **faults).items():
            for row in rows:
                counts = expected[day, character_id]
                data, code = row["data"], row["code"]
                counts["events"] += 1
                if code in DROP_CODES:
                    counts["drops"] += 1
                    counts[f"drops_{RARITY_KEYS[data['itemRarity']]}"] += 1
                if code == 210:
                    counts["dungeon_clears"] += 1
                    clears[day, character_id, "dungeon", data["dungeonName"]] += 1
                if code == 201:
                    counts["raid_clears"] += 1
                    clears[day, character_id, "raid", data["raidName"]] += 1
                if code in (530, 950):
                    counts["unknown_events"] += 1
                if code in (401, 402):
                    counts["upgrades"] += 1
                    counts["successful_upgrades"] += bool(data["result"])
    columns = ["events", "drops", *(f"drops_{k}" for k in RARITY_KEYS.values()),
               "dungeon_clears", "raid_clears", "unknown_events",
               "successful_upgrades"]  # fmt: skip
    rows = warehouse.query(
        f"SELECT activity_date, character_id, {', '.join(columns)},"
        " reinforcements + amplifications FROM marts.game_character_daily"
    )
    got = {(r[0], r[1]): dict(zip([*columns, "upgrades"], r[2:], strict=True)) for r in rows}
    want = {k: {c: v[c] for c in [*columns, "upgrades"]} for k, v in expected.items()}
    assert got == want
    assert sum(v["unknown_events"] for v in got.values()) > 0
    assert sum(v["drops_epic"] for v in got.values()) > 0
    assert sum(v["raid_clears"] for v in got.values()) > 0

    stored = warehouse.query(
        "SELECT activity_date, character_id, content_type, content_name, clears"
        " FROM marts.game_content_clears_daily"
    )
    assert {(d, c, t, n): k for d, c, t, n, k in stored} == dict(clears)
    total = warehouse.scalar("SELECT count(*) FROM marts.fct_game_timeline_events")
    assert total == sum(v["events"] for v in want.values())


# --------------------------------------------------------------------------- Dagster


def test_one_lineage_one_group_one_daily_job(code_location):
    from signalbox.domains.game_timelines.models import game_timelines_dbt_models
    from signalbox.platform.dbt import dbt_resource, warehouse_project

    defs = dg.Definitions(
        assets=[raw.neople_timeline_events, game_timelines_dbt_models],
        asset_checks=[
            checks.neople_timeline_parquet_matches_postgres,
            checks.neople_timeline_rows_for_active_characters,
        ],
        jobs=[schedules.game_timelines_job],
        schedules=[schedules.game_timelines_daily_schedule],
        resources={
            "neople": NeopleResource(api_key="unused", characters="cain:unused"),
            "warehouse": WarehouseResource(),
            "warehouse_dbt": dbt_resource(warehouse_project),
            "object_store": ObjectStoreResource(),
            "email": EmailResource(),
            "telegram": TelegramResource(bot_token="0:unused", chat_id="1"),
        },
    )
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.materializable_asset_keys}
    mine = sorted(k for k, g in groups.items() if g == GROUP)
    assert mine == [
        "marts/fct_game_timeline_events",
        "marts/game_character_daily",
        "marts/game_content_clears_daily",
        "raw/neople_timeline_events",
        "reference/neople_item_rarities",
        "reference/neople_timeline_codes",
        "staging/stg_neople__timeline_events",
    ]
    parents = graph.get(dg.AssetKey(["staging", "stg_neople__timeline_events"])).parent_keys
    assert parents == {RAW_TIMELINE_EVENTS}
    job = defs.resolve_job_def("game_timelines_daily")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(mine)
    assert job.partitions_def == raw.NEOPLE_DAILY
    schedule = defs.resolve_schedule_def("game_timelines_daily_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 0 * * *", "Asia/Seoul")
