"""PostgreSQL from the `pgserver` wheel's binaries, run as a local, loopback-only server.

We call the bundled `initdb` / `pg_ctl` directly instead of `pgserver.get_server()`:
as root that helper creates a system user and rewrites permissions up to `/`, and it
stops the server when its last handle process exits, which does not fit `dagster dev`'s
several processes. PostgreSQL refuses to run as root, so as root we run it as `nobody`.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from signalbox.platform.embedded.ports import free_port

DATABASE = "signalbox"
SUPERUSER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


def _bin_dir() -> Path:
    # found without importing pgserver, whose import touches XDG_RUNTIME_DIR
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the pgserver wheel is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: run the server as `nobody` then."""
    return "nobody" if os.geteuid() == 0 else None


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only."""

    data_dir: Path

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def running_port(self) -> int | None:
        """The port of a server already running on this data dir, else None."""
        try:
            lines = self._pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None
        try:
            os.kill(int(lines[0]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user (nobody)
        return int(lines[3])

    def url(self, port: int | None = None, database: str = DATABASE) -> str:
        port = port or self.running_port()
        if port is None:
            raise EmbeddedPostgresError(f"embedded PostgreSQL in {self.data_dir} is not running")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"

    def start(self) -> str:
        """Initialise (first time) and start the server; returns its URL. Idempotent."""
        port = self.running_port()
        if port is not None:
            return self.url(port)
        self._initdb()
        port = free_port()
        log = self.data_dir / "server.log"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(log),
            "-o",
            f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off "
            "-c max_connections=200",
            "start",
        )
        self._create_database(port)
        return self.url(port)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._pg("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", "fast", "stop")

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user:
            _check_traversable(self.data_dir, user)
            shutil.chown(self.data_dir, user=user)
        self.data_dir.chmod(0o700)
        self._pg(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _create_database(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(self.url(port, database="postgres"))
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()

    def _pg(self, program: str, *args: str) -> None:
        user = _run_as()
        cmd = [str(_bin_dir() / program), *args]
        result = subprocess.run(
            cmd,
            user=user,
            cwd="/",
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} failed ({result.returncode}) on {self.data_dir}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )


def _check_traversable(path: Path, user: str) -> None:
    """Every parent of the data dir must be enterable by the server's user."""
    pw = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == pw.pw_uid:
            continue
        if not st.st_mode & 0o001:
            raise EmbeddedPostgresError(
                f"{parent} is not enterable by '{user}', who runs the embedded PostgreSQL "
                "(PostgreSQL refuses root). Point SIGNALBOX_HOME at a directory whose "
                f"parents are world-executable, or run `chmod o+x {parent}`."
            )
