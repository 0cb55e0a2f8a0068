"""The one HTTP client every API source uses.

Timeouts; retries with full-jitter backoff (tenacity) on timeouts, connection errors, 5xx
and malformed JSON; a client-side pacer that follows the server's rate-limit headers and
waits out 429s; a response-size cap; errors that name the source, the redacted URL and
the status.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dagster as dg
import requests
from pydantic import Field
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

log = logging.getLogger(__name__)

SENSITIVE_PARAMS = frozenset(
    {"apikey", "api_key", "token", "access_token", "client_secret", "password", "secret"}
)
RETRYABLE_STATUSES = frozenset({408, 424, 500, 502, 503, 504})


# --------------------------------------------------------------------------- errors


class ApiError(RuntimeError):
    """A call to an external API failed; carries what a person needs to act on it."""

    def __init__(
        self,
        source: str,
        method: str,
        url: str,
        message: str,
        status: int | None = None,
        attempts: int = 1,
    ):
        self.source = source
        self.method = method
        self.url = url
        self.message = message  # the server's (or the client's) own words, without context
        self.status = status
        self.attempts = attempts
        status_text = f" -> HTTP {status}" if status is not None else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{source}: {method} {url}{status_text}{tries}: {message}")


class ApiHttpError(ApiError):
    """The server answered with an error status (4xx, or 5xx once retries ran out)."""


class ApiTimeoutError(ApiError):
    """No (complete) answer within the timeout, on every attempt."""


class ApiConnectionError(ApiError):
    """The server could not be reached, on every attempt."""


class ApiResponseError(ApiError):
    """The server answered 2xx but the body is unusable: malformed JSON, too large, bad shape."""


# --------------------------------------------------------------------------- redaction


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """The URL with its password, sensitive query values and any known secret as `***`."""
    parts = urlsplit(url)
    if parts.password:
        userinfo, _, host = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}")
    query = urlencode(
        [
            (k, "***" if k.lower() in SENSITIVE_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*,:",
    )
    redacted = urlunsplit(parts._replace(query=query))
    return redact_text(redacted, secrets)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class _RedactLibraryLogs(logging.Filter):
    """Rewrites records of the HTTP libraries, which log request lines (urllib3 logs the
    path and query, where a bot token or an `apikey` travels), with every secret of every
    client replaced by `***`."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # longest first; replaced whole, never mutated
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            known = set(self._secrets) | {s for s in secrets if s and len(s) >= 4}
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if secrets:
            message = record.getMessage()
            if any(s in message for s in secrets):
                record.msg, record.args = redact_text(message, secrets), None
        return True


_library_log_redactor = _RedactLibraryLogs()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_library_log_redactor)


# --------------------------------------------------------------------------- rate limiting


