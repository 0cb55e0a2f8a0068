"""`signalbox demo` end to end: the real CLI in a subprocess on a fresh SIGNALBOX_HOME,
the Dagster UI's GraphQL API asked for lineage and materializations, then Ctrl-C, and
every process it started must be gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import requests

from signalbox.platform.embedded.ports import free_port
from signalbox.platform.settings import PROJECT_ROOT

PRODUCTION_VARIABLES = [
    "SIGNALBOX_WAREHOUSE_URL",
    "HELPSCOUT_BASE_URL",
    "HELPSCOUT_CLIENT_ID",
    "HELPSCOUT_CLIENT_SECRET",
    "DAGSTER_HOME",
]

GRAPH = """{ assetNodes { assetKey { path } dependencyKeys { path } } }"""
MATERIALIZATIONS = """{ assetsOrError { ... on AssetConnection { nodes {
    key { path } assetMaterializations(limit: 1) { runId timestamp } } } } }"""


def started_by(home: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SIGNALBOX_HOME") == home:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_demo_serves_lineage_and_materializations_then_stops_everything():
    home = tempfile.mkdtemp(prefix="signalbox-e2e-", dir="/tmp")
    os.chmod(home, 0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    env["SIGNALBOX_HOME"] = home
    env["HELPSCOUT_BACKFILL_START"] = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    log = Path(home) / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [str(Path(sys.executable).with_name("signalbox")), "demo", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_text(log, f"Dagster UI: http://127.0.0.1:{port}", demo, timeout=420)
        graphql = f"http://127.0.0.1:{port}/graphql"

        nodes = requests.post(graphql, json={"query": GRAPH}, timeout=30).json()["data"]
        edges = {
            ("/".join(dep["path"]), "/".join(node["assetKey"]["path"]))
            for node in nodes["assetNodes"]
            for dep in node["dependencyKeys"]
        }
        assert ("raw/helpscout_conversations", "staging/stg_helpscout__threads") in edges
        assert (
            "staging/stg_helpscout__conversations",
            "marts/fct_helpscout__conversations",
        ) in edges
        assert ("marts/mailbox_emails_daily", "marts/mailbox_event_impact") in edges

        assets = requests.post(graphql, json={"query": MATERIALIZATIONS}, timeout=30).json()
        materialized = {
            "/".join(n["key"]["path"])
            for n in assets["data"]["assetsOrError"]["nodes"]
            if n["assetMaterializations"]
        }
        assert {"raw/helpscout_conversations", "marts/mailbox_emails_hourly"} <= materialized
        assert len(started_by(home)) >= 2  # the CLI and dagster dev's processes
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    deadline = time.monotonic() + 30
    while started_by(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert started_by(home) == [], log.read_text()[-3000:]
    assert not (Path(home) / "postgres" / "postmaster.pid").exists()


def _wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        if process.poll() is not None:
            raise AssertionError(f"demo exited early:\n{path.read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"no '{text}' after {timeout:.0f}s:\n{path.read_text()[-3000:]}")
