"""A small threaded HTTP server on 127.0.0.1 that every API simulator builds on.

It gives each simulator a route table, a request log (tests count requests with it),
and the fault switches every source must survive: a 5xx rate, slow answers, the next N
answers failing with a status, and the next N bodies truncated mid-JSON.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, content_type: str = "application/json", **headers
    ):
        return cls(
            status,
            json.dumps(payload, ensure_ascii=False).encode(),
            {"Content-Type": content_type, **headers},
        )


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    at: float


class SlidingWindow:
    """Requests per client over a sliding window of `window` seconds (monotonic clock), the
    way the real APIs count them; each simulator turns the answer into its own 429."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = int(limit)
        self.window = float(window)
        self.clock = clock
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str = "") -> tuple[float, int]:
        """(wait, used): wait is 0.0 when the request may go ahead (it is counted), else
        the seconds until the oldest counted request leaves the window; used is the
        count in the window after this request."""
        now = self.clock()
        with self._lock:
            times = self._times.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return max(times[0] + self.window - now, 0.001), len(times)
            times.append(now)
            return 0.0, len(times)

    def reset(self) -> None:
        with self._lock:
            self._times.clear()


@dataclass
class Faults:
    """Switches tests and the demo flip at run time."""

    error_rate: float = 0.0  # fraction of requests answered with a 5xx
    error_status: int = 503
    slow_seconds: float = 0.0  # added to every answer
    fail_next: list[int] = field(default_factory=list)  # statuses for the next answers
    truncate_next: int = 0  # the next N 2xx bodies are cut in half
    seed: int = 7

    def __post_init__(self):
        self._rng = random.Random(self.seed)


Handler = Callable[[Request], Response]


class SimulatorServer:
    """Start with `start()` or as a context manager; `url` is the base URL."""

    name = "simulator"

    def __init__(self, port: int = 0, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.requests: list[RequestRecord] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler))

    def count(self, path_prefix: str = "", method: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            )

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def http_date(self) -> str:
        """The `Date` header of every answer; simulators with their own clock override it."""
        return email.utils.formatdate(time.time(), usegmt=True)

    # -- lifecycle

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- dispatch

    def dispatch(self, request: Request) -> Response:
        faults = self.faults
        if faults.slow_seconds:
            time.sleep(faults.slow_seconds)
        with self._lock:
            forced = faults.fail_next.pop(0) if faults.fail_next else None
            random_error = faults.error_rate and faults._rng.random() < faults.error_rate
        if forced is not None:
            # an injected 429 says when to come back, like every rate limiter does
            hint = {"Retry-After": "1"} if forced == 429 else {}
            return Response.json({"error": "injected fault"}, status=forced, **hint)
        if random_error:
            return Response.json({"error": "injected fault"}, status=faults.error_status)
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                response = handler(request)
                break
        else:
            response = Response.json({"error": "not found", "path": request.path}, status=404)
        if response.status < 300:
            with self._lock:
                truncate = faults.truncate_next > 0
                if truncate:
                    faults.truncate_next -= 1
            if truncate:
                response.body = response.body[: max(1, len(response.body) // 2)]
        return response

    def _handler_class(self):
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY the body's last
            # segment waits ~40 ms for the client's delayed ACK on every keep-alive answer
            disable_nagle_algorithm = True

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    response = server.dispatch(request)
                except Exception as exc:  # a simulator bug must look like a 500, not hang
                    response = Response.json({"error": f"simulator error: {exc!r}"}, status=500)
                with server._lock:
                    server.requests.append(
                        RequestRecord(
                            request.method,
                            request.path,
                            request.query,
                            response.status,
                            time.time(),
                        )
                    )
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def date_time_string(self, timestamp=None):
                if timestamp is None:
                    return server.http_date()
                return super().date_time_string(timestamp)

            def log_message(self, *args):  # quiet: the request log is in `server.requests`
                pass

        return _Handler


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClockedSimulator(SimulatorServer):
    """A simulator with its own clock: fixed at `now` (tests move it with `advance`), or,
    with `live`, following wall time to the minute from where it was set (the demo sees new
    data arrive; answers stay the same within a minute, so caches hold)."""

    clock_zone: tzinfo = UTC  # the zone `now` is expressed in
    clock_step = timedelta(microseconds=1)  # a time set is truncated to this

    def __init__(
        self,
        now: datetime | None = None,
        live: bool = False,
        port: int = 0,
        faults: Faults | None = None,
    ):
        super().__init__(port=port, faults=faults)
        self.live = live
        self.now = now or self._wall_minute()

    def _wall_minute(self) -> datetime:
        return datetime.now(self.clock_zone).replace(second=0, microsecond=0)

    @property
    def now(self) -> datetime:
        """The simulator's clock, an aware instant in `clock_zone`."""
        if self.live:
            return self._wall_minute() + self._offset
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.clock_zone)
        value = value.astimezone(self.clock_zone)
        self._now = value - (value - EPOCH) % self.clock_step
        self._offset = self._now - self._wall_minute()

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward (or back); the new `now`."""
        self.now = self.now + delta
        return self.now

    def http_date(self) -> str:
        return email.utils.formatdate(self.now.timestamp(), usegmt=True)
