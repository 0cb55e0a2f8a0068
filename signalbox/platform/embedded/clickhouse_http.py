"""ClickHouse's HTTP interface, served by the embedded engine (chDB) in a process of its own.

No ClickHouse server installs on these machines, yet production talks to one over HTTP
(clickhouse-connect, and dbt-clickhouse through it). This server speaks that protocol as
far as those clients use it, so the server path (`SIGNALBOX_CLICKHOUSE_URL`) runs for real
in tests and, later, for tools that only know a server (Superset). What it serves:

- `GET|POST /?query=...` with the SQL in `query`, in the body, or split between them
  (ClickHouse concatenates the two); `INSERT ... FORMAT <fmt>` with the rows in the body,
  plain or chunked, compressed (`Content-Encoding: lz4|zstd|gzip|deflate`) or not;
- `database`, `default_format`, `param_<name>` (server-side binding), `query_id`, and
  any ClickHouse setting as a parameter (applied for that query, then restored);
  `session_id` and the other transport-only parameters are accepted and ignored (one
  engine session serves everyone: temporary tables are shared);
- user and password by HTTP basic auth, `X-ClickHouse-User`/`-Key` headers, or the
  `user`/`password` parameters; `/ping`;
- results in the requested format with `X-ClickHouse-Format`, `-Query-Id`, `-Summary`,
  `-Timezone`; errors with ClickHouse's `Code: N. DB::Exception: ...` text, the
  `X-ClickHouse-Exception-Code` header, and 400/403/404/500 as a server sends them.

Not served: the native TCP protocol, multipart external data, response compression,
streaming while a query runs (results are sent when complete). Queries run one at a time.

`--cluster NAME` makes it a one-node cluster: NAME is in `system.clusters` (its one shard
local), so `cluster()`/`clusterAllReplicas()` over it work, and `ON CLUSTER NAME` DDL is
accepted and run on the one node (chDB has no Keeper for distributed DDL); any other
cluster is unknown, as on a server. `--record FILE` appends every statement received, as
JSON lines, so a test can see the SQL a client sent (dbt's DDL for a cluster, say).

Run: `python -m signalbox.platform.embedded.clickhouse_http --path DIR [--port N]`, with
the password in `SIGNALBOX_CLICKHOUSE_SERVER_PASSWORD`; `EmbeddedClickHouseServer` does so.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from signalbox.platform.embedded.child import ChildServer

PASSWORD_ENV = "SIGNALBOX_CLICKHOUSE_SERVER_PASSWORD"
DEFAULT_USER = "default"
# parameters that steer the HTTP exchange, never ClickHouse settings
TRANSPORT = {
    "query",
    "database",
    "default_format",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "wait_end_of_query",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "client_protocol_version",
    "enable_http_compression",
    "http_zlib_compression_level",
    "user",
    "password",
    "quota_key",
    "compress",
    "decompress",
    "buffer_size",
}
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# an INSERT whose rows follow its FORMAT clause (after one space or newline)
INSERT_WITH_DATA = re.compile(
    rb"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)[ \t]*(?:\r?\n|$)", re.I | re.S
)
ERROR_CODE = re.compile(r"Code:\s*(\d+)")
# ClickHouse answers these exception codes with these HTTP statuses; any other is a 500
HTTP_STATUS = {62: 400, 27: 400, 6: 400, 41: 400, 60: 404, 81: 404, 516: 403, 192: 403}


class QueryError(Exception):
    def __init__(self, code: int, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status or HTTP_STATUS.get(code, 500)


CLUSTER_CONFIG = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers><{name}><shard><replica><host>localhost</host><port>9000</port></replica>
  </shard></{name}></remote_servers>
</clickhouse>
"""


