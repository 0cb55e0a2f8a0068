"""The embedded PostgreSQL as root: nobody's own group, closed parents, password auth."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from signalbox.platform.embedded import postgres as embedded
from signalbox.platform.embedded.postgres import EmbeddedPostgres, EmbeddedPostgresError

pytestmark = pytest.mark.integration
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server's user drop is root's")


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="signalbox-pg-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def running() -> Iterator[Callable[[EmbeddedPostgres], EmbeddedPostgres]]:
    started: list[EmbeddedPostgres] = []

    def start(server: EmbeddedPostgres) -> EmbeddedPostgres:
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def server_pid(server: EmbeddedPostgres) -> int:
    return int((server.cluster_dir / "postmaster.pid").read_text().split()[0])


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@needs_root
def test_the_server_runs_in_nobodys_group_without_root_groups(scratch, running):
    # root's home in a container: others may enter, root's group may not
    home = scratch / "root-home"
    home.mkdir(mode=0o701)
    home.chmod(0o701)
    server = running(EmbeddedPostgres(home / "signalbox" / "postgres", scratch / "relocated"))
    fields = status(server_pid(server))
    assert fields["Uid"].split()[0] == "65534"
    assert fields["Gid"].split() == ["65534"] * 4
    assert fields["Groups"].strip() == ""
    assert not server.data_dir.is_symlink()  # enterable by others: kept where asked


@needs_root
def test_a_closed_parent_relocates_the_binaries_and_the_data(scratch, running, monkeypatch, caplog):
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    installed = embedded._installed_bin_dir()
    site = closed / "venv" / "site-packages"
    pginstall = site / "pgserver" / "pginstall"
    shutil.copytree(installed.parent, pginstall, symlinks=True)
    shutil.copytree(installed.parents[2] / "pgserver.libs", site / "pgserver.libs")
    monkeypatch.setattr(embedded, "_installed_bin_dir", lambda: pginstall / "bin")
    relocated = scratch / "relocated"
    with caplog.at_level(logging.WARNING, logger=embedded.__name__):
        server = running(EmbeddedPostgres(closed / "home" / "postgres", relocated))
    assert server.data_dir.is_symlink()
    assert server.cluster_dir.parent == relocated / "postgres"
    exe = Path(os.readlink(f"/proc/{server_pid(server)}/exe"))
    assert exe.is_relative_to(relocated) and exe.name == "postgres"
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(closed) in message and "SIGNALBOX_HOME" in message and "\n" not in message
    # the password stays beside the link, private to root
    assert server.password_file.parent == closed / "home"
    with psycopg2.connect(server.url()) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == ("signalbox",)
    # a second server under the same closed folder reuses the copied binaries
    server.stop()
    assert server.start().startswith("postgresql://postgres:")


@needs_root
def test_an_existing_data_dir_out_of_reach_is_a_one_line_error(scratch):
    closed = scratch / "closed"
    (closed / "postgres").mkdir(parents=True)
    closed.chmod(0o700)
    with pytest.raises(EmbeddedPostgresError) as error:
        EmbeddedPostgres(closed / "postgres", scratch / "relocated").start()
    assert f"chmod o+x {closed}" in str(error.value) and "\n" not in str(error.value)


def test_connections_need_the_generated_password(scratch, running):
    server = running(EmbeddedPostgres(scratch / "postgres", scratch / "relocated"))
    assert server.password_file.stat().st_mode & 0o777 == 0o600
    port = server.running_port()
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="signalbox")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(server.url().replace(server.password(), "guess"))
    psycopg2.connect(server.url()).close()
    # the password is on no command line
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            assert server.password() not in cmdline.read_text()


def test_a_cluster_that_trusted_everyone_gets_a_password_on_its_next_start(scratch, running):
    server = running(EmbeddedPostgres(scratch / "postgres", scratch / "relocated"))
    server.stop()
    # what earlier versions made: trust for every local connection, no password file
    hba = server.cluster_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
    server.password_file.unlink()
    server.start()
    assert "trust" not in [line.split()[-1] for line in hba.read_text().splitlines() if line]
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(
            host="127.0.0.1", port=server.running_port(), user="postgres", dbname="signalbox"
        )
    psycopg2.connect(server.url()).close()


LAZY_USER = """
import sys
from signalbox.platform.embedded import embedded_warehouse_url
print(embedded_warehouse_url(), flush=True)
sys.stdin.readline()  # in use until told to leave
"""


def test_a_lazily_started_warehouse_is_stopped_by_the_last_process_using_it(scratch):
    """Two Dagster processes need the warehouse and nothing started it: the first starts
    it, and leaving first does not stop it under the second; the second, last out, does."""
    import subprocess
    import sys

    from signalbox.platform.embedded import LAZY_MARKER

    env = {**os.environ, "SIGNALBOX_HOME": str(scratch)}
    env.pop("SIGNALBOX_WAREHOUSE_URL", None)

    def user() -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen(
            [sys.executable, "-c", LAZY_USER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return process, process.stdout.readline().strip()

    server = EmbeddedPostgres(scratch / "postgres")
    try:
        (first, url), (second, again) = user(), user()
        assert url.startswith("postgresql://") and again == url
        assert (scratch / LAZY_MARKER).exists()
        first.communicate("\n", timeout=120)  # the starter leaves first
        assert first.returncode == 0 and server.running_port() is not None
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("select 1")  # the second still works
        conn.close()
        second.communicate("\n", timeout=120)
        assert second.returncode == 0
        assert server.running_port() is None and not (scratch / LAZY_MARKER).exists()
    finally:
        server.stop()
