"""Apache Superset for `signalbox bi`: its own virtualenv, its metadata under SIGNALBOX_HOME.

Superset pins SQLAlchemy<2 and cannot share Dagster's virtualenv: `make bi-install` puts
it in `.venv-bi` (deploy/bi-requirements.txt, deploy/bi-constraints.txt); elsewhere
SIGNALBOX_SUPERSET names its `superset` executable. Here it is only ever run as commands
and a server, so nothing of it is imported into signalbox.

SIGNALBOX_HOME/superset/ holds superset_config.py, the SQLite metadata, and the session
secret (0600). The first start creates an `admin` user with a generated password and
prints it once (`signalbox bi --reset-password` prints a new one). Each start imports the
dashboards of signalbox/bi/dashboards (bundle.py) with `superset import-directory
--overwrite`, pointing their one database entry at the warehouse.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import requests

from signalbox.bi import BiError, bundle
from signalbox.platform.settings import PROJECT_ROOT, signalbox_home, write_private

SUPERSET_ENV = "SIGNALBOX_SUPERSET"
DEFAULT_PORT = 8088
ADMIN = "admin"
CONFIG = """\
# Written by `signalbox bi`: Superset's settings for the local dashboards.
from pathlib import Path

_HOME = Path(__file__).resolve().parent
SECRET_KEY = (_HOME / "secret_key").read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{_HOME / 'superset.db'}"
# nothing leaves this machine: the browser may load only what this server serves (the
# stock policy allows an analytics pixel the UI always renders, map tiles and web fonts)
SCARF_ANALYTICS = False
MAPBOX_API_KEY = ""
_LOCAL = ["'self'", "blob:", "data:"]
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": _LOCAL,
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
# the dashboards are code (signalbox/bi/dashboards): people look, they do not need examples
SUPERSET_WEBSERVER_TIMEOUT = 120
FEATURE_FLAGS = {"ALERT_REPORTS": False}
"""


class SupersetError(BiError):
    pass


def superset_executable() -> Path:
    """SIGNALBOX_SUPERSET, else the project's .venv-bi, else `superset` on PATH."""
    if configured := os.environ.get(SUPERSET_ENV, "").strip():
        path = Path(configured)
        if not os.access(path, os.X_OK):
            raise SupersetError(f"{SUPERSET_ENV}={configured} is not an executable")
        return path
    beside = PROJECT_ROOT / ".venv-bi" / "bin" / "superset"
    if beside.exists():
        return beside
    if found := shutil.which("superset"):
        return Path(found)
    raise SupersetError(
        "Superset is not installed: `make bi-install` puts it in .venv-bi (its own "
        f"virtualenv), or set {SUPERSET_ENV} to a superset executable"
    )