class Engine:
    """One chDB connection, used by one request at a time."""

    def __init__(self, path: str, spool: str, cluster: str | None = None):
        import chdb

        if cluster and not SETTING_NAME.fullmatch(cluster):
            raise ValueError(f"a cluster name is letters, digits and _, got {cluster!r}")
        if cluster:  # a config naming the one-node cluster (its shard is this engine)
            config = Path(spool, "cluster.xml")
            config.write_text(CLUSTER_CONFIG.format(name=cluster))
            path = f"{path}?config-file={config}"
        self.connection = chdb.connect(path)
        self.lock = threading.Lock()
        self.database = "default"

    def run(self, sql: str, fmt: str, database: str | None, settings: dict[str, str], params: dict):
        with self.lock:
            if database and database != self.database:
                self._query(f"USE `{database.replace('`', '``')}`", "TabSeparated")
                self.database = database
            saved = self._current(settings)
            try:
                for name, value in settings.items():
                    self._query(f"SET {name} = {_literal(value)}", "TabSeparated")
                return self._query(sql, fmt, params)
            finally:
                for name, value in saved.items():
                    self._query(f"SET {name} = {_literal(value)}", "TabSeparated")

    def _current(self, settings: dict[str, str]) -> dict[str, str]:
        if not settings:
            return {}
        names = ", ".join(_literal(name) for name in settings)
        body = self._query(
            f"SELECT name, value FROM system.settings WHERE name IN ({names})", "JSONCompact"
        ).bytes()
        known = dict(json.loads(body)["data"])
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise QueryError(115, f"Unknown setting {unknown[0]}")
        return {name: known[name] for name in settings}

    def _query(self, sql: str, fmt: str, params: dict | None = None):
        try:
            return self.connection.query(sql, fmt, params=params or {})
        except Exception as exc:  # chDB raises its own error type with ClickHouse's text
            text = str(exc).strip()
            match = ERROR_CODE.search(text)
            raise QueryError(int(match.group(1)) if match else 1000, text) from exc


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def decompress(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":  # every frame (a streamed insert sends one per block)
        from backports import zstd  # clickhouse-connect's own zstd

        return zstd.decompress(body)
    if encoding == "lz4":  # every frame, likewise
        import lz4.frame

        out, rest = [], memoryview(body)
        while len(rest):
            frame = lz4.frame.LZ4FrameDecompressor()
            out.append(frame.decompress(rest))
            rest = memoryview(frame.unused_data or b"")
        return b"".join(out)
    raise QueryError(0, f"Unknown Content-Encoding {encoding}", 400)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ClickHouseHttpServer
    server_version = "ClickHouse"

    def log_message(self, format: str, *args) -> None:  # quiet: queries may carry data
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except _CutOff as cut:  # nobody is left to answer; nothing of it is run
            self.log_message("request dropped: %s", cut)
            self.close_connection = True
            return
        if url.path.rstrip("/") in ("/ping", ""):
            if url.path.rstrip("/") == "/ping" or (not url.query and not body):
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
        else:
            self._send(404, b"There is no handle " + url.path.encode() + b"\n", {})
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC"}
        try:
            self._authenticate(params)
            body = decompress(body, self.headers.get("Content-Encoding"))
            status, payload, extra = self._execute(params, body)
        except Exception as exc:  # answered, never a dropped connection
            error = exc if isinstance(exc, QueryError) else QueryError(1001, repr(exc), 500)
            message = str(error)
            if not message.startswith("Code:"):
                message = f"Code: {error.code}. DB::Exception: {message}"
            headers["X-ClickHouse-Exception-Code"] = str(error.code)
            self._send(error.status, message.encode() + b"\n", headers)
            return
        self._send(status, payload, {**headers, **extra})

    def _authenticate(self, params: dict[str, str]) -> None:
        user, password = DEFAULT_USER, ""
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            user, _, password = decoded.partition(":")
        elif self.headers.get("X-ClickHouse-User"):
            user = self.headers["X-ClickHouse-User"]
            password = self.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            user, password = params["user"], params.get("password", "")
        good_user = hmac.compare_digest(user, self.server.user)
        if not (good_user and hmac.compare_digest(password, self.server.password)):
            raise QueryError(
                516,
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name. (AUTHENTICATION_FAILED)",
            )

    def _execute(self, params: dict[str, str], body: bytes) -> tuple[int, bytes, dict]:
        settings = {k: v for k, v in params.items() if k not in TRANSPORT and k[:6] != "param_"}
        bad = [name for name in settings if not SETTING_NAME.fullmatch(name)]
        if bad:
            raise QueryError(115, f"Unknown setting {bad[0]!r}", 400)
        bound = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database")
        head = params.get("query", "").encode()
        text = head + (b"\n" if head and body else b"") + body  # as ClickHouse reads it
        insert = INSERT_WITH_DATA.match(text[:65536])
        started = time.monotonic_ns()
        if insert and insert.end() < len(text):  # rows follow: chDB reads them from a file
            statement = self.server.received(insert.group(1).decode())
            fmt = insert.group(2).decode()
            with tempfile.NamedTemporaryFile(prefix="ch-insert-", dir=self.server.spool) as rows:
                rows.write(memoryview(text)[insert.end() :])
                rows.flush()
                sql = f"{statement} FROM INFILE {_literal(rows.name)} FORMAT {fmt}"
                result = self.server.engine.run(sql, "TabSeparated", database, settings, bound)
            return 200, b"", self._summary(result, started)
        try:
            sql = text.decode()
        except UnicodeDecodeError as exc:
            raise QueryError(62, f"the query is not UTF-8 text ({exc})", 400) from exc
        if not sql.strip():
            raise QueryError(62, "Empty query (SYNTAX_ERROR)", 400)
        sql = self.server.received(sql)
        named = TRAILING_FORMAT.search(sql)
        is_insert = sql.lstrip()[:6].upper() == "INSERT"
        fmt = named.group(1) if named and not is_insert else params.get("default_format")
        result = self.server.engine.run(sql, fmt or "TabSeparated", database, settings, bound)
        payload = result.bytes() or b""
        extra = self._summary(result, started)
        if payload or named:
            extra["X-ClickHouse-Format"] = fmt or "TabSeparated"
        return 200, payload, extra

    @staticmethod
    def _summary(result, started: int) -> dict[str, str]:
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(getattr(result, "rows_written", lambda: 0)()),
            "written_bytes": str(getattr(result, "bytes_written", lambda: 0)()),
            "elapsed_ns": str(time.monotonic_ns() - started),
        }
        return {"X-ClickHouse-Summary": json.dumps(summary)}

    def _read_body(self) -> bytes:
        """The whole body, or `_CutOff` when the client went away before sending all of it
        (a killed client's half of an INSERT must never run)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                if not line.endswith(b"\n"):
                    raise _CutOff("the body ended before its last chunk")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) < size or not self.rfile.readline().endswith(b"\n"):
                    raise _CutOff("the body ended inside a chunk")
                chunks.append(chunk)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise _CutOff(f"the body ended after {len(body)} of {length} bytes")
        return body

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers.setdefault("Content-Type", "text/tab-separated-values; charset=UTF-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-ClickHouse-Server-Display-Name", "signalbox-chdb")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _CutOff(Exception):
    """The client's request body ended early: it died or hung up mid-request."""


class ClickHouseHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        path: str,
        port: int,
        user: str,
        password: str,
        cluster: str | None = None,
        record: str | None = None,
    ):
        self.spool = tempfile.mkdtemp(prefix="ch-http-")  # insert rows, the cluster config
        self.engine = Engine(path, self.spool, cluster)
        self.user, self.password = user, password
        self.on_cluster = (
            re.compile(
                rf"\s+ON\s+CLUSTER\s+(?:{re.escape(cluster)}|[`\"']{re.escape(cluster)}[`\"'])",
                re.I,
            )
            if cluster
            else None
        )
        self.record = record
        self.record_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

    def server_close(self) -> None:
        super().server_close()
        shutil.rmtree(self.spool, ignore_errors=True)

    def received(self, sql: str) -> str:
        """Record a statement (with `--record`) and drop `ON CLUSTER` of our one-node cluster."""
        if self.record:
            with self.record_lock, open(self.record, "a") as log:
                log.write(json.dumps({"sql": sql}) + "\n")
        return self.on_cluster.sub("", sql) if self.on_cluster else sql


class EmbeddedClickHouseServer(ChildServer):
    """The HTTP interface above over a chDB directory, in a child process on 127.0.0.1,
    with a password generated for this start (kept out of the command line)."""

    def __init__(
        self,
        path: Path,
        database: str = "activity",
        user: str = DEFAULT_USER,
        cluster: str | None = None,
        record: Path | None = None,
    ):
        self.path = Path(path)
        self.database = database
        self.user = user
        self.cluster = cluster
        self.record = record
        self.password = secrets.token_urlsafe(16)
        self.port: int | None = None

    def start(self) -> str:
        if self.running:
            return self.url
        self.path.mkdir(parents=True, exist_ok=True)
        options = ["--path", str(self.path), "--user", self.user]
        options += ["--cluster", self.cluster] if self.cluster else []
        options += ["--record", str(self.record)] if self.record else []
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, *options],
            env={**os.environ, PASSWORD_ENV: self.password},
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._process.stdout.readline() if self._process.stdout else ""
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the ClickHouse HTTP server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self.url

    @property
    def url(self) -> str:
        """`http://user:password@127.0.0.1:port/database`, as SIGNALBOX_CLICKHOUSE_URL takes it."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        password = quote(self.password, safe="")
        on = f"?cluster={self.cluster}" if self.cluster else ""
        return f"http://{self.user}:{password}@127.0.0.1:{self.port}/{database}{on}"


def provision_database(server: EmbeddedClickHouseServer, database: str | None = None) -> None:
    """Create a database (the server's own by default), as a server's owner does before
    signalbox connects."""
    import clickhouse_connect

    from signalbox.platform.clickhouse import checked_database

    name = checked_database(database or server.database, "the database name")
    admin = clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, username=server.user, password=server.password
    )
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="chDB data directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default=DEFAULT_USER)
    parser.add_argument("--cluster", help="accept ON CLUSTER of this one-node cluster")
    parser.add_argument("--record", help="append every statement to this JSON-lines file")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "")
    server = ClickHouseHttpServer(
        args.path, args.port, args.user, password, args.cluster, args.record
    )
    # stopped with SIGTERM (ChildServer.stop): leave through `finally`, removing the spool
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
