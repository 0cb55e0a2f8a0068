"""Zero-setup stand-ins for the production engines, started on a fresh machine.

Each is owned by whoever starts it: the `signalbox` CLI or a test fixture, which stops it
again. When a Dagster process needs the warehouse and nothing started it, the process
starts it lazily, and the last process using it so stops it when it exits (a run that
ends first does not cut off another still working).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.settings import signalbox_home

_lock = threading.Lock()
_holding: IO | None = None  # this process's shared hold on postgres.users.lock
LAZY_MARKER = "postgres.started-lazily"


def embedded_postgres() -> EmbeddedPostgres:
    return EmbeddedPostgres(signalbox_home() / "postgres")


@contextlib.contextmanager
def _taking_turns(home: Path) -> Iterator[None]:
    """Starting and stopping the embedded server, one process at a time."""
    with _lock, open(home / "postgres.start.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def embedded_warehouse_url() -> str:
    """URL of the embedded PostgreSQL under SIGNALBOX_HOME, starting it if nobody has.
    Two processes asking at once (two runs launched together) take turns: the second
    finds the first's server instead of starting the same cluster again."""
    home = signalbox_home()
    with _taking_turns(home):
        server = embedded_postgres()
        if server.running_port() is None:
            server.start()
            (home / LAZY_MARKER).touch()  # no owner: its users stop it, the last one out
        _use(home, server)
        return server.url()


def _use(home: Path, server: EmbeddedPostgres) -> None:
    global _holding
    if _holding is None:
        _holding = open(home / "postgres.users.lock", "a")  # noqa: SIM115 (held till exit)
        fcntl.flock(_holding, fcntl.LOCK_SH)
        atexit.register(_leave, home, server)


def _leave(home: Path, server: EmbeddedPostgres) -> None:
    """At exit: the last user of a lazily started server stops it; a server an owner
    started (no marker) is the owner's to stop."""
    global _holding
    with _taking_turns(home):
        try:  # exclusive only when no other process holds it shared
            fcntl.flock(_holding, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process still uses it: the last of them stops it
        finally:
            _holding.close()
            _holding = None
        marker = home / LAZY_MARKER
        if marker.exists():
            server.stop()
            marker.unlink()
