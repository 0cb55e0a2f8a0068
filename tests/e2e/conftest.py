"""Run the real `signalbox` CLI in a subprocess on a fresh SIGNALBOX_HOME; at the end
send the run's stop signal (Ctrl-C's SIGINT, or SIGTERM as a process manager or `docker
stop` sends) and require that every process it started is gone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from signalbox.platform.settings import PROJECT_ROOT

PRODUCTION_VARIABLES = [
    "SIGNALBOX_WAREHOUSE_URL",
    "HELPSCOUT_BASE_URL",
    "HELPSCOUT_CLIENT_ID",
    "HELPSCOUT_CLIENT_SECRET",
    "DAGSTER_HOME",
    "SIGNALBOX_CLICKHOUSE_URL",
    "TELEGRAM_API_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "SIGNALBOX_S3_ENDPOINT_URL",
    "SIGNALBOX_SMTP_HOST",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "NEOPLE_BASE_URL",
    "NEOPLE_API_KEY",
    "NEOPLE_CHARACTERS",
    "CFPB_BASE_URL",
    "SIGNALBOX_KAFKA_BOOTSTRAP",
    "SIGNALBOX_ENV",
]


def started_by(home: str) -> list[psutil.Process]:
    """Processes whose environment carries this SIGNALBOX_HOME (all the CLI started)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SIGNALBOX_HOME") == home:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@dataclass
class CliRun:
    home: Path
    process: subprocess.Popen
    log: Path
    stop_signal: signal.Signals = signal.SIGINT

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"signalbox exited early:\n{self.output()}")
            time.sleep(1)
        raise AssertionError(f"no '{text}' after {timeout:.0f}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()[-4000:]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus production settings, on a SIGNALBOX_HOME of its own."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    env.update(SIGNALBOX_HOME=str(home), **extra)
    return env


def fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="signalbox-e2e-", dir="/tmp"))
    home.chmod(0o755)  # the embedded PostgreSQL runs as `nobody` when we are root
    return home


@pytest.fixture
def new_home() -> Callable[[], Path]:
    return fresh_home


@pytest.fixture
def env_for() -> Callable[..., dict[str, str]]:
    return clean_env


@pytest.fixture
def demo_with_ui(run_cli) -> Callable[..., tuple[CliRun, int]]:
    """`signalbox demo` with its UI on a free port, on a week of the APIs' history, stopped
    with SIGTERM (as `docker stop` or a process manager stops it); once the UI answers.
    With `bi_port`, the dashboards (Superset) too, on that port."""
    from datetime import UTC, datetime, timedelta

    from signalbox.platform.embedded.ports import free_port

    def start(bi_port: int | None = None) -> tuple[CliRun, int]:
        port = free_port()
        week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
        bi = ["--bi", "--bi-port", str(bi_port)] if bi_port else []
        demo = run_cli(
            "demo",
            "--port",
            str(port),
            *bi,
            stop_signal=signal.SIGTERM,
            HELPSCOUT_BACKFILL_START=week_ago,
            CFPB_BACKFILL_START=week_ago,
        )
        demo.wait_for(f"Dagster UI: http://127.0.0.1:{port}", timeout=900)
        return demo, port

    return start


@pytest.fixture
def processes_of() -> Callable[[str], list[psutil.Process]]:
    """The processes a CLI run on that SIGNALBOX_HOME started."""
    return started_by


@pytest.fixture
def run_cli() -> Iterator:
    runs: list[CliRun] = []

    def start(*args: str, stop_signal=signal.SIGINT, **extra_env: str) -> CliRun:
        home = fresh_home()
        env = clean_env(home, **extra_env)
        log = home / "cli.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("signalbox")), *args],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        runs.append(CliRun(home, process, log, stop_signal))
        return runs[-1]

    yield start

    for run in runs:
        run.process.send_signal(run.stop_signal)
        try:
            run.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            run.process.kill()
            raise
        deadline = time.monotonic() + 30
        while started_by(str(run.home)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert started_by(str(run.home)) == [], run.output()
        assert not (run.home / "postgres" / "postmaster.pid").exists()
        assert f"stopped ({run.stop_signal.name})" in run.output()
        shutil.rmtree(run.home, ignore_errors=True)  # kept only when a check above failed
