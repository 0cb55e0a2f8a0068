"""The ClickHouse HTTP interface over the embedded engine, through the clients production
uses (clickhouse-connect; dbt-clickhouse in tests/dbt): authentication, compressed and
streamed inserts, errors as a server sends them, and no engine lock on the server path."""

from __future__ import annotations

import threading
from pathlib import Path

import clickhouse_connect
import pandas as pd
import psutil
import pytest
import requests
from clickhouse_connect.driver.exceptions import DatabaseError

from signalbox.platform.clickhouse import ClickHouseResource, hold_engine_lock

DATABASE = "http_test"


@pytest.fixture(scope="module")
def server_resource(clickhouse_server_database):
    with clickhouse_server_database(DATABASE) as resource:
        yield resource


def raw_client(server, **options):
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=server.port,
        username=server.user,
        password=server.password,
        database=DATABASE,
        **options,
    )


def test_ping_and_only_loopback(clickhouse_server):
    ping = requests.get(f"http://127.0.0.1:{clickhouse_server.port}/ping", timeout=5)
    assert ping.text == "Ok.\n"
    process = psutil.Process(clickhouse_server._process.pid)
    listening = [c.laddr for c in process.net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip == "127.0.0.1" for address in listening)


def test_a_wrong_password_is_refused_and_never_echoed(clickhouse_server, server_resource):
    url = server_resource.url.replace(clickhouse_server.password, "not-the-password")
    with pytest.raises(DatabaseError, match="516") as error:
        ClickHouseResource(url=url).query("SELECT 1")
    assert "not-the-password" not in str(error.value)
    anonymous = requests.get(
        f"http://127.0.0.1:{clickhouse_server.port}/", params={"query": "SELECT 1"}, timeout=5
    )
    assert anonymous.status_code == 403
    assert anonymous.headers["X-ClickHouse-Exception-Code"] == "516"


@pytest.mark.parametrize("compress", [True, "lz4", "zstd", "gzip", False])
def test_streamed_inserts_arrive_whole_with_every_compression(clickhouse_server, compress):
    client = raw_client(clickhouse_server, compress=compress)
    table = f"rows_{str(compress).lower()}"
    client.command(f"CREATE OR REPLACE TABLE {table} (a UInt32, s String) ORDER BY a")
    frame = pd.DataFrame({"a": range(300_000), "s": ["é" * 8] * 300_000})  # several blocks
    client.insert_df(table, frame)
    assert client.query(f"SELECT count(), sum(a), any(s) FROM {table}").result_rows == [
        (300_000, sum(range(300_000)), "é" * 8)
    ]
    back = client.query_df(f"SELECT a, s FROM {table} ORDER BY a")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_parameters_settings_and_empty_results(server_resource):
    with server_resource.client() as client:
        assert client.query("SELECT {n:UInt8} + 1", parameters={"n": 4}).result_rows == [(5,)]
        one = client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1})
        assert one.result_rows == [(1,)]
        # a setting holds for its query only
        assert client.query("SELECT getSetting('max_threads')").result_rows != [(1,)]
        assert client.query("SELECT 1 WHERE 0").result_rows == []
        assert client.command("SELECT 'x'") == "x"


def test_errors_keep_the_servers_code_and_text(server_resource):
    with server_resource.client() as client:
        with pytest.raises(DatabaseError, match="code: 60") as error:
            client.query("SELECT * FROM no_such_table")
        assert "Unknown table" in str(error.value)
        with pytest.raises(DatabaseError, match="code: 62"):
            client.command("SELEC 1")
        assert client.command("SELECT 2") == 2  # the connection is still good


def test_the_server_path_takes_no_engine_lock(server_resource, tmp_path: Path, monkeypatch):
    """Another process's holder of the embedded engine's lock does not stop server queries,
    and nothing is written under SIGNALBOX_HOME."""
    monkeypatch.setenv("SIGNALBOX_HOME", str(tmp_path))
    lock = tmp_path / "clickhouse.lock"
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with hold_engine_lock(lock, 5, "test holder"):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        # were the lock applied, this would wait on the holder and fail after a second
        resource = ClickHouseResource(url=server_resource.url, lock_timeout_seconds=1)
        assert resource.scalar("SELECT 40 + 2") == 42
    finally:
        release.set()
        thread.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clickhouse.lock"]  # the holder's


def test_stop_leaves_no_process(tmp_path: Path):
    from signalbox.platform.embedded.clickhouse_http import EmbeddedClickHouseServer

    with EmbeddedClickHouseServer(tmp_path / "engine") as server:
        pid = server._process.pid
        assert psutil.pid_exists(pid)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_insert_whose_client_dies_mid_body_inserts_nothing(
    clickhouse_server, server_resource, framing
):
    """A client killed while sending an INSERT leaves a short body: none of it may run."""
    import base64
    import socket
    import time

    table = f"cut_{framing.replace('-', '_')}"
    server_resource.command(f"CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n")
    rows = b"".join(b"%d\n" % n for n in range(10_000))
    query = f"INSERT INTO {DATABASE}.{table} FORMAT TSV".replace(" ", "%20")
    auth = base64.b64encode(f"{clickhouse_server.user}:{clickhouse_server.password}".encode())
    head = (
        f"POST /?query={query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Basic {auth.decode()}\r\n"
    )
    if framing == "chunked":
        sent = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n"
        sent += b"%x\r\n" % len(rows) + rows[: len(rows) // 2]
    else:
        sent = head.encode() + b"Content-Length: %d\r\n\r\n" % len(rows) + rows[: len(rows) // 2]
    with socket.create_connection(("127.0.0.1", clickhouse_server.port), timeout=5) as sock:
        sock.sendall(sent)  # and the client is gone
    time.sleep(0.5)
    assert server_resource.scalar(f"SELECT count() FROM {table}") == 0
    # the server still serves, and a whole insert goes in
    server_resource.command(f"INSERT INTO {table} SELECT number FROM numbers(10)")
    assert server_resource.scalar(f"SELECT count() FROM {table}") == 10