class RateLimiter:
    """Paces requests evenly under a per-minute budget.

    The budget starts at `per_minute` (None: unknown) and follows the server's
    `X-RateLimit-Limit-Minute` header once seen. Requests are spaced 60/(budget*headroom)
    seconds apart; a caller that fell behind may catch up on `burst` slots (a token
    bucket), so the average stays at the headroomed budget and a sliding one-minute window
    on the server never overflows. `pause(seconds)` holds every request back, for 429's
    Retry-After. `clock` and `sleep` are injectable so tests need not wait.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        headroom: float = 0.97,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.per_minute = per_minute
        self.headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self._next_at: float | None = None
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    @property
    def interval(self) -> float:
        if not self.per_minute:
            return 0.0
        return 60.0 / (self.per_minute * self.headroom)

    @property
    def burst(self) -> float:
        """Slots a caller that fell behind (e.g. while storing a batch) may catch up on: the
        headroom's share of a minute, so any 60 s window still stays within the budget."""
        if not self.per_minute:
            return 0.0
        return max(1.0, self.per_minute * (1 - self.headroom))

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            if self._next_at is None:  # the bucket starts empty: no burst at start-up
                self._next_at = now
            wait = max(0.0, self._next_at - now)
            earliest = now - self.burst * self.interval
            self._next_at = max(earliest, self._next_at) + self.interval
        if wait > 0:
            self.waited_seconds += wait
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next_at = max(self._next_at or 0.0, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        limit = _header_number(headers, "X-RateLimit-Limit-Minute", "X-RateLimit-Limit")
        if limit and limit > 0:
            self.per_minute = limit
        remaining = _header_number(headers, "X-RateLimit-Remaining-Minute", "X-RateLimit-Remaining")
        if remaining is not None and remaining <= 0 and self.per_minute:
            # the budget is spent: leave a full interval before the next call
            self.pause(self.interval)


def _header_number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                continue
    return None


def retry_after_seconds(response: HttpResponse) -> float | None:
    """Seconds to wait from `Retry-After` / `X-RateLimit-Retry-After` (seconds or HTTP date)."""
    for name in ("X-RateLimit-Retry-After", "Retry-After"):
        value = response.headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


# --------------------------------------------------------------------------- client


@dataclass
class RetryPolicy:
    """Tries per request on transient faults, and the full-jitter waits between them:
    U(0, min(backoff_max, backoff_base * 2**n)) after failed try n."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_rate_limit_waits: int = 20
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def backoff(self, state: RetryCallState) -> float:
        # tenacity's window after try n is multiplier * 2**(n-1), hence 2 * base
        jitter = wait_random_exponential(multiplier=2 * self.backoff_base, max=self.backoff_max)
        return jitter(state)


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    bytes_received: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpResponse:
    """An answer read whole, under the client's size cap."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", CaseInsensitiveDict(self.headers))

    @property
    def text(self) -> str:
        encoding = get_encoding_from_headers(self.headers) or "utf-8"
        try:
            return self.content.decode(encoding, "replace")
        except LookupError:  # an unknown charset in Content-Type
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class JsonResponse:
    body: Any
    response: HttpResponse

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers


class AuthProvider:
    """Adds credentials to requests; `invalidate()` after a 401 forces fresh ones."""

    def headers(self, client: HttpClient) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        pass

    def secrets(self) -> list[str]:
        return []


class _Retry(Exception):
    """A failed try worth another; `error` is raised if none is left."""

    def __init__(self, error: ApiError, retry_after: float | None = None, reauth: bool = False):
        self.error = error
        self.retry_after = retry_after  # the server's hint, a floor for the backoff
        self.reauth = reauth  # a 401 with fresh credentials next: no wait, always allowed


@dataclass
class _Call:
    """One logical request, across its tries."""

    method: str
    url: str
    params: Mapping[str, Any] | None
    send: dict[str, Any]
    headers: Mapping[str, str] | None
    auth: AuthProvider | None
    as_json: bool
    attempts: int = 0
    rate_waits: int = 0
    reauthed: bool = False


class HttpClient:
    def __init__(
        self,
        base_url: str,
        source: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        auth: AuthProvider | None = None,
        secrets: Iterable[str] = (),
        max_response_bytes: int = 50 * 1024 * 1024,
        retry_after: Callable[[HttpResponse], float | None] = retry_after_seconds,
        headers: Mapping[str, str] | None = None,
        logger: logging.Logger | Any | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.source = source
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter or RateLimiter()
        self.auth = auth
        self._secrets = [s for s in secrets if s]
        _library_log_redactor.add(*self._secrets)
        self.max_response_bytes = max_response_bytes
        self.retry_after = retry_after
        self.log = logger or log
        self.stats = HttpStats()
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "signalbox/0.1", **(headers or {})})

    # -- public API

    def url(self, path: str) -> str:
        if re.match(r"^https?://", path):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def redact(self, text: str) -> str:
        secrets = [*self._secrets, *(self.auth.secrets() if self.auth else [])]
        return redact_text(text, secrets)

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.fetch_json("GET", path, params=params).body

    def fetch_json(self, method: str, path: str, **kwargs: Any) -> JsonResponse:
        """Like `request`, and decode a JSON body. A malformed body is retried like a
        transient fault (a cut connection truncates pages), then raises ApiResponseError."""
        return self._run(method, path, as_json=True, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        """One logical request (keywords: params, data, json_body, files, headers,
        authenticate): returns a 2xx response or raises an ApiError subclass."""
        return self._run(method, path, as_json=False, **kwargs)

    # -- internals

    def _run(
        self,
        method: str,
        path: str,
        *,
        as_json: bool,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        json_body: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
    ) -> Any:
        call = _Call(
            method=method,
            url=self.url(path),
            params=params,
            send={"data": data, "json": json_body, "files": files},
            headers=headers,
            auth=self.auth if authenticate else None,
            as_json=as_json,
        )
        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=self._stop,
            wait=self._wait,
            before_sleep=self._before_retry,
            sleep=self.retry.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, call)
        except _Retry as failure:
            raise failure.error from None

    def _attempt(self, call: _Call) -> HttpResponse | JsonResponse:
        """One try; 429s are waited out here (through the pacer) and do not count as tries."""
        call.attempts += 1
        while True:
            self.rate_limiter.acquire()
            request_headers = dict(call.headers or {})
            if call.auth:
                request_headers.update(call.auth.headers(self))
            shown = self._shown_url(call.url, call.params)
            try:
                self.stats.requests += 1
                response = self._send(call, request_headers, shown)
            except (requests.Timeout, requests.ConnectionError) as exc:
                kind = ApiTimeoutError if isinstance(exc, requests.Timeout) else ApiConnectionError
                raise _Retry(self._fail(call, kind, shown, type(exc).__name__)) from None

            status = response.status_code
            self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
            self.rate_limiter.observe(response.headers)
            if status < 400:
                break
            if status == 429:
                self._wait_out_rate_limit(call, shown, response)
                continue
            error = self._fail(call, ApiHttpError, shown, self._error_detail(response), status)
            if status == 401 and call.auth and not call.reauthed:
                call.reauthed = True
                call.auth.invalidate()
                self.log.info(f"{self.source}: 401 on {shown}; fetching fresh credentials")
                raise _Retry(error, reauth=True)
            if status in RETRYABLE_STATUSES:
                raise _Retry(error, self.retry_after(response))
            raise error
        if not call.as_json:
            return response
        try:
            return JsonResponse(response.json(), response)
        except ValueError as exc:
            # no excerpt of the body: it may hold a credential (token endpoints)
            message = f"malformed JSON ({exc}) in a {len(response.content)}-byte body"
            shown = self._shown_url(response.url, None)
            raise _Retry(self._fail(call, ApiResponseError, shown, message, status)) from None

    def _send(self, call: _Call, headers: dict[str, str], shown: str) -> HttpResponse:
        """Send and read the streamed body, refusing anything over max_response_bytes."""
        with self.session.request(
            call.method,
            call.url,
            params=call.params,
            headers=headers,
            timeout=self.timeout,
            stream=True,
            **call.send,
        ) as response:
            cap, status = self.max_response_bytes, response.status_code
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cap:
                message = f"response of {int(declared)} bytes exceeds the {cap} cap"
                raise self._fail(call, ApiResponseError, shown, message, status)
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > cap:
                    message = f"response exceeds the {cap}-byte cap"
                    raise self._fail(call, ApiResponseError, shown, message, status)
                chunks.append(chunk)
        self.stats.bytes_received += size
        return HttpResponse(
            response.status_code,
            response.headers,
            b"".join(chunks),
            response.url,
            response.reason or "",
        )

    def _wait_out_rate_limit(self, call: _Call, shown: str, response: HttpResponse) -> None:
        self.stats.rate_limited += 1
        call.rate_waits += 1
        if call.rate_waits > self.retry.max_rate_limit_waits:
            raise self._fail(call, ApiHttpError, shown, "rate limited too often", 429)
        wait = self.retry_after(response)
        if wait is None:
            cap = min(self.retry.backoff_max, self.retry.backoff_base * 2**call.rate_waits)
            wait = random.uniform(0, cap) + 1.0
        wait = min(wait, self.retry.max_retry_after)
        self.log.warning(f"{self.source}: 429 on {shown}; waiting {wait:.1f}s")
        self.rate_limiter.pause(wait)

    def _stop(self, state: RetryCallState) -> bool:
        failure = state.outcome.exception()
        return state.attempt_number >= self.retry.max_attempts and not failure.reauth

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception()
        if failure.reauth:
            return 0.0
        wait = self.retry.backoff(state)
        if failure.retry_after is not None:
            wait = max(wait, min(failure.retry_after, self.retry.max_retry_after))
        return wait

    def _before_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception()
        if failure.reauth:
            return
        error = failure.error
        what = f"HTTP {error.status}" if isinstance(error, ApiHttpError) else error.message
        self.stats.retries += 1
        self.log.warning(
            f"{self.source}: {what} on {error.url} (attempt {error.attempts}); "
            f"retrying in {state.next_action.sleep:.1f}s"
        )

    def _shown_url(self, url: str, params: Mapping[str, Any] | None) -> str:
        if params:
            url = f"{url}?{urlencode([(k, v) for k, v in params.items() if v is not None])}"
        secrets = [*self._secrets, *(self.auth.secrets() if self.auth else [])]
        return redact_url(url, secrets)

    def _fail(
        self, call: _Call, kind: type[ApiError], shown: str, message: str, status: int | None = None
    ) -> ApiError:
        return self._error(kind, call.method, shown, message, status, call.attempts)

    def _error_detail(self, response: HttpResponse) -> str:
        text = response.text[:300] if response.content else response.reason or ""
        return self.redact(text.strip().replace("\n", " "))

    def _error(self, kind, method, shown, message, status, attempts) -> ApiError:
        return kind(self.source, method, shown, self.redact(message), status, attempts)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HttpApiResource(dg.ConfigurableResource):
    """The timeouts and retries every API resource gives its HttpClient; a resource
    redeclares a field to change its default."""

    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = Field(default=6, description="Tries per request on timeouts and 5xx.")
    backoff_base_seconds: float = 0.5
    max_retry_after_seconds: float = Field(
        default=120.0, description="Longest single wait on a 429's Retry-After."
    )
    max_rate_limit_waits: int = Field(
        default=20, description="429 waits per request before giving up with an error."
    )

    def http_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_seconds, self.read_timeout_seconds)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_seconds,
            max_rate_limit_waits=self.max_rate_limit_waits,
            max_retry_after=self.max_retry_after_seconds,
        )
