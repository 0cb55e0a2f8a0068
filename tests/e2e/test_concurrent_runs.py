"""Two runs that both use the embedded engines, started at the same moment in separate
processes (as the daemon launches them), must both succeed: chDB lets one process open its
data directory at a time, and the engine guard queues the second instead of crashing it;
the embedded PostgreSQL (the runs publish the activity marts there), which nothing
started, is started by one of them, used by both, and stopped by the last one out."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import psycopg2

from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.embedded import embedded_postgres
from signalbox.platform.settings import PROJECT_ROOT
from signalbox.platform.warehouse import libpq_url

RUN = """
import sys, dagster as dg
from signalbox.definitions import defs
job = defs.resolve_job_def("user_activity")
result = job.execute_in_process(partition_key=sys.argv[1], instance=dg.DagsterInstance.get())
sys.exit(0 if result.success else 1)
"""


def test_two_clickhouse_runs_at_once_both_succeed(
    new_home, env_for, monkeypatch, code_location, request
):
    home = new_home()
    (home / "dagster").mkdir()
    # the instance exists before runs are launched (as under `dagster dev`): two processes
    # creating a fresh SQLite storage at once would race on its schema migration
    dg.DagsterInstance.from_config(str(home / "dagster")).dispose()
    # no warehouse is up (no stack, no SIGNALBOX_WAREHOUSE_URL): the runs start it lazily
    monkeypatch.setenv("SIGNALBOX_HOME", str(home))
    warehouse = embedded_postgres()
    request.addfinalizer(warehouse.stop)
    env = env_for(home, SIGNALBOX_ACTIVITY_ANOMALIES="", DAGSTER_HOME=str(home / "dagster"))
    days = ["2026-11-20", "2026-11-21"]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, day],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in days
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
    # both days landed and were modelled
    with ClickHouseResource().client("test: read back") as client:
        landed = client.query(
            "SELECT toString(toDate(time)), count() FROM activity.feed_actions"
            " GROUP BY 1 ORDER BY 1"
        ).result_rows
        modelled = client.query(
            "SELECT toString(event_date), count() FROM activity_marts.activity_daily_dimensions"
            " GROUP BY 1 ORDER BY 1"
        ).result_rows
    assert [day for day, rows in landed if rows > 0] == days
    assert [day for day, rows in modelled if rows > 0] == days
    # the last run out stopped the warehouse; both published their day before that
    assert warehouse.running_port() is None
    with psycopg2.connect(libpq_url(warehouse.start())) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT event_date::text FROM activity.daily_dimensions ORDER BY 1")
        assert [row[0] for row in cur.fetchall()] == days
    conn.close()
