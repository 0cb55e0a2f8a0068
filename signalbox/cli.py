"""`signalbox` command line: the demo, the dbt docs site, and the UI.

signalbox demo          start the local stack, materialize everything once, serve the UI
signalbox demo --once   the same without the UI: print a status table, exit 1 on failure
signalbox demo --bi     the same with the dashboards (Superset) beside the UI
signalbox docs          generate the dbt docs and serve them on 127.0.0.1:8080
signalbox bi            the dashboards (Superset) on 127.0.0.1:8088, on the warehouse's marts
signalbox tickets produce [--count N] [--rate N]   send tickets to the stream
signalbox tickets process                          route and aggregate them until stopped
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
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import requests

from signalbox.bi import BiError
from signalbox.domains.tickets import commands as tickets
from signalbox.platform.settings import PROJECT_ROOT
from signalbox.stack import local_stack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signalbox", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="materialize the asset graph on the local stack")
    demo.add_argument("--once", action="store_true", help="no UI: print statuses and exit")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    demo.add_argument("--bi", action="store_true", help="serve the dashboards (Superset) too")
    demo.add_argument("--bi-port", type=int, default=8088, help="Superset port (default 8088)")
    docs = commands.add_parser("docs", help="generate and serve the dbt docs")
    docs.add_argument("--port", type=int, default=8080)
    bi = commands.add_parser("bi", help="serve the dashboards (Superset) on the marts")
    bi.add_argument("--port", type=int, default=8088, help="Superset port (default 8088)")
    bi.add_argument("--reset-password", action="store_true", help="print a new admin password")
    tickets.add_commands(commands)
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        if args.command == "tickets":
            return tickets.run(args)
        if args.command == "demo":
            return run_demo(once=args.once, port=args.port, bi=args.bi_port if args.bi else None)
        if args.command == "docs":
            return run_docs(port=args.port)
        if args.command == "bi":
            return run_bi(port=args.port, reset_password=args.reset_password)
    except BiError as error:
        print(f"signalbox {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stopped:
        print(f"\nstopped ({stopped or 'SIGINT'}); everything it started is stopped")
        return 130
    return 2


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (a process manager, `docker stop`) stop the command alike: both
    raise KeyboardInterrupt once, so everything started is stopped in order; signals that
    arrive while stopping are ignored. Set explicitly, as a process started in the
    background by a shell inherits SIGINT ignored, and Python then never handles it."""

    def stop(signum: int, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


# --------------------------------------------------------------------------- demo


def run_demo(once: bool, port: int = 3000, bi: int | None = None) -> int:
    """The local stack, every asset materialized once, then the UI (and with `bi`, the
    port of Superset, the dashboards) until Ctrl-C."""
    started = time.monotonic()
    with contextlib.ExitStack() as running:
        stack = running.enter_context(local_stack())
        log = running.enter_context(tickets.beside_the_demo(stack.home, trickle=not once))
        for name, url in stack.services.items():
            print(f"  {name}: {_shown(url)}")
        print(f"  tickets stream (processor and producer): log {log}")
        if bi:  # alerts and the report link to the dashboards
            from signalbox.bi.superset import Superset, running_superset

            stack.default(SIGNALBOX_DASHBOARD_URL=f"http://127.0.0.1:{bi}")
            superset = Superset.local(bi)  # its set-up needs no data: beside materializing
            preparing = running.enter_context(ThreadPoolExecutor(1)).submit(superset.prepare)
        from signalbox.demo import materialize_all

        ok = materialize_all(send_alerts_now=once)
        print(f"demo: materialized in {time.monotonic() - started:.0f}s")
        if bi:
            preparing.result()
            warehouse = os.environ["SIGNALBOX_WAREHOUSE_URL"]
            running.enter_context(running_superset(warehouse, bi, prepared=superset))
        if once:
            return 0 if ok else 1
        ui = start_ui(port)
        try:
            wait_for_ui(port, ui)
            print(f"\nDagster UI: http://127.0.0.1:{port}   (Ctrl-C stops everything)")
            ui.wait()
        except KeyboardInterrupt:
            print("\nstopping...")
            raise
        finally:
            stop_process_group(ui)
    return 0 if ok else 1


# --------------------------------------------------------------------------- dashboards


def run_bi(port: int = 8088, reset_password: bool = False) -> int:
    """Superset on the warehouse: a running demo's (attached), a production one
    (SIGNALBOX_WAREHOUSE_URL), or the local stack's."""
    from signalbox.bi.superset import Superset, running_superset
    from signalbox.stack import attach_to_local_stack

    if reset_password:
        superset = Superset.local(port)
        superset.prepare()
        password = superset.create_admin() or superset.reset_password()
        print(f"Superset: log in as admin with the password {password}")
        return 0
    with contextlib.ExitStack() as running:
        if not attach_to_local_stack() and not os.environ.get("SIGNALBOX_WAREHOUSE_URL"):
            running.enter_context(local_stack())
        superset = running.enter_context(
            running_superset(os.environ["SIGNALBOX_WAREHOUSE_URL"], port)
        )
        print("(Ctrl-C stops)")
        while superset._server and superset._server.poll() is None:
            time.sleep(1)
    return 0


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
