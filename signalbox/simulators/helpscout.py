"""Help Scout Mailbox API 2.0 simulator over a deterministic world.

Serves what signalbox's client uses, the way the real API does (API_CONTRACTS.md 1):
client-credentials tokens that expire, HAL pages (25 conversations, 50 mailboxes) whose
`_links` do not carry the query params, `status=active` unless asked otherwise,
`modifiedSince` (inclusive) and `sortField=modifiedAt` on a server-side modifiedAt that
no payload shows, and a per-account per-minute rate limit over a sliding window.

The clock is `now`: fixed (given, or the real UTC minute at construction), settable,
and moved with `advance()`; the `Date` header follows it, so a client that marks its
crawl with the server's time stays consistent with what it was shown.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from signalbox.simulators.helpscout_world import (
    SORT_FIELDS,
    STATUS_FILTERS,
    HelpScoutWorld,
    parse_iso,
)
from signalbox.simulators.server import (
    ClockedSimulator,
    Faults,
    Request,
    Response,
    SimulatorServer,
    SlidingWindow,
)
from signalbox.stack import LocalStack, stand_in

HAL_JSON = "application/hal+json"
TOKEN_PATH = "/v2/oauth2/token"
CONVERSATION_PAGE_SIZE = 25
MAILBOX_PAGE_SIZE = 50
_QUERY_MODIFIED = re.compile(r"modifiedAt:\[\s*(\S+)\s+TO\s+(\S+)\s*\]", re.IGNORECASE)


@dataclass
class HelpScoutFaults(Faults):
    """The base switches plus schema drift: unknown fields and enum values in payloads."""

    unknown_values: bool = False  # aiSummary field, status "archived", thread type "whatsapp"


class HelpScoutSimulator(ClockedSimulator):
    name = "helpscout"

    def __init__(
        self,
        world: HelpScoutWorld | None = None,
        now: datetime | None = None,
        client_id: str = "signalbox-demo",
        client_secret: str = "demo-secret",
        rate_limit_per_minute: int = 400,
        token_ttl_seconds: int = 172800,
        port: int = 0,
        faults: Faults | None = None,
        live: bool = False,
    ):
        super().__init__(now=now, live=live, port=port, faults=faults or HelpScoutFaults())
        self.world = world or HelpScoutWorld()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_seconds = token_ttl_seconds
        self.rate_limit = SlidingWindow(int(rate_limit_per_minute))
        self._tokens: dict[str, float] = {}  # token -> wall-clock expiry
        self.clock: Callable[[], float] = time.time  # token expiry (tests drive it)
        self._tokens_lock = threading.Lock()
        self.add_route("POST", TOKEN_PATH, self._token)
        self.add_route("GET", "/v2/mailboxes", self._authorized(self._mailboxes))
        self.add_route("GET", r"/v2/mailboxes/(?P<mailbox_id>\d+)", self._authorized(self._mailbox))
        self.add_route("GET", "/v2/conversations", self._authorized(self._conversations))
        self.add_route(
            "GET",
            r"/v2/conversations/(?P<conversation_id>\d+)",
            self._authorized(self._conversation),
        )

    # -- controls for tests and benchmarks

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next call gets a 401)."""
        with self._tokens_lock:
            self._tokens.clear()

    def touch(self, targets: float | list[int], at: datetime | None = None) -> list[int]:
        """Change conversations at `at` (default: now); see HelpScoutWorld.touch."""
        return self.world.touch(targets, at or self.now)

    @property
    def unknown_values(self) -> bool:
        return bool(getattr(self.faults, "unknown_values", False))

    # -- dispatch: rate limit around every API call

    def dispatch(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:  # the token endpoint is not rate limited
            return super().dispatch(request)
        wait, used = self.rate_limit.take()
        remaining = self.rate_limit.limit - used
        if not wait:
            response = super().dispatch(request)
        else:
            retry_after = max(1, math.ceil(wait))
            response = _error(
                429,
                "Too Many Requests",
                f"rate limit of {self.rate_limit.limit} requests per minute exceeded",
            )
            response.headers["X-RateLimit-Retry-After"] = str(retry_after)
            response.headers["Retry-After"] = str(retry_after)
        response.headers["X-RateLimit-Limit-Minute"] = str(self.rate_limit.limit)
        response.headers["X-RateLimit-Remaining-Minute"] = str(remaining)
        return response

    # -- auth

    def _token(self, request: Request) -> Response:
        content_type = request.headers.get("Content-Type", "")
        params = {k: v[-1] for k, v in request.query.items()}
        if "json" in content_type:
            try:
                body = request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
        elif request.body:
            params.update(request.form())
        if params.get("grant_type") != "client_credentials":
            return Response.json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
                status=400,
            )
        if not (
            secrets.compare_digest(params.get("client_id", ""), self.client_id)
            and secrets.compare_digest(params.get("client_secret", ""), self.client_secret)
        ):
            return Response.json(
                {"error": "invalid_client", "error_description": "Bad client credentials"},
                status=401,
            )
        token = secrets.token_urlsafe(24)
        with self._tokens_lock:
            self._tokens[token] = self.clock() + self.token_ttl_seconds
        return Response.json(
            {"token_type": "bearer", "access_token": token, "expires_in": self.token_ttl_seconds}
        )

    def _authorized(self, handler):
        def guarded(request: Request) -> Response:
            header = _header(request, "Authorization") or ""
            scheme, _, token = header.partition(" ")
            with self._tokens_lock:
                expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
                if expiry is not None and expiry <= self.clock():
                    del self._tokens[token.strip()]
                    expiry = None
            if expiry is None:
                return Response.json(
                    {"error": "invalid_token", "error_description": "Token expired or invalid"},
                    status=401,
                    **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return handler(request)

        return guarded

    # -- mailboxes

    def _mailboxes(self, request: Request) -> Response:
        page, problem = _page_number(request)
        if problem:
            return problem
        mailboxes = self.world.mailboxes()
        items = mailboxes[(page - 1) * MAILBOX_PAGE_SIZE : page * MAILBOX_PAGE_SIZE]
        body = {
            "_embedded": {"mailboxes": items},
            "_links": _page_links(
                _base_url(request, self), "/v2/mailboxes", page, len(mailboxes), MAILBOX_PAGE_SIZE
            ),
            "page": _page_block(page, len(mailboxes), MAILBOX_PAGE_SIZE),
        }
        return Response.json(body, content_type=HAL_JSON)

    def _mailbox(self, request: Request) -> Response:
        wanted = int(request.params["mailbox_id"])
        for mailbox in self.world.mailboxes():
            if mailbox["id"] == wanted:
                return Response.json(mailbox, content_type=HAL_JSON)
        return _error(404, "Not Found", f"no mailbox {wanted}")

    # -- conversations

    def _conversations(self, request: Request) -> Response:
        page, problem = _page_number(request)
        if problem:
            return problem
        errors = []
        mailbox_ids = None
        mailbox_args = [v for arg in request.args("mailbox") for v in arg.split(",") if v.strip()]
        if mailbox_args:
            try:
                mailbox_ids = [int(v) for v in mailbox_args]
            except ValueError:
                errors.append(("mailbox", ",".join(mailbox_args), "must be mailbox ids"))
        status = (request.arg("status") or "active").lower()
        if status not in STATUS_FILTERS:
            errors.append(("status", status, f"must be one of {', '.join(STATUS_FILTERS)}"))
        sort_field = request.arg("sortField") or "createdAt"
        if sort_field not in SORT_FIELDS:
            errors.append(("sortField", sort_field, f"must be one of {', '.join(SORT_FIELDS)}"))
        sort_order = (request.arg("sortOrder") or "desc").lower()
        if sort_order not in ("asc", "desc"):
            errors.append(("sortOrder", sort_order, "must be asc or desc"))
        since = until = None
        if request.arg("modifiedSince"):
            try:
                since = parse_iso(request.arg("modifiedSince"))
            except ValueError:
                errors.append(("modifiedSince", request.arg("modifiedSince"), "must be ISO-8601"))
        match = _QUERY_MODIFIED.search(request.arg("query") or "")
        if match:  # the search syntax's modifiedAt range, ANDed with modifiedSince
            try:
                low, high = (None if v == "*" else parse_iso(v) for v in match.groups())
            except ValueError:
                errors.append(("query", match.group(0), "bad modifiedAt range"))
            else:
                since = low if since is None or (low and low > since) else since
                until = high
        if errors:
            return _validation_error(errors)
        embed = "threads" in (request.arg("embed") or "").split(",")
        now = self.now
        unknown = self.unknown_values
        records = self.world.select(
            now,
            modified_since=since,
            modified_until=until,
            mailbox_ids=mailbox_ids,
            status=status,
            sort_field=sort_field,
            sort_order=sort_order,
            unknown_values=unknown,
        )
        now_ts = int(now.timestamp())
        chosen = records[(page - 1) * CONVERSATION_PAGE_SIZE : page * CONVERSATION_PAGE_SIZE]
        rendered = ",".join(self.world.render_json(r, now_ts, embed, unknown) for r in chosen)
        links = _page_links(
            _base_url(request, self),
            "/v2/conversations",
            page,
            len(records),
            CONVERSATION_PAGE_SIZE,
        )
        block = _page_block(page, len(records), CONVERSATION_PAGE_SIZE)
        text = (
            f'{{"_embedded":{{"conversations":[{rendered}]}},'
            f'"_links":{json.dumps(links)},"page":{json.dumps(block)}}}'
        )
        return Response(200, text.encode(), {"Content-Type": HAL_JSON})

    def _conversation(self, request: Request) -> Response:
        conversation_id = int(request.params["conversation_id"])
        embed = "threads" in (request.arg("embed") or "").split(",")
        text = self.world.conversation_json(conversation_id, self.now, embed, self.unknown_values)
        if text is None:
            return _error(404, "Not Found", f"no conversation {conversation_id}")
        return Response(200, text.encode(), {"Content-Type": HAL_JSON})


# --------------------------------------------------------------------------- helpers


def _header(request: Request, name: str) -> str | None:
    wanted = name.lower()
    for key, value in request.headers.items():
        if key.lower() == wanted:
            return value
    return None


def _base_url(request: Request, server: SimulatorServer) -> str:
    host = _header(request, "Host")
    return f"http://{host}" if host else server.url


def _page_number(request: Request) -> tuple[int, Response | None]:
    raw = request.arg("page") or "1"
    try:
        page = int(raw)
    except ValueError:
        page = 0
    if page < 1:
        return 0, _validation_error([("page", raw, "must be a positive integer")])
    return page, None


def _page_block(page: int, total: int, size: int) -> dict[str, int]:
    return {
        "size": size,
        "totalElements": total,
        "totalPages": math.ceil(total / size),
        "number": page,
    }


def _page_links(base: str, path: str, page: int, total: int, size: int) -> dict[str, Any]:
    """HAL links by page number only: like the real API, they drop the query params."""
    last = max(1, math.ceil(total / size))
    href = f"{base}{path}"
    links: dict[str, Any] = {
        "self": {"href": f"{href}?page={page}"},
        "first": {"href": f"{href}?page=1"},
        "last": {"href": f"{href}?page={last}"},
        "page": {"href": f"{href}{{?page}}", "templated": True},
    }
    if page < last:
        links["next"] = {"href": f"{href}?page={page + 1}"}
    if 1 < page <= last + 1:
        links["previous"] = {"href": f"{href}?page={min(page, last + 1) - 1}"}
    return links


def _error(status: int, message: str, detail: str) -> Response:
    return Response.json(
        {"logRef": secrets.token_hex(6), "message": message, "detail": detail},
        status=status,
        content_type="application/vnd.error+json",
    )


def _validation_error(errors: list[tuple[str, str, str]]) -> Response:
    return Response.json(
        {
            "logRef": secrets.token_hex(6),
            "message": "Bad request",
            "_embedded": {
                "errors": [
                    {"path": path, "message": message, "rejectedValue": value, "source": "query"}
                    for path, value, message in errors
                ]
            },
        },
        status=400,
        content_type="application/vnd.error+json",
    )


DEMO_CLIENT_ID = "signalbox-demo"


@stand_in("Help Scout simulator", unless="HELPSCOUT_BASE_URL")
def _local_helpscout(stack: LocalStack) -> str:
    # a secret of its own per start: what leaks of it anywhere is found (tests/e2e)
    client_secret = secrets.token_urlsafe(24)
    simulator = HelpScoutSimulator(
        client_id=DEMO_CLIENT_ID,
        client_secret=client_secret,
        rate_limit_per_minute=800,
        live=True,
    ).start()
    stack.on_stop(simulator.stop)
    stack.export(
        HELPSCOUT_BASE_URL=simulator.url,
        HELPSCOUT_CLIENT_ID=DEMO_CLIENT_ID,
        HELPSCOUT_CLIENT_SECRET=client_secret,
    )
    start = datetime.now(UTC).date() - timedelta(days=stack.demo_backfill_days)
    stack.default(HELPSCOUT_BACKFILL_START=start.isoformat())
    return simulator.url
