"""The crash-drill harness: run a domain's materialization in a child process and kill it
with SIGKILL at a chosen point of the code (the Nth call of a function, before or after
it) or after a random delay, as a lost machine, an OOM kill or `kill -9` would.

Children come from a fork server that has the platform imported already, so a run starts
in milliseconds, not the seconds a fresh interpreter needs. Each child leads a process
group of its own, and a kill takes the whole group: dbt and any other subprocess die with
the run, as they would with its machine. The kill point is armed in the child only: the
code under test is the code that ships.

What the drills found is recorded (`record`) and summed up at the end of the session
(tests/conftest.py prints the score): kill points exercised, rows lost, duplicates,
watermarks ahead of the data, partial partitions.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import multiprocessing
import os
import random
import signal
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCORE_DIR_ENV = "SIGNALBOX_DRILL_SCORE_DIR"
KILLED = -signal.SIGKILL
_PRELOAD = [
    "dagster",
    "psycopg2",
    "pyarrow",
    "signalbox.platform.warehouse",
    "signalbox.platform.object_store",
    "signalbox.platform.http",
]


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the run at the `nth` call of `target` ("module:attr.path"), `when` before
    the call starts or after it returns. With `fault` ("module:function"), call that
    instead and let the run go on: an engine lost mid-run, say."""

    target: str
    nth: int = 1
    when: str = "before"
    note: str = ""
    fault: str | None = None

    def __str__(self) -> str:
        return f"{self.when} {self.target} #{self.nth}" + (f" ({self.note})" if self.note else "")


@dataclass
class Outcome:
    exitcode: int | None
    seconds: float
    error: str = ""

    @property
    def killed(self) -> bool:
        return self.exitcode == KILLED

    @property
    def succeeded(self) -> bool:
        return self.exitcode == 0


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def run(
    runner: str,
    settings: dict[str, Any],
    *,
    kill: KillPoint | None = None,
    kill_after: float | None = None,
    timeout: float = 300.0,
) -> Outcome:
    """Run `runner` ("module:function", called with `settings`) in a child process, armed
    with `kill` or killed `kill_after` seconds after its start."""
    context = _context()
    errors = context.Queue()
    started = time.monotonic()
    child = context.Process(target=_child, args=(runner, settings, kill, errors), daemon=False)
    child.start()
    if kill_after is not None:
        child.join(kill_after)
        if child.is_alive():
            _kill_group(child.pid)
    child.join(timeout)
    if child.is_alive():
        _kill_group(child.pid)
        child.join(10)
        raise TimeoutError(f"{runner} did not finish in {timeout:.0f}s")
    error = ""
    with contextlib.suppress(Exception):
        error = errors.get(timeout=0.5)
    return Outcome(child.exitcode, time.monotonic() - started, error)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _child(runner: str, settings: dict[str, Any], kill: KillPoint | None, errors) -> None:
    os.setpgrp()  # the run and everything it starts: one group, killed together
    # the fork server keeps the environment it started with: the run's own comes along
    os.environ.update(settings.get("env") or {})
    if kill is not None:
        _arm(kill)
    module, _, name = runner.partition(":")
    try:
        ok = getattr(importlib.import_module(module), name)(settings)
    except BaseException:
        errors.put(traceback.format_exc()[-3000:])
        errors.close()
        errors.join_thread()  # the message is through before the process ends
        os._exit(1)
    os._exit(0 if ok else 1)


def _arm(kill: KillPoint) -> None:
    module, _, path = kill.target.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, attribute = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, attribute)
    calls = 0

    def die() -> None:
        if kill.fault:
            module, _, name = kill.fault.partition(":")
            getattr(importlib.import_module(module), name)()
            return
        os.killpg(0, signal.SIGKILL)

    @functools.wraps(original)
    def armed(*args, **kwargs):
        nonlocal calls
        calls += 1
        if kill.when == "before" and calls == kill.nth:
            die()
        result = original(*args, **kwargs)
        if kill.when == "after" and calls == kill.nth:
            die()
        return result

    setattr(owner, attribute, armed)


def succeeded(result) -> bool:
    """A run's success; on failure an exception with each failed step's own error, so the
    parent sees what the run said (`Outcome.error`)."""
    if result.success:
        return True
    errors = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error is not None:
                errors.append(f"{error.cls_name}: {error.message.strip()}")
                error = error.cause
    raise RuntimeError("the run failed:\n" + "\n".join(errors))


# --------------------------------------------------------------------------- the score


@dataclass
class DrillScore:
    domain: str
    kill_points: int = 0  # kills that landed (the run died there)
    random_kills: int = 0
    runs: int = 0
    rows_lost: int = 0
    duplicates: int = 0
    watermarks_ahead: int = 0
    partial_partitions: int = 0
    faults: int = 0
    seconds: float = 0.0
    points: list[str] = field(default_factory=list)


def record(score: DrillScore) -> None:
    """Keep the drill's figures for the session's summary (tests/conftest.py)."""
    folder = Path(os.environ.get(SCORE_DIR_ENV) or "build/drill")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{score.domain}-{os.getpid()}.json").open("w") as out:
        json.dump(asdict(score), out)


def random_delays(seed: int, count: int, longest: float) -> list[float]:
    """Kill moments for the random drills, reproducible from the seed."""
    rng = random.Random(seed)
    return [round(rng.uniform(0.05, longest), 3) for _ in range(count)]


def plan(
    points: list[KillPoint], *, seed: int, random_kills: int, longest: float
) -> list[tuple[KillPoint | None, float | None]]:
    """The chosen kill points, then `random_kills` runs killed after a random delay."""
    chosen: list[tuple[KillPoint | None, float | None]] = [(point, None) for point in points]
    return chosen + [(None, delay) for delay in random_delays(seed, random_kills, longest)]


def rows_lost(have: dict, want: dict) -> int:
    """Records of the source's truth (by key) missing from the store, or stored with other
    content: what a re-run failed to bring back."""
    return sum(1 for key, record in want.items() if have.get(key, object()) != record)


def tally(score: DrillScore, point: KillPoint | None, outcome: Outcome) -> None:
    """Count a run of the plan: a chosen point must have killed it; a random delay may
    have come after the run ended, and then the run must have succeeded."""
    score.runs += 1
    score.seconds += outcome.seconds
    if point is not None:
        assert outcome.killed, f"the run was never killed {point}: {outcome}"
        score.kill_points += 1
        score.points.append(str(point))
    elif outcome.killed:
        score.random_kills += 1
    else:
        assert outcome.succeeded, outcome.error
