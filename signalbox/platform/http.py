"""The one HTTP client every API source uses.

It owns what every external call needs: connect/read timeouts, retries with exponential
backoff and full jitter on timeouts, connection errors and 5xx, a client-side pacer that
keeps under the server's per-minute budget (learned from its rate-limit headers) and
waits out `Retry-After` on 429, a cap on response size, and errors that name the source,
the URL (secrets redacted) and the status.
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
    """The URL with sensitive query values and any known secret replaced by `***`."""
    parts = urlsplit(url)
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
    """Exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_rate_limit_waits: int = 20
    max_retry_after: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))


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
        seed: int | None = None,
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
        self._rng = random.Random(seed)
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
        """Send, retrying transient failures, and decode a JSON body.

        A body that is not valid JSON is retried like a transient fault (a cut
        connection truncates pages) and, if it persists, raises ApiResponseError.
        """
        last_error: ApiResponseError | None = None
        for attempt in range(self.retry.max_attempts):
            response = self.request(method, path, **kwargs)
            try:
                return JsonResponse(response.json(), response)
            except ValueError as exc:
                last_error = self._error(
                    ApiResponseError,
                    method,
                    self._shown_url(response.url, None),
                    # no excerpt of the body: it may hold a credential (token endpoints)
                    f"malformed JSON ({exc}) in a {len(response.content)}-byte body",
                    response.status_code,
                    attempt + 1,
                )
                self.stats.retries += 1
                self.log.warning(f"{last_error}; retrying")
                time.sleep(self.retry.backoff(attempt, self._rng))
        assert last_error is not None
        raise last_error

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        json_body: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
    ) -> HttpResponse:
        """One logical request: returns a 2xx response or raises an ApiError subclass."""
        auth = self.auth if authenticate else None
        url = self.url(path)
        attempts = 0
        rate_waits = 0
        auth_retried = False
        while True:
            attempts += 1
            self.rate_limiter.acquire()
            request_headers = dict(headers or {})
            if auth:
                request_headers.update(auth.headers(self))
            shown = self._shown_url(url, params)
            try:
                self.stats.requests += 1
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    json=json_body,
                    files=files,
                    headers=request_headers,
                    timeout=self.timeout,
                    stream=True,
                )
                response = self._read_body(response, method, shown, attempts)
            except requests.Timeout as exc:
                self._retry_or_raise(ApiTimeoutError, method, shown, exc, attempts)
                continue
            except requests.ConnectionError as exc:
                self._retry_or_raise(ApiConnectionError, method, shown, exc, attempts)
                continue

            status = response.status_code
            self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
            self.rate_limiter.observe(response.headers)
            if status < 400:
                return response
            if status == 401 and auth and not auth_retried:
                auth_retried = True
                auth.invalidate()
                self.log.info(f"{self.source}: 401 on {shown}; fetching fresh credentials")
                continue
            if status == 429:
                self.stats.rate_limited += 1
                rate_waits += 1
                wait = self.retry_after(response)
                if wait is None:
                    wait = self.retry.backoff(rate_waits, self._rng) + 1.0
                if rate_waits > self.retry.max_rate_limit_waits:
                    raise self._error(
                        ApiHttpError, method, shown, "rate limited too often", 429, attempts
                    )
                wait = min(wait, self.retry.max_retry_after)
                self.log.warning(f"{self.source}: 429 on {shown}; waiting {wait:.1f}s")
                self.rate_limiter.pause(wait)
                attempts -= 1  # waiting out a rate limit is not a failed attempt
                continue
            if status in RETRYABLE_STATUSES and attempts < self.retry.max_attempts:
                wait = self.retry.backoff(attempts, self._rng)
                hinted = self.retry_after(response)
                if hinted is not None:
                    wait = max(wait, min(hinted, self.retry.max_retry_after))
                self.stats.retries += 1
                self.log.warning(
                    f"{self.source}: HTTP {status} on {shown} (attempt {attempts}); "
                    f"retrying in {wait:.1f}s"
                )
                time.sleep(wait)
                continue
            raise self._error(
                ApiHttpError, method, shown, self._error_detail(response), status, attempts
            )

    # -- internals

    def _shown_url(self, url: str, params: Mapping[str, Any] | None) -> str:
        if params:
            url = f"{url}?{urlencode([(k, v) for k, v in params.items() if v is not None])}"
        secrets = [*self._secrets, *(self.auth.secrets() if self.auth else [])]
        return redact_url(url, secrets)

    def _read_body(
        self, response: requests.Response, method: str, shown: str, attempts: int
    ) -> HttpResponse:
        """Read the streamed body, refusing anything larger than max_response_bytes."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
            response.close()
            raise self._error(
                ApiResponseError,
                method,
                shown,
                f"response of {int(declared)} bytes exceeds the {self.max_response_bytes} cap",
                response.status_code,
                attempts,
            )
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self.max_response_bytes:
                response.close()
                raise self._error(
                    ApiResponseError,
                    method,
                    shown,
                    f"response exceeds the {self.max_response_bytes}-byte cap",
                    response.status_code,
                    attempts,
                )
            chunks.append(chunk)
        self.stats.bytes_received += size
        return HttpResponse(
            response.status_code,
            response.headers,
            b"".join(chunks),
            response.url,
            response.reason or "",
        )

    def _retry_or_raise(self, kind: type[ApiError], method: str, shown: str, exc, attempts: int):
        if attempts >= self.retry.max_attempts:
            raise self._error(kind, method, shown, type(exc).__name__, None, attempts) from None
        wait = self.retry.backoff(attempts, self._rng)
        self.stats.retries += 1
        self.log.warning(
            f"{self.source}: {type(exc).__name__} on {shown} (attempt {attempts}); "
            f"retrying in {wait:.1f}s"
        )
        time.sleep(wait)

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
