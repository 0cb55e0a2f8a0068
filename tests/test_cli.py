"""Ctrl-C in `signalbox demo` stops the UI's whole process group, not only its leader."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from signalbox.cli import group_members, stop_process_group

pytestmark = pytest.mark.integration  # starts engines or processes itself

# A leader that exits on SIGTERM at once, and a child (a stand-in for a run worker that is
# busy finishing an interrupted run) that ignores SIGTERM and outlives it.
CHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('child', flush=True); time.sleep(600)"
)
LEADER = f"""
import subprocess, sys, time
subprocess.Popen([{sys.executable!r}, "-c", {CHILD!r}])
time.sleep(600)
"""
SLEEPER = "import time; time.sleep(600)"


def test_a_member_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    assert leader.stdout.readline().strip() == "child"
    assert len(group_members(leader.pid)) == 2

    started = time.monotonic()
    stop_process_group(leader, grace=1.0)

    assert leader.returncode == -signal.SIGTERM
    assert group_members(leader.pid) == []
    assert time.monotonic() - started < 10


def test_a_group_that_stops_on_sigterm_is_not_waited_for() -> None:
    leader = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    started = time.monotonic()
    stop_process_group(leader, grace=30)
    assert leader.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5
