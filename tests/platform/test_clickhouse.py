"""The ClickHouse resource on embedded chDB, its cross-process guard, and URL parsing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from signalbox.platform.clickhouse import (
    ClickHouseConfigError,
    ClickHouseEngineBusy,
    ClickHouseResource,
    parse_clickhouse_url,
)

pytestmark = pytest.mark.integration  # starts engines or processes itself

# A second process using the same SIGNALBOX_HOME: takes the engine, says so, keeps it for
# HOLD seconds while inserting ROWS rows one client at a time.
CHILD = textwrap.dedent(
    """
    import sys, time
    from signalbox.platform.clickhouse import ClickHouseResource
    hold, rows, tag = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    resource = ClickHouseResource()
    for i in range(rows):
        with resource.client(f"test child {tag}") as client:
            client.command("CREATE TABLE IF NOT EXISTS writes (tag String, i UInt32)"
                           " ENGINE = MergeTree ORDER BY (tag, i)")
            client.insert("writes", [[tag, i]], column_names=["tag", "i"])
            print("holding", flush=True)
            time.sleep(hold)
    print("done", flush=True)
    """
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SIGNALBOX_HOME (children started by a test inherit it)."""
    monkeypatch.setenv("SIGNALBOX_HOME", str(tmp_path))
    return tmp_path


def start_child(hold: float, rows: int, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(hold), str(rows), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen, expected: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.strip() == expected:
            return
        if not line and child.poll() is not None:
            break
    raise AssertionError(f"child never printed {expected!r}: {child.stderr.read()}")


# --------------------------------------------------------------------------- URL parsing


def test_url_parsing_defaults_and_escapes():
    server = parse_clickhouse_url("http://analyst:p%40ss%2Fw@ch.internal:8124/events")
    assert (server.host, server.port, server.username, server.password) == (
        "ch.internal",
        8124,
        "analyst",
        "p@ss/w",
    )
    assert (server.database, server.secure) == ("events", False)
    assert server.safe_url == "http://analyst@ch.internal:8124/events"

    bare = parse_clickhouse_url("https://ch.example.com", default_database="activity")
    assert (bare.port, bare.secure, bare.username, bare.password, bare.database) == (
        8443,
        True,
        "default",
        "",
        "activity",
    )
    assert parse_clickhouse_url("http://h/").port == 8123


@pytest.mark.parametrize(
    "url",
    [
        "clickhouse://u:secret@h:9000/db",  # native protocol: not what clickhouse-connect speaks
        "http://u:secret@/db",
        "http://u:secret@h:notaport/db",
        "http://u:secret@h:8123/db/extra",
        "http://u:secret@h:8123/db?cluster=a;DROP",  # a cluster name is a plain identifier
        "http://u:secret@h:8123/db?compress=1",  # only ?cluster= is understood
    ],
)
def test_url_parsing_rejects_bad_urls_without_leaking_the_password(url):
    with pytest.raises(ClickHouseConfigError) as info:
        parse_clickhouse_url(url)
    assert "secret" not in str(info.value)


def test_dbt_env_follows_the_engine(home: Path):
    embedded = ClickHouseResource().dbt_env()
    assert embedded == {
        "SIGNALBOX_CLICKHOUSE_TARGET": "chdb",
        "SIGNALBOX_CLICKHOUSE_PATH": str(home / "clickhouse"),
        "SIGNALBOX_CLICKHOUSE_DATABASE": "activity",
    }
    server = ClickHouseResource(url="https://bi:pw@ch.example.com/events").dbt_env()
    assert server == {
        "SIGNALBOX_CLICKHOUSE_TARGET": "server",
        "SIGNALBOX_CLICKHOUSE_HOST": "ch.example.com",
        "SIGNALBOX_CLICKHOUSE_PORT": "8443",
        "SIGNALBOX_CLICKHOUSE_USER": "bi",
        "SIGNALBOX_CLICKHOUSE_PASSWORD": "pw",
        "SIGNALBOX_CLICKHOUSE_DATABASE": "events",
        "SIGNALBOX_CLICKHOUSE_SECURE": "true",
        "SIGNALBOX_CLICKHOUSE_CLUSTER": "",
    }
    cluster = ClickHouseResource(url="https://bi:pw@ch.example.com/events?cluster=prod")
    assert cluster.dbt_env()["SIGNALBOX_CLICKHOUSE_CLUSTER"] == "prod"
    assert cluster.describe() == "https://bi@ch.example.com:8443/events?cluster=prod"
    assert "pw" not in ClickHouseResource(url="https://bi:pw@ch.example.com/events").describe()


# --------------------------------------------------------------------------- embedded engine


def test_embedded_create_insert_query(home: Path):
    resource = ClickHouseResource()
    assert resource.is_embedded
    with resource.client() as client:
        assert client.query("SELECT currentDatabase()").result_rows == [("activity",)]
        client.command(
            "CREATE TABLE events (user_id UInt32, action LowCardinality(String), "
            "time DateTime('UTC')) ENGINE = MergeTree PARTITION BY toDate(time) ORDER BY time"
        )
        client.insert(
            "events",
            [[1, "view", 1710237600], [1, "like", 1710237660], [2, "view", 1710324000]],
            column_names=["user_id", "action", "time"],
        )
    # data persists across clients; parameters bind the same way as on a server
    rows = resource.query(
        "SELECT toDate(time) AS day, countIf(action = {a:String}) FROM events "
        "GROUP BY day ORDER BY day",
        {"a": "view"},
    )
    assert [(str(day), views) for day, views in rows] == [("2024-03-12", 1), ("2024-03-13", 1)]
    assert resource.scalar("SELECT count() FROM activity.events") == 3
    assert (home / "clickhouse").is_dir() and (home / "clickhouse.lock").is_file()


def test_closed_client_lets_another_process_open_the_engine(home: Path):
    resource = ClickHouseResource()
    with resource.client() as client:
        client.command("SELECT 1")
    # this process keeps running with the engine closed: a child opens it at once
    child = start_child(hold=0, rows=1, tag="after-close")
    assert child.wait(timeout=60) == 0, child.stderr.read()
    assert resource.query("SELECT tag, i FROM writes") == [("after-close", 0)]


def test_concurrent_processes_queue_on_the_guard_instead_of_failing(home: Path):
    resource = ClickHouseResource()
    first = start_child(hold=0.4, rows=3, tag="a")
    second = start_child(hold=0.4, rows=3, tag="b")
    wait_for_line(first, "holding")
    # a third user (this process) arrives while a child holds the engine: it waits
    started = time.monotonic()
    with resource.client("test parent") as client:
        waited = time.monotonic() - started
        client.command(
            "CREATE TABLE IF NOT EXISTS writes (tag String, i UInt32) "
            "ENGINE = MergeTree ORDER BY (tag, i)"
        )
        client.insert("writes", [["parent", 0]], column_names=["tag", "i"])
    for child in (first, second):
        assert child.wait(timeout=90) == 0, child.stderr.read()
    assert waited > 0.1
    rows = resource.query("SELECT tag, count() FROM writes GROUP BY tag ORDER BY tag")
    assert rows == [("a", 3), ("b", 3), ("parent", 1)]


def test_lock_timeout_names_the_holder(home: Path):
    holder = start_child(hold=5, rows=1, tag="slow")
    try:
        wait_for_line(holder, "holding")
        impatient = ClickHouseResource(lock_timeout_seconds=0.3)
        with pytest.raises(ClickHouseEngineBusy) as info, impatient.client("impatient"):
            pass
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "test child slow" in message
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops a dead holder's flock (and chDB's own lock) with the process
    assert ClickHouseResource(lock_timeout_seconds=5).scalar("SELECT 1") == 1


