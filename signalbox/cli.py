"""`signalbox` command line: the demo, the dbt docs site, and the UI.

signalbox demo          start the local stack, materialize everything once, serve the UI
signalbox demo --once   the same without the UI: print a status table, exit 1 on failure
signalbox docs          generate the dbt docs and serve them on 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import requests

from signalbox.platform.settings import PROJECT_ROOT
from signalbox.stack import local_stack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signalbox", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="materialize the asset graph on the local stack")
    demo.add_argument("--once", action="store_true", help="no UI: print statuses and exit")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    docs = commands.add_parser("docs", help="generate and serve the dbt docs")
    docs.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(once=args.once, port=args.port)
    if args.command == "docs":
        return run_docs(port=args.port)
    return 2


# --------------------------------------------------------------------------- demo


def run_demo(once: bool, port: int = 3000) -> int:
    started = time.monotonic()
    with local_stack() as stack:
        for name, url in stack.services.items():
            print(f"  {name}: {_shown(url)}")
        ok = materialize_all(send_alerts_now=once)
        print(f"demo: materialized in {time.monotonic() - started:.0f}s")
        if once:
            return 0 if ok else 1
        ui = start_ui(port)
        try:
            wait_for_ui(port, ui)
            print(f"\nDagster UI: http://127.0.0.1:{port}   (Ctrl-C stops everything)")
            ui.wait()
        except KeyboardInterrupt:
            print("\nstopping...")
        finally:
            stop_process_group(ui)
    return 0 if ok else 1


# Dagster's run tags for a partition range (a single-run backfill)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def materialize_all(recent_days: int = 8, send_alerts_now: bool = False) -> bool:
    """Every asset and check once, on the local instance, printing a line for each.

    Partitioned domains first, each as one single-run backfill over its last
    `recent_days` complete partitions (a week for the daily report's week-over-week),
    then everything unpartitioned (reports read the partitioned marts)."""
    import dagster as dg

    from signalbox.definitions import defs

    instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    by_partitions: dict = {}
    for key in graph.materializable_asset_keys:
        by_partitions.setdefault(graph.get(key).partitions_def, []).append(key)
    results = []
    for partitions_def, keys in sorted(by_partitions.items(), key=lambda kv: kv[0] is None):
        tags = {}
        if partitions_def is not None:
            chosen = recent_complete_partitions(partitions_def, recent_days)
            tags = {RANGE_START_TAG: chosen[0], RANGE_END_TAG: chosen[-1]}
            print(f"materializing {len(keys)} partitioned assets for {chosen[0]}..{chosen[-1]}")
        else:
            print(f"materializing {len(keys)} assets")
        results.append(
            job.get_subset(asset_selection=set(keys)).execute_in_process(
                instance=instance,
                tags=tags,
                raise_on_error=False,
                # progress (pages crawled, models built) without per-event debug lines
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            )
        )
    ok = print_statuses(graph, results)
    for line in evaluate_run_status_sensors(defs, instance, results):
        print(line)
    if send_alerts_now:
        from signalbox.checks.iqr import iqr_check_keys
        from signalbox.platform.telegram import TelegramResource
        from signalbox.sensors.iqr_alerts import send_alerts

        # what the alert sensor does every minute under `dagster dev`, once, right now
        check_keys = iqr_check_keys(defs.asset_checks or [])
        with TelegramResource.from_env().process_config_and_initialize_cm() as telegram:
            tick = send_alerts(instance, telegram, None, check_keys=check_keys)
        print(f"\non-call chat (IQR alerts): {tick.summary}")
    return ok


def evaluate_run_status_sensors(defs, instance, results) -> list[str]:
    """One tick of every run-status sensor for each run executed here (the daemon only
    hears of runs that end after it starts, and these ended before `dagster dev` did);
    a line for each tick that said something."""
    import dagster as dg

    lines = []
    sensors = [s for s in defs.sensors or [] if isinstance(s, dg.RunStatusSensorDefinition)]
    for result in results:
        run = instance.get_run_by_id(result.run_id)
        ended = {
            dg.DagsterRunStatus.SUCCESS: dg.DagsterEventType.RUN_SUCCESS,
            dg.DagsterRunStatus.FAILURE: dg.DagsterEventType.RUN_FAILURE,
        }.get(run.status)
        if ended is None:
            continue
        (record,) = instance.get_records_for_run(run.run_id, of_type=ended).records
        for sensor in sensors:
            with dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=run,
                dagster_event=record.event_log_entry.get_dagster_event(),
                resources=defs.resources,
            ) as context:
                outcome = sensor(context)
            if isinstance(outcome, dg.SkipReason):
                lines.append(f"{sensor.name}: {outcome.skip_message}")
    return lines


def recent_complete_partitions(partitions_def, count: int) -> list[str]:
    """The last `count` partition keys whose time window has ended."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    keys = [
        key
        for key in partitions_def.get_partition_keys(current_time=now)
        if partitions_def.time_window_for_partition_key(key).end <= now
    ]
    return keys[-count:]


