"""The ClickHouse event store: a server through clickhouse-connect, or chDB in-process.

`SIGNALBOX_CLICKHOUSE_URL` (`http[s]://user:password@host:port/database`) points at a
server; unset, the embedded chDB engine keeps its data in `SIGNALBOX_HOME/clickhouse`.
Both paths hand out the same clickhouse-connect `Client`, so callers write one SQL.

chDB locks its data directory for one process at a time and fails at once when another
process holds it (measured in notes/chdb.md). Dagster runs steps, sensors and dbt in
separate processes, so every use of the embedded engine goes through `engine_lock()`: an
exclusive `flock` on `SIGNALBOX_HOME/clickhouse.lock` that waiters queue on (with a
timeout and an error naming the holder), held only while a client is open or while a dbt
subprocess runs. Clients are opened per use and closed on exit, which releases chDB's
own lock at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import dagster as dg
from pydantic import Field

from signalbox.platform.settings import refuse_embedded, signalbox_home

if TYPE_CHECKING:  # clickhouse-connect is imported when a client opens, not at code load
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 8123, "https": 8443}


class ClickHouseConfigError(ValueError):
    """SIGNALBOX_CLICKHOUSE_URL cannot be used; the message never contains the password."""


class ClickHouseEngineBusy(TimeoutError):
    """The embedded engine stayed locked by another holder for longer than the timeout."""


# --------------------------------------------------------------------------- server URL


@dataclass(frozen=True)
class ServerAddress:
    """Where a ClickHouse server is, parsed from `SIGNALBOX_CLICKHOUSE_URL`."""

    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool
    cluster: str = ""  # dbt's DDL goes ON CLUSTER this cluster when set

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs, errors and run metadata."""
        scheme = "https" if self.secure else "http"
        on = f"?cluster={self.cluster}" if self.cluster else ""
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}{on}"


DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def checked_database(name: str, what: str = "SIGNALBOX_CLICKHOUSE_DATABASE") -> str:
    """A database name that is safe as an identifier in DDL (letters, digits, `_`)."""
    if not DATABASE_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ClickHouseConfigError(
            f"{what} must be letters, digits and '_' (at most 64, not starting with a "
            f"digit), got {shown!r}"
        )
    return name


def parse_clickhouse_url(url: str, default_database: str = "activity") -> ServerAddress:
    """`http[s]://user:password@host[:port][/database][?cluster=name]` -> ServerAddress.

    The port defaults to ClickHouse's HTTP ports (8123, 8443 for https), the user to
    `default`, the database to `default_database` when the URL has no path; `cluster` makes
    dbt create, replace and drop the models `ON CLUSTER` (a sharded or replicated server)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    shown = f"{scheme}://{parts.hostname or ''}{parts.path}"
    if scheme not in DEFAULT_PORTS:
        raise ClickHouseConfigError(
            f"SIGNALBOX_CLICKHOUSE_URL must start with http:// or https:// (got {shown!r})"
        )
    if not parts.hostname:
        raise ClickHouseConfigError(f"SIGNALBOX_CLICKHOUSE_URL has no host ({shown!r})")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:  # a non-numeric or out-of-range port
        raise ClickHouseConfigError(f"SIGNALBOX_CLICKHOUSE_URL has a bad port ({shown!r})") from exc
    database = unquote(parts.path.strip("/"))
    if "/" in database:
        raise ClickHouseConfigError(
            f"SIGNALBOX_CLICKHOUSE_URL path must be one database name ({shown!r})"
        )
    if database:
        checked_database(database, "SIGNALBOX_CLICKHOUSE_URL's database")
    return ServerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=database or default_database,
        secure=scheme == "https",
        cluster=_cluster(parts.query, shown),
    )


def _cluster(query: str, shown: str) -> str:
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"cluster"})
    if unknown:
        raise ClickHouseConfigError(
            f"SIGNALBOX_CLICKHOUSE_URL takes only ?cluster=, not {', '.join(unknown)} ({shown!r})"
        )
    cluster = options.get("cluster", "")
    if cluster and not re.fullmatch(r"[A-Za-z0-9_.-]+", cluster):
        raise ClickHouseConfigError(f"SIGNALBOX_CLICKHOUSE_URL has a bad cluster name ({shown!r})")
    return cluster


# --------------------------------------------------------------------------- engine guard


class _Guard:
    """One lock file's state in this process: a reentrant thread lock in front of the flock,
    so nested `engine_lock()` calls in one thread pass and other threads queue."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_guards: dict[str, _Guard] = {}
