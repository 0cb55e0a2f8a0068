"""Start-up costs a user feels: loading the code location (every run worker, sensor
process and UI reload pays it) and `signalbox demo --once` from a fresh state.

- `platform.code_location_load_seconds`: in a fresh interpreter, the time to import
  `signalbox.definitions` (dbt manifests current), best of five; goal < 3 s. The whole
  process, interpreter start and exit included, is reported beside it.
- `platform.demo_once_seconds`: `signalbox demo --once` on a new SIGNALBOX_HOME, engines and
  simulators started by it, every domain materialized; goal < 90 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import report
from signalbox.platform.settings import PROJECT_ROOT

LOCAL_PREFIXES = ("SIGNALBOX_", "HELPSCOUT_", "NEOPLE_", "CFPB_", "TELEGRAM_", "DAGSTER_")


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LOCAL_PREFIXES)}
    env["SIGNALBOX_HOME"] = str(home)
    return env


LOAD = (
    "import time; started = time.perf_counter(); import signalbox.definitions; "
    "print(time.perf_counter() - started)"
)


def bench_code_location_load(env: dict[str, str]) -> None:
    load = [sys.executable, "-c", LOAD]
    subprocess.run(load, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)  # parse
    imports, processes = [], []
    for _ in range(5):
        started = time.perf_counter()
        done = subprocess.run(
            load, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, text=True
        )
        processes.append(time.perf_counter() - started)
        imports.append(float(done.stdout.strip().splitlines()[-1]))
    report("platform.code_location_load_seconds", min(imports), "<3")
    report("platform.code_location_process_seconds", min(processes))


def bench_demo_once(env: dict[str, str]) -> None:
    signalbox = str(Path(sys.executable).with_name("signalbox"))
    started = time.perf_counter()
    done = subprocess.run(
        [signalbox, "demo", "--once"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(
            f"signalbox demo --once failed (exit {done.returncode}) after {seconds:.0f}s"
        )
    report("platform.demo_once_seconds", seconds, "<90")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signalbox-bench-", dir="/tmp"))
    home.chmod(0o755)  # the embedded PostgreSQL runs as `nobody` when we are root
    try:
        env = clean_env(home)
        bench_code_location_load(env)
        bench_demo_once(env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