def print_statuses(graph, results) -> bool:
    """One line per asset (status, partitions, last row count) and per check."""
    materialized: dict = {}
    checks = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            materialized.setdefault(event.asset_key, []).append(
                event.step_materialization_data.materialization
            )
        for check in result.get_asset_check_evaluations():
            checks[check.asset_check_key] = check
    failed = False
    print(f"\n{'asset':<60} {'status':<14} rows")
    for key in sorted(graph.materializable_asset_keys, key=str):
        events = materialized.get(key)
        if not events:
            failed = True
            print(f"{key.to_user_string():<60} {'FAILED':<14} -")
            continue
        status = "ok" if len(events) == 1 else f"ok ({len(events)} parts)"
        rows = events[-1].metadata.get("dagster/row_count")
        print(f"{key.to_user_string():<60} {status:<14} {rows.value if rows else '-'}")
    print(f"\n{'check':<80} status")
    for check in sorted(checks.values(), key=lambda c: (str(c.asset_key), c.check_name)):
        status = "passed" if check.passed else f"FAILED ({check.severity.value.lower()})"
        name = f"{check.asset_key.to_user_string()}:{check.check_name}"
        print(f"{name:<80} {status}")
    for result in results:
        for failure in result.get_step_failure_events():
            error = failure.event_specific_data.error
            print(f"\nstep {failure.step_key} failed: {error.message if error else '?'}")
    return all(r.success for r in results) and not failed


# --------------------------------------------------------------------------- UI


def start_ui(port: int) -> subprocess.Popen:
    """`dagster dev` in its own process group, with default signal handlers."""
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        start_new_session=True,
        preexec_fn=_default_signals,
    )


def wait_for_ui(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Dagster UI did not answer on port {port} in {timeout:.0f}s")


def stop_process_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM to the whole group: `dagster dev`, its webserver, daemon, code servers and any
    run workers they launched. What is still alive after `grace` seconds gets SIGKILL.

    Waiting only for the leader is not enough: a run the sensors launched a moment before
    Ctrl-C can outlive `dagster dev`, and its code server waits for it, on services the
    caller is about to stop."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left := group_members(group):
        print(f"stopping: {len(left)} process(es) still running after {grace:.0f}s, killing them")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait()
    psutil.wait_procs(group_members(group), timeout=5)


def group_members(group: int) -> list[psutil.Process]:
    """Live processes of a process group, the leader included until it exits (a process that
    has exited but is not yet reaped is a zombie and does not count)."""
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getpgid(candidate.pid) == group and candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------------- docs


def run_docs(port: int = 8080) -> int:
    """Generate every dbt project's docs under SIGNALBOX_HOME/docs and serve them."""
    with local_stack() as stack:
        site = build_docs(stack.home / "docs")
        server = ThreadingHTTPServer(
            ("127.0.0.1", port), partial(_QuietHandler, directory=str(site))
        )
        print(f"\ndbt docs: http://127.0.0.1:{port}   (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def build_docs(site: Path) -> Path:
    """`dbt docs generate` for each project into site/<project>/, plus an index page."""
    from signalbox.platform.dbt import DBT_EXECUTABLE, PROJECTS, dbt_connection, prepare

    dbt = DBT_EXECUTABLE
    links = []
    for project in PROJECTS:
        name = project.project_dir.name
        target = site / name
        prepare(project)  # the local package installed (dbt deps), the manifest current
        with dbt_connection(project) as env:
            subprocess.run(
                [dbt, "docs", "generate", "--project-dir", str(project.project_dir),
                 "--profiles-dir", str(project.profiles_dir), "--target-path", str(target)],
                check=True,
                env={**os.environ, **env},
            )  # fmt: skip
        links.append(f'<li><a href="{name}/index.html">{name}</a></li>')
    (site / "index.html").write_text(
        "<!doctype html><title>signalbox dbt docs</title>"
        "<h1>signalbox dbt projects</h1><ul>" + "".join(links) + "</ul>"
    )
    return site


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _shown(url: str) -> str:
    from signalbox.platform.http import redact_url

    return redact_url(url)


if __name__ == "__main__":
    sys.exit(main())