_guards_lock = threading.Lock()
_open_engine_clients = 0  # embedded clients open in this process (chDB allows one path)


def _forget_guards_in_child() -> None:
    # A forked child shares the parent's open lock file, and with it the flock: drop the
    # inherited state (closing our copy of the descriptor never unlocks the parent's).
    global _guards, _guards_lock, _open_engine_clients
    for guard in _guards.values():
        if guard.fd is not None:
            os.close(guard.fd)
    _guards, _guards_lock, _open_engine_clients = {}, threading.Lock(), 0


os.register_at_fork(after_in_child=_forget_guards_in_child)


def _holder_note(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown holder"
    if not holder:
        return "an unknown holder"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('purpose')}),"
        f" since {holder.get('since')}"
    )


@contextmanager
def hold_engine_lock(lock_path: Path, timeout: float, purpose: str) -> Iterator[None]:
    """Hold the exclusive lock at `lock_path`, waiting up to `timeout` seconds for it.

    Reentrant within a thread; other threads and processes wait. The holder's pid and
    purpose are written into the file so a waiter that times out can say who holds it."""
    key = str(lock_path)
    with _guards_lock:
        guard = _guards.setdefault(key, _Guard())
    deadline = time.monotonic() + timeout
    if not guard.thread_lock.acquire(timeout=max(timeout, 0)):
        raise ClickHouseEngineBusy(
            f"embedded ClickHouse lock {lock_path} is held by another thread of pid "
            f"{os.getpid()} for more than {timeout:.0f} s ({purpose})"
        )
    try:
        if guard.depth == 0:
            guard.fd = _acquire_flock(lock_path, deadline, timeout, purpose)
        guard.depth += 1
    except BaseException:
        guard.thread_lock.release()
        raise
    try:
        yield
    finally:
        guard.depth -= 1
        if guard.depth == 0 and guard.fd is not None:
            fd, guard.fd = guard.fd, None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        guard.thread_lock.release()


def _acquire_flock(lock_path: Path, deadline: float, timeout: float, purpose: str) -> int:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    delay, announced = 0.02, False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise ClickHouseEngineBusy(
                        f"embedded ClickHouse at {lock_path.parent} is busy: waited "
                        f"{timeout:.0f} s for {lock_path} ({purpose}); it is held by "
                        f"{_holder_note(lock_path)}"
                    ) from None
                if not announced and now + timeout - deadline > 2:
                    log.info("waiting for %s held by %s", lock_path, _holder_note(lock_path))
                    announced = True
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.25)
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": purpose,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(note).encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- the resource


