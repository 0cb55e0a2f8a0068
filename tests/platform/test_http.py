"""The shared HTTP client against a real local HTTP server with injected faults."""

from __future__ import annotations

import pytest
from clocks import FakeClock

from signalbox.platform.embedded.ports import free_port
from signalbox.platform.http import (
    ApiConnectionError,
    ApiHttpError,
    ApiResponseError,
    ApiTimeoutError,
    AuthProvider,
    HttpClient,
    RateLimiter,
    RetryPolicy,
    redact_url,
)
from signalbox.simulators.server import Faults, Response, SimulatorServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server():
    sim = SimulatorServer()
    sim.add_route("GET", "/ok", lambda r: Response.json({"ok": True, "q": r.arg("apikey")}))
    sim.add_route("GET", "/big", lambda r: Response.json({"blob": "x" * 5000}))
    state = {"remaining": 3}

    def limited(request):
        state["remaining"] -= 1
        if state["remaining"] < 0:
            state["remaining"] = 3
            return Response.json({"error": "slow down"}, status=429, **{"Retry-After": "1"})
        return Response.json({"ok": True})

    sim.add_route("GET", "/limited", limited)
    busy = {"left": 1}

    def busy_once(request):
        busy["left"] -= 1
        if busy["left"] >= 0:
            return Response.json({"error": "busy"}, status=503, **{"Retry-After": "2"})
        return Response.json({"ok": True})

    sim.add_route("GET", "/busy", busy_once)
    sim.add_route(
        "GET",
        "/paced",
        lambda r: Response.json(
            {"ok": True}, **{"X-RateLimit-Limit-Minute": "600", "X-RateLimit-Remaining-Minute": "9"}
        ),
    )
    sim.add_route(
        "GET",
        "/secure",
        lambda r: (
            Response.json({"ok": True})
            if r.headers.get("Authorization") == "Bearer good"
            else Response.json({"error": "expired"}, status=401)
        ),
    )
    with sim:
        yield sim


def fast(clock: FakeClock, **fields) -> RetryPolicy:
    return RetryPolicy(**{"max_attempts": 4, "backoff_max": 0.05, "sleep": clock.sleep, **fields})


def client(server, clock: FakeClock, **kwargs) -> HttpClient:
    kwargs.setdefault("retry", fast(clock))
    kwargs.setdefault("rate_limiter", RateLimiter(clock=clock, sleep=clock.sleep))
    return HttpClient(server.url, "test", **kwargs)


def test_retries_5xx_then_succeeds(server, clock):
    server.faults.fail_next = [503, 500]
    http = client(server, clock, retry=fast(clock, backoff_base=0.5, backoff_max=30.0))
    assert http.get_json("/ok") == {"ok": True, "q": None}
    assert http.stats.retries == 2
    assert server.count("/ok") == 3
    # full jitter: U(0, base * 2**n) after failed try n
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0


def test_retry_after_on_a_5xx_lengthens_the_backoff(server, clock):
    http = client(server, clock)
    assert http.get_json("/busy") == {"ok": True}
    assert clock.sleeps == [2.0]
    assert http.stats.retries == 1


def test_gives_up_after_max_attempts_with_a_clear_redacted_error(server, clock):
    server.faults.fail_next = [502] * 10
    http = client(server, clock)
    with pytest.raises(ApiHttpError) as err:
        http.get_json("/ok", {"apikey": "TOPSECRET123", "page": 2})
    message = str(err.value)
    assert err.value.status == 502 and err.value.attempts == 4
    assert "TOPSECRET123" not in message
    assert "/ok?apikey=***&page=2" in message and "test:" in message
    assert len(clock.sleeps) == 3  # none after the last try


def test_client_errors_are_not_retried(server, clock):
    http = client(server, clock)
    with pytest.raises(ApiHttpError) as err:
        http.get_json("/missing")
    assert err.value.status == 404 and server.count("/missing") == 1
    assert clock.sleeps == []


def test_429_waits_for_retry_after_and_does_not_count_as_attempt(server, clock):
    http = client(server, clock, retry=fast(clock, max_attempts=1))
    for _ in range(4):
        http.get_json("/limited")
    assert http.stats.rate_limited == 1
    assert clock.sleeps == [1.0]  # the pacer held the next request for Retry-After: 1


def test_timeouts_are_retried_then_raised(server, clock):
    server.faults.slow_seconds = 0.5
    http = client(server, clock, timeout=(1, 0.1), retry=fast(clock, max_attempts=2))
    with pytest.raises(ApiTimeoutError) as err:
        http.get_json("/ok")
    assert err.value.attempts == 2
    assert len(clock.sleeps) == 1


