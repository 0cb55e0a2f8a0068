"""PostgreSQL from the `pgserver` wheel's binaries, run as a local, loopback-only server.

We call the bundled `initdb` / `pg_ctl` directly instead of `pgserver.get_server()`:
as root that helper creates a system user and rewrites permissions up to `/`, and it
stops the server when its last handle process exits, which does not fit `dagster dev`'s
several processes.

PostgreSQL refuses to run as root, so as root the server runs as `nobody`, in nobody's
own group with no supplementary groups (never with root's group rights). Every path it
needs (binaries, libraries, data) must then be enterable by `nobody`; where it is not
(a checkout under root's home, mode 700), the binaries are copied and the cluster is
kept under `relocate_root` (`/var/lib/signalbox`), linked from where it was asked for.

Connections need a password (SCRAM): generated at `initdb`, kept beside the data dir in
`<name>.password` (mode 0600, under SIGNALBOX_HOME for the default server); it travels
in the URL, which `redact_url` hides wherever a URL is shown.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from signalbox.platform.embedded.ports import free_port
from signalbox.platform.settings import write_private

DATABASE = "signalbox"
SUPERUSER = "postgres"
SERVER_USER = "nobody"
RELOCATE_ROOT = Path("/var/lib/signalbox")

log = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


def _installed_bin_dir() -> Path:
    # found without importing pgserver, whose import touches XDG_RUNTIME_DIR
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the pgserver wheel is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


@dataclass(frozen=True)
class _ServerUser:
    """Who runs the server: `nobody` (own group, no supplementary groups) under root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_this_process(cls) -> _ServerUser | None:
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam(SERVER_USER)
        return cls(SERVER_USER, entry.pw_uid, entry.pw_gid)

    def can_enter(self, path: Path) -> Path | None:
        """None when every directory down to `path` is enterable, else the first that is not.

        The kernel's rule: the owner's bits for the owner, the group's bits for the group
        (even when others may enter), others' bits for the rest."""
        for directory in [*reversed(path.parents), path]:
            try:
                st = directory.stat()
            except FileNotFoundError:
                return None  # created later by us, as the caller's user
            if st.st_uid == self.uid:
                bit = 0o100
            elif st.st_gid == self.gid:
                bit = 0o010
            else:
                bit = 0o001
            if not st.st_mode & bit:
                return directory
        return None


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster at `data_dir`, listening on 127.0.0.1 only."""

    data_dir: Path
    relocate_root: Path = field(default=RELOCATE_ROOT)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self._user = _ServerUser.for_this_process()

    # ------------------------------------------------------------------ where things are

    @property
    def password_file(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.password")

    @property
    def cluster_dir(self) -> Path:
        """The real directory of the cluster (`data_dir`, or where its link points)."""
        return self.data_dir.resolve()

    @property
    def _pid_file(self) -> Path:
        return self.cluster_dir / "postmaster.pid"

    def _bin_dir(self) -> Path:
        """The binaries, copied once to `relocate_root` when the server's user cannot enter them."""
        installed = _installed_bin_dir()
        # the wheel's layout: <site>/pgserver/pginstall/{bin,lib,share}, and the libraries
        # the binaries find through their RPATH, $ORIGIN/../../../pgserver.libs
        site = installed.parents[2]
        needed = [installed.parent / part for part in ("bin", "lib", "share")]
        needed.append(site / "pgserver.libs")
        if self._user is None or all(self._user.can_enter(path) is None for path in needed):
            return installed
        version = importlib.metadata.version("pgserver")
        copy = self.relocate_root / f"pgserver-{version}"
        if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
            self._make_relocate_root()
            staging = Path(tempfile.mkdtemp(prefix=".pgserver-", dir=self.relocate_root))
            try:
                tree = staging / "tree"
                shutil.copytree(installed.parent, tree / "pgserver" / "pginstall", symlinks=True)
                shutil.copytree(site / "pgserver.libs", tree / "pgserver.libs", symlinks=True)
                _open_for_others(tree)
                tree.rename(copy)
            except OSError:
                if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return copy / "pgserver" / "pginstall" / "bin"

    def _make_relocate_root(self) -> None:
        self.relocate_root.mkdir(parents=True, exist_ok=True)
        self.relocate_root.chmod(0o755)
        blocked = self._user.can_enter(self.relocate_root) if self._user else None
        if blocked is not None:
            raise EmbeddedPostgresError(_advice(blocked, self.data_dir))

    def _place_data_dir(self) -> None:
        """Create the data dir where the server's user can reach it (relocating if need be)."""
        if self.data_dir.exists() or self.data_dir.is_symlink():
            blocked = self._user.can_enter(self.cluster_dir) if self._user else None
            if blocked is not None:
                raise EmbeddedPostgresError(_advice(blocked, self.data_dir))
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        blocked = self._user.can_enter(self.data_dir.parent) if self._user else None
        if blocked is None:
            self.data_dir.mkdir()
            return
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        self._make_relocate_root()
        target = self.relocate_root / "postgres" / f"{self.data_dir.name}-{digest}"
        target.parent.mkdir(exist_ok=True)
        target.parent.chmod(0o755)
        target.mkdir(exist_ok=True)
        self.data_dir.symlink_to(target, target_is_directory=True)
        log.warning(
            "embedded PostgreSQL: %s is closed to '%s', who runs the server; its data is kept "
            "in %s (linked from %s). To keep it beside the project, set SIGNALBOX_HOME to a "
            "folder whose parents others may enter.",
            blocked,
            SERVER_USER,
            target,
            self.data_dir,
        )

    # ------------------------------------------------------------------ running

    def running_port(self) -> int | None:
        """The port of a server already running on this data dir, else None."""
        try:
            lines = self._pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError, NotADirectoryError):
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

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"no password file {self.password_file} for the embedded PostgreSQL"
            ) from None

    def url(self, port: int | None = None, database: str = DATABASE) -> str:
        port = port or self.running_port()
        if port is None:
            raise EmbeddedPostgresError(f"embedded PostgreSQL in {self.data_dir} is not running")
        return f"postgresql://{SUPERUSER}:{self.password()}@127.0.0.1:{port}/{database}"

    def start(self) -> str:
        """Initialise (first time) and start the server; returns its URL. Idempotent."""
        port = self.running_port()
        if port is not None:
            return self.url(port)
        self._initdb()
        port = free_port()
        self._pg(
            "pg_ctl",
            "-D",
            str(self.cluster_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.cluster_dir / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off "
            "-c max_connections=200",
            "start",
        )
        self._require_password(port)
        self._create_database(port)
        return self.url(port)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._pg("pg_ctl", "-D", str(self.cluster_dir), "-w", "-t", "60", "-m", "fast", "stop")

    # ------------------------------------------------------------------ set-up

    def _initdb(self) -> None:
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        self._place_data_dir()
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_urlsafe(24))
        if self._user:
            os.chown(self.cluster_dir, self._user.uid, self._user.gid)
        self.cluster_dir.chmod(0o700)
        # initdb reads the password from a file: one only the server's user can read, removed after
        scratch = Path(tempfile.mkdtemp(prefix="signalbox-initdb-"))
        try:
            pwfile = scratch / "password"
            write_private(pwfile, self.password())
            if self._user:
                os.chown(scratch, self._user.uid, self._user.gid)
                os.chown(pwfile, self._user.uid, self._user.gid)
            self._pg(
                "initdb",
                "-D",
                str(self.cluster_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _require_password(self, port: int) -> None:
        """A cluster made before passwords trusted every local user: give it one, once."""
        hba = self.cluster_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        if not any(line.split()[-1:] == ["trust"] for line in lines if not line.startswith("#")):
            return
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_urlsafe(24))
        conn = psycopg2.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=10
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f"ALTER ROLE {SUPERUSER} PASSWORD %s", (self.password(),))
        finally:
            conn.close()
        hba.write_text(
            "\n".join(
                line
                if line.startswith("#") or line.split()[-1:] != ["trust"]
                else line.rsplit("trust", 1)[0] + "scram-sha-256"
                for line in lines
            )
            + "\n"
        )
        self._pg("pg_ctl", "-D", str(self.cluster_dir), "reload")

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
        user = self._user
        result = subprocess.run(
            [str(self._bin_dir() / program), *args],
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,
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


def _advice(blocked: Path, data_dir: Path) -> str:
    return (
        f"{blocked} is closed to '{SERVER_USER}', who runs the embedded PostgreSQL for "
        f"{data_dir} (PostgreSQL refuses root): set SIGNALBOX_HOME to a folder whose parents "
        f"others may enter, or run `chmod o+x {blocked}`."
    )


def _open_for_others(root: Path) -> None:
    """A copied tree readable (and its programs runnable) by every user."""
    for directory, _, files in os.walk(root):
        Path(directory).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))