def test_guard_is_reentrant_in_a_thread_and_exclusive_between_threads(home: Path):
    resource = ClickHouseResource()
    events: list[str] = []

    def other_thread() -> None:
        with resource.engine_lock("other thread"):
            events.append("other")

    with resource.client() as outer:
        with resource.client() as inner:  # nested use in one thread does not deadlock
            assert inner.command("SELECT 2") == 2
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive()  # queued behind this thread's hold
        events.append("outer")
        assert outer.command("SELECT 1") == 1
    thread.join(timeout=10)
    assert events == ["outer", "other"]


def test_dbt_lock_refuses_while_this_process_has_the_engine_open(home: Path):
    resource = ClickHouseResource()
    with resource.dbt_lock() as env:
        assert env["SIGNALBOX_CLICKHOUSE_TARGET"] == "chdb"
    with resource.client(), pytest.raises(RuntimeError, match="close the ClickHouse client"):  # noqa: SIM117
        with resource.dbt_lock():
            pass


def test_waits_for_a_holder_outside_the_guard(home: Path):
    # e.g. a dbt run started by hand: it holds chDB's own lock, not ours
    script = (
        "import sys, time, clickhouse_connect;"
        "c = clickhouse_connect.get_client(interface='chdb', path=sys.argv[1]);"
        "c.command('SELECT 1'); print('holding', flush=True); time.sleep(float(sys.argv[2]))"
    )
    outsider = subprocess.Popen(
        [sys.executable, "-c", script, str(home / "clickhouse"), "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_line(outsider, "holding")
    with pytest.raises(ClickHouseEngineBusy, match="outside signalbox's guard"):
        ClickHouseResource(lock_timeout_seconds=0.2).scalar("SELECT 1")
    assert ClickHouseResource().scalar("SELECT 1") == 1  # waits until the outsider exits
    assert outsider.wait(timeout=30) == 0


def test_another_directory_open_in_this_process_is_a_clear_error(home: Path):
    import clickhouse_connect

    other = clickhouse_connect.get_client(interface="chdb", path=str(home / "elsewhere"))
    try:
        with pytest.raises(ClickHouseConfigError, match="already has chDB open"):
            ClickHouseResource().scalar("SELECT 1")
    finally:
        other.close()
    assert ClickHouseResource().scalar("SELECT 1") == 1