def test_truncated_json_is_retried_then_reported(server, clock):
    server.faults.truncate_next = 1
    http = client(server, clock)
    assert http.get_json("/ok")["ok"] is True
    assert http.stats.retries == 1
    server.faults.truncate_next = 10
    with pytest.raises(ApiResponseError, match="malformed JSON") as err:
        http.get_json("/ok")
    assert err.value.attempts == 4 and server.count("/ok") == 6


def test_oversized_response_is_refused(server, clock):
    http = client(server, clock, max_response_bytes=1000)
    with pytest.raises(ApiResponseError, match="exceeds"):
        http.get_json("/big")
    assert server.count("/big") == 1  # not retried


def test_response_is_our_own_frozen_copy(server, clock):
    http = client(server, clock)
    response = http.request("GET", "/ok", params={"apikey": "k3y-value"})
    assert response.status_code == 200 and response.json() == {"ok": True, "q": "k3y-value"}
    assert response.headers["content-type"] == response.headers["Content-Type"]
    assert response.text == response.content.decode() and "apikey=k3y-value" in response.url
    assert http.stats.bytes_received == len(response.content)


def test_pacing_follows_the_servers_rate_limit_header(server, clock):
    http = client(server, clock)
    http.get_json("/paced")  # learns 600/min -> ~0.1 s apart
    for _ in range(6):
        http.get_json("/paced")
    assert http.rate_limiter.per_minute == 600
    assert clock.sleeps == pytest.approx([60 / (600 * 0.97)] * 5)


def test_rate_limiter_spaces_calls_evenly(clock):
    limiter = RateLimiter(per_minute=1200, headroom=1.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire()
    assert clock.sleeps == pytest.approx([0.05] * 4)
    assert limiter.waited_seconds == pytest.approx(0.2)


def test_401_refreshes_credentials_once(server, clock):
    class Rotating(AuthProvider):
        def __init__(self):
            self.token = "stale"
            self.invalidated = 0

        def headers(self, client):
            return {"Authorization": f"Bearer {self.token}"}

        def invalidate(self):
            self.invalidated += 1
            self.token = "good"

    auth = Rotating()
    http = client(server, clock, auth=auth)
    assert http.get_json("/secure") == {"ok": True}
    assert auth.invalidated == 1 and http.stats.retries == 0
    auth.token = "bad"
    auth.invalidate = lambda: None  # a credential that stays bad
    with pytest.raises(ApiHttpError) as err:
        http.get_json("/secure")
    assert err.value.status == 401 and err.value.attempts == 2


def test_connection_refused_is_a_connection_error(clock):
    http = HttpClient(f"http://127.0.0.1:{free_port()}", "nowhere", retry=fast(clock))
    with pytest.raises(ApiConnectionError, match="nowhere") as err:
        http.get_json("/x")
    assert err.value.attempts == 4 and len(clock.sleeps) == 3


def test_redact_url_hides_secret_params_and_values():
    url = redact_url("http://h/bot123:ABC/send?token=t0k3n&page=1", ["123:ABC"])
    assert "t0k3n" not in url and "123:ABC" not in url and "page=1" in url


def test_redact_url_hides_the_password_in_the_address():
    url = redact_url("postgresql://postgres:s3cr%2Ft@127.0.0.1:5432/signalbox")
    assert url == "postgresql://postgres:***@127.0.0.1:5432/signalbox"


def test_faults_error_rate_is_seeded():
    a, b = Faults(error_rate=0.5, seed=3), Faults(error_rate=0.5, seed=3)
    assert [a._rng.random() for _ in range(5)] == [b._rng.random() for _ in range(5)]


def test_rate_limiter_catches_up_at_most_its_burst_after_a_stall(clock):
    assert RateLimiter(per_minute=6000, headroom=0.95).burst == pytest.approx(300)
    slow = RateLimiter(per_minute=1200, headroom=0.9, clock=clock, sleep=clock.sleep)
    interval = 60 / (1200 * 0.9)  # 0.0556 s apart, burst 120 slots
    slow.acquire()
    clock.now += 0.3  # a stall of ~5 slots: they may be caught up on at once
    for _ in range(5):
        slow.acquire()
    assert clock.sleeps == []
    for _ in range(3):  # then the pace resumes
        slow.acquire()
    assert clock.sleeps == pytest.approx([6 * interval - 0.3, interval, interval])
