"""The code location loads the way Dagster's own tools load it (one `Definitions` at
module scope, every domain found by its folder, no detached asset key)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from signalbox.platform.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration  # starts engines or processes itself


def test_dagster_validates_the_code_location(tmp_path):
    dagster = str(Path(sys.executable).with_name("dagster"))
    run = subprocess.run(
        [dagster, "definitions", "validate", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "All code locations passed validation" in run.stdout + run.stderr


def test_every_domain_contributes_and_every_dbt_source_is_linked():
    from signalbox.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.materializable_asset_keys}
    assert groups == {"mailbox", "user_activity", "game_timelines", "complaints", "tickets"}
    # the stream's assets are external (its processor writes them outside any run); any
    # other external asset would be a dbt source whose key matches no raw asset
    external = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_external}
    assert external == {
        "raw/kafka_tickets",
        "raw/tickets_routed",
        "raw/tickets_aggregates",
        "raw/tickets_dead_letters",
    }
    assert {graph.get(dg.AssetKey.from_user_string(k)).group_name for k in external} == {"tickets"}
    raw = {k.to_user_string() for k in graph.materializable_asset_keys if k.path[0] == "raw"}
    assert raw == {
        "raw/helpscout_mailboxes",
        "raw/helpscout_conversations",
        "raw/activity_feed_actions",
        "raw/activity_message_actions",
        "raw/neople_timeline_events",
        "raw/cfpb_complaints",
    }
    assert all(k.path[0] in {"raw", "staging", "intermediate", "marts", "reference",
                             "exports", "reports"} for k in graph.get_all_asset_keys())  # fmt: skip
    assert isinstance(defs, dg.Definitions)
