"""Zero-setup stand-ins for the production engines, started on a fresh machine.

Each is owned by whoever starts it: the `signalbox` CLI, a test fixture, or (when a
Dagster process needs the warehouse and nothing started it) that process, which stops it
again when it exits.
"""

from __future__ import annotations

import atexit
import fcntl
import threading

from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.settings import signalbox_home

_lock = threading.Lock()


def embedded_postgres() -> EmbeddedPostgres:
    return EmbeddedPostgres(signalbox_home() / "postgres")


def embedded_warehouse_url() -> str:
    """URL of the embedded PostgreSQL under SIGNALBOX_HOME, starting it if nobody has.
    Two processes asking at once (two runs launched together) take turns: the second
    finds the first's server instead of starting the same cluster again."""
    home = signalbox_home()
    home.mkdir(parents=True, exist_ok=True)
    with _lock, open(home / "postgres.start.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        server = embedded_postgres()
        if server.running_port() is not None:
            return server.url()
        url = server.start()
        atexit.register(server.stop)  # we started it, so we stop it
        return url