@dataclass
class Superset:
    home: Path
    port: int = DEFAULT_PORT
    executable: Path | None = None
    _server: subprocess.Popen | None = None

    @classmethod
    def local(cls, port: int = DEFAULT_PORT) -> Superset:
        return cls(signalbox_home() / "superset", port, superset_executable())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SUPERSET_CONFIG_PATH": str(self.home / "superset_config.py"),
            "SUPERSET_HOME": str(self.home),
            "FLASK_APP": "superset",
            "PYTHONWARNINGS": "ignore",
        }

    def _run(self, *args: str, stdin: str | None = None, what: str = "") -> str:
        result = subprocess.run(
            [str(self.executable), *args],
            env=self._env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise SupersetError(f"superset {what or args[0]} failed: " + " | ".join(tail))
        return result.stdout + result.stderr

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> None:
        """Config, secret key, metadata schema and roles: the slow part of a first start
        (~20 s), needing no warehouse, so a demo runs it while it materializes."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        secret = self.home / "secret_key"
        if not secret.exists():
            write_private(secret, secrets.token_urlsafe(48))
        (self.home / "superset_config.py").write_text(CONFIG)
        self._run("db", "upgrade", what="db upgrade (the metadata schema)")
        initialized = self.home / "initialized"
        if not initialized.exists():
            self._run("init", what="init (roles and permissions)")
            initialized.touch()

    def create_admin(self) -> str | None:
        """The `admin` user with a generated password, returned to be shown once; None when
        the user exists (`reset_password` makes a new password)."""
        created = self.home / "admin_created"
        if created.exists():
            return None
        password = secrets.token_urlsafe(12)
        output = self._run(
            "fab", "create-admin", "--username", ADMIN, "--firstname", "signalbox",
            "--lastname", "admin", "--email", "admin@localhost",
            stdin=f"{password}\n{password}\n", what="fab create-admin",
        )  # fmt: skip
        created.touch()
        return None if "already exists" in output else password

    def reset_password(self) -> str:
        password = secrets.token_urlsafe(12)
        self._run(
            "fab", "reset-password", "--username", ADMIN,
            stdin=f"{password}\n{password}\n", what="fab reset-password",
        )  # fmt: skip
        return password

    def import_dashboards(self, warehouse_url: str) -> list[bundle.Dashboard]:
        """Import every dashboard whose tables the warehouse has (a dashboard whose marts
        are not materialized yet is left out, with a line saying so); returns those imported."""
        dashboards = bundle.load_dashboards()
        columns = warehouse_columns(warehouse_url, bundle.tables(dashboards))
        ready = []
        for dashboard in dashboards:
            missing = sorted(
                d["table"] for d in dashboard.spec["datasets"].values() if d["table"] not in columns
            )
            if missing:
                print(f"  dashboard {dashboard.slug}: not imported, no {', '.join(missing)} yet")
            else:
                ready.append(dashboard)
        schemas = {table.split(".")[0] for d in ready for table in bundle.tables([d])}
        reader = reader_url(warehouse_url, schemas)
        files = bundle.render(ready, superset_uri(reader), columns)
        # the rendered database entry carries the warehouse password: a private folder,
        # removed as soon as Superset has read it
        with tempfile.TemporaryDirectory(dir=self.home, prefix="import-") as folder:
            bundle.write(files, Path(folder))
            output = self._run("import-directory", folder, "--overwrite", what="import-directory")
        if "An error occurred" in output or "Traceback" in output:
            tail = " | ".join(output.strip().splitlines()[-5:])
            raise SupersetError(f"superset import-directory failed: {tail}")
        return ready

    # ------------------------------------------------------------------ the server

    def start(self, timeout: float = 120) -> None:
        gunicorn = self.executable.with_name("gunicorn")
        self._server = subprocess.Popen(
            [str(gunicorn), "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "8", "--timeout", "120",
             "--log-level", "warning", "superset.app:create_app()"],
            env=self._env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.home / "server.log", "ab"),  # noqa: SIM115 (the child keeps it)
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise SupersetError(
                    f"Superset exited ({self._server.returncode}): see {self.home / 'server.log'}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return
            time.sleep(0.5)
        self.stop()
        raise SupersetError(f"Superset did not answer on {self.url} in {timeout:.0f}s")

    def stop(self) -> None:
        if self._server is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._server.pid, signal.SIGTERM)
        try:
            self._server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._server.pid, signal.SIGKILL)
            self._server.wait()
        self._server = None


@contextlib.contextmanager
def running_superset(
    warehouse_url: str, port: int = DEFAULT_PORT, prepared: Superset | None = None
) -> Iterator[Superset]:
    """Prepared (unless `prepared` was), dashboards imported, serving on 127.0.0.1:port;
    stopped on exit. The first start prints the admin password (once)."""
    started = time.monotonic()
    superset = prepared or Superset.local(port)
    if prepared is None:
        superset.prepare()
    if password := superset.create_admin():  # shown before anything else can fail
        print(f"\nSuperset: log in as {ADMIN} with the password {password}")
        print("  (shown this once; `signalbox bi --reset-password` makes a new one)")
    else:
        print(f"\nSuperset: log in as {ADMIN}: the first start printed its password")
        print("  (`signalbox bi --reset-password` makes a new one)")
    imported = superset.import_dashboards(warehouse_url)
    superset.start()
    try:
        print(f"\nSuperset: {superset.url}   ({len(imported)} dashboards, ready in "
              f"{time.monotonic() - started:.0f}s)")  # fmt: skip
        for dashboard in imported:
            print(f"  {dashboard.title}: {superset.url}/superset/dashboard/{dashboard.slug}/")
        sys.stdout.flush()
        yield superset
    finally:
        superset.stop()


READER = "signalbox_bi"


def reader_url(warehouse_url: str, schemas: set[str]) -> str:
    """The warehouse as Superset should see it: a role that may only read the dashboards'
    schemas (`signalbox_bi`, its password new on every start), never the owner's URL: SQL
    Lab runs what a person types, and as the owner (a superuser locally) that could write
    or read the server's files. Tables dbt recreates stay readable (default privileges)."""
    from signalbox.platform.warehouse import libpq_url

    password = secrets.token_urlsafe(24)
    try:
        with psycopg2.connect(libpq_url(warehouse_url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                f"{verb} ROLE {READER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s",
                (password,),
            )
            for schema in sorted(schemas):
                name = psycopg2.extensions.quote_ident(schema, cur)
                cur.execute(f"GRANT USAGE ON SCHEMA {name} TO {READER}")
                cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {name} TO {READER}")
                cur.execute(
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT ON TABLES TO {READER}"
                )
        conn.close()
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise SupersetError(
            f"the warehouse user may not create the read-only role {READER} for Superset "
            f"(CREATEROLE): create it, or run `signalbox bi` as a user who may ({exc})"
        ) from exc
    parts = urlsplit(warehouse_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{READER}:{quote(password, safe='')}@{host}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def superset_uri(warehouse_url: str) -> str:
    """The warehouse URL as SQLAlchemy (Superset's) names a psycopg2 connection."""
    scheme, _, rest = warehouse_url.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme.startswith("postgres") else warehouse_url


def warehouse_columns(warehouse_url: str, tables: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(name, type) of each table's columns, for the tables that exist."""
    from signalbox.platform.warehouse import libpq_url

    with psycopg2.connect(libpq_url(warehouse_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_schema || '.' || table_name, column_name, data_type "
            "from information_schema.columns "
            "where table_schema || '.' || table_name = any(%s) "
            "order by table_schema, table_name, ordinal_position",
            (sorted(tables),),
        )
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, name, kind in cur.fetchall():
            columns.setdefault(table, []).append((name, kind))
    conn.close()
    return columns