class ClickHouseResource(dg.ConfigurableResource):
    """ClickHouse for user activity: a server when `url` is set, else chDB in-process."""

    url: str | None = Field(
        default=None,
        description="ClickHouse HTTP URL (SIGNALBOX_CLICKHOUSE_URL), e.g. "
        "http://user:password@host:8123/activity; unset = embedded chDB under SIGNALBOX_HOME.",
    )
    database: str = Field(
        default="activity",
        description="Database of the source tables when the URL names none (dbt's models "
        "go to <database>_staging, _intermediate and _marts).",
    )
    lock_timeout_seconds: float = Field(
        default=900.0,
        description="Embedded engine only: how long a step waits for another holder.",
    )

    # ----------------------------------------------------------------- where the engine is

    @property
    def is_embedded(self) -> bool:
        return not self.url

    def server(self) -> ServerAddress:
        if not self.url:
            raise ClickHouseConfigError("no SIGNALBOX_CLICKHOUSE_URL: the engine is embedded")
        return parse_clickhouse_url(self.url, self.database)

    def data_dir(self) -> Path:
        """The embedded engine's data directory (refused in production)."""
        refuse_embedded("the embedded chDB", "SIGNALBOX_CLICKHOUSE_URL")
        return signalbox_home() / "clickhouse"

    def lock_path(self) -> Path:
        """The guard file, beside (not inside) the data directory chDB owns."""
        return self.data_dir().with_name("clickhouse.lock")

    def target_database(self) -> str:
        return self.server().database if self.url else checked_database(self.database)

    def describe(self) -> str:
        """Where the data is, without secrets (for logs and metadata)."""
        return self.server().safe_url if self.url else f"chdb://{self.data_dir()}"

    # ----------------------------------------------------------------- using it

    @contextmanager
    def engine_lock(self, purpose: str = "signalbox") -> Iterator[None]:
        """Exclusive use of the embedded engine across processes (no-op for a server)."""
        if not self.is_embedded:
            yield
            return
        with hold_engine_lock(self.lock_path(), self.lock_timeout_seconds, purpose):
            yield

    @contextmanager
    def client(self, purpose: str = "client") -> Iterator[Client]:
        """A clickhouse-connect client on the target database, closed on exit (which also
        releases chDB's directory lock); the embedded path holds `engine_lock()` meanwhile."""
        with self.engine_lock(purpose):
            client = self._open()
            try:
                yield client
            finally:
                self._close(client)

    @contextmanager
    def dbt_lock(self, purpose: str = "dbt") -> Iterator[dict[str, str]]:
        """Hold the engine for a dbt subprocess and yield the environment its profile reads.

        The engine itself must be closed in this process while dbt runs (chDB would refuse
        the child), so opening this inside `client()` is an error."""
        with self.engine_lock(purpose):
            if self.is_embedded and _open_engine_clients:
                raise RuntimeError(
                    "close the ClickHouse client before running dbt: chDB lets only one "
                    f"process open {self.data_dir()}"
                )
            yield self.dbt_env()

    def dbt_env(self) -> dict[str, str]:
        """Variables of dbt_project/activity/profiles.yml; the target follows the engine."""
        if self.is_embedded:
            return {
                "SIGNALBOX_CLICKHOUSE_TARGET": "chdb",
                "SIGNALBOX_CLICKHOUSE_PATH": str(self.data_dir()),
                "SIGNALBOX_CLICKHOUSE_DATABASE": self.database,
            }
        server = self.server()
        return {
            "SIGNALBOX_CLICKHOUSE_TARGET": "server",
            "SIGNALBOX_CLICKHOUSE_HOST": server.host,
            "SIGNALBOX_CLICKHOUSE_PORT": str(server.port),
            "SIGNALBOX_CLICKHOUSE_USER": server.username,
            "SIGNALBOX_CLICKHOUSE_PASSWORD": server.password,
            "SIGNALBOX_CLICKHOUSE_DATABASE": server.database,
            "SIGNALBOX_CLICKHOUSE_SECURE": "true" if server.secure else "false",
            "SIGNALBOX_CLICKHOUSE_CLUSTER": server.cluster,
        }

    # ----------------------------------------------------------------- one-shot helpers

    def query(self, sql: str, parameters: dict[str, Any] | Sequence[Any] | None = None) -> list:
        with self.client("query") as client:
            return client.query(sql, parameters=parameters).result_rows

    def command(self, sql: str, parameters: dict[str, Any] | Sequence[Any] | None = None) -> Any:
        with self.client("command") as client:
            return client.command(sql, parameters=parameters)

    def scalar(self, sql: str, parameters: dict[str, Any] | Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    # ----------------------------------------------------------------- internals

    def _open(self) -> Client:
        import clickhouse_connect

        global _open_engine_clients
        if not self.is_embedded:
            server = self.server()
            return clickhouse_connect.get_client(
                host=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                database=server.database,
                secure=server.secure,
                client_name="signalbox",
                connect_timeout=10,
                send_receive_timeout=600,
            )
        client = self._open_embedded()
        try:
            # a fresh engine has only `default`; a server's database is provisioned by its owner
            client.command(f"CREATE DATABASE IF NOT EXISTS `{checked_database(self.database)}`")
            client.database = self.database
        except BaseException:
            client.close()
            raise
        with _guards_lock:
            _open_engine_clients += 1
        return client

    def _open_embedded(self) -> Client:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ProgrammingError

        """Open chDB, waiting (within the lock timeout) for a holder outside the guard,
        e.g. a dbt run started by hand: chDB itself fails at once instead of waiting."""
        data_dir = self.data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                return clickhouse_connect.get_client(interface="chdb", path=str(data_dir))
            except ProgrammingError as exc:
                text = str(exc)
                if "already initialized with path" in text:
                    # chDB runs one data directory per process: another one is open here
                    raise ClickHouseConfigError(
                        f"this process already has chDB open on another directory; close "
                        f"its clients before opening {data_dir} ({text})"
                    ) from exc
                if "Unable to open the chdb engine" not in text:
                    raise
                if time.monotonic() >= deadline:
                    raise ClickHouseEngineBusy(
                        f"embedded ClickHouse at {data_dir} stayed locked for "
                        f"{self.lock_timeout_seconds:.0f} s by a process outside signalbox's "
                        "guard (chDB lets one process open a directory; e.g. a dbt or "
                        "Python session started by hand)"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _close(self, client: Client) -> None:
        global _open_engine_clients
        try:
            client.close()
        finally:
            if self.is_embedded:
                with _guards_lock:
                    _open_engine_clients -= 1
