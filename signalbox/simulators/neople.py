"""Neople Open API (Dungeon&Fighter) simulator over a deterministic world.

Serves what signalbox uses, the way the real API does (API_CONTRACTS.md 2): the server
list, character search and info, and character timelines with `apikey` (query param or
header), `startDate`/`endDate` (`YYYY-MM-DD HH:MM` or `YYYYMMDDTHHMM`, KST, minute
precision, both ends inclusive, at most 90 days apart), `limit` (default 10, at most
100), `code` filters and opaque `next` tokens; rows newest first. Errors carry Neople's
`{"error": {"status", "code", "message"}}` body; each API key has a sliding-window rate
limit answering API002 with 429 and Retry-After.

The clock is `now` (KST minutes): fixed, settable, moved with `advance()`, or following
wall time with `live=True`; events after it are not in any timeline yet.

Choices where the public record is silent: a missing or unknown key is 401 (API000,
API003), a blocked key 403 (API004); a `limit` above the maximum is clamped, not
rejected; without dates the window is the 90 days up to `now`; a `next` token carries
its window and codes, so re-sending the same params (or none) pages on and different
ones are a 400.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from signalbox.simulators.neople_world import (
    EARLIEST,
    KST,
    MAX_SPAN,
    SERVER_NAMES,
    SERVERS,
    Entry,
    NeopleWorld,
    format_minute,
    minute_index,
    to_kst_minute,
)
from signalbox.simulators.server import (
    ClockedSimulator,
    Faults,
    Request,
    Response,
    SlidingWindow,
)
from signalbox.stack import LocalStack, stand_in

JSON_UTF8 = "application/json;charset=UTF-8"
DEFAULT_API_KEY = "signalbox-demo-key"
TIMELINE_LIMIT_DEFAULT, TIMELINE_LIMIT_MAX = 10, 100
SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX = 10, 200
# both forms working clients send; strict, so "20240509T000" (three digits) is refused
_DATE_FORMATS = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"), "%Y-%m-%d %H:%M"),
    (re.compile(r"\d{8}T\d{4}"), "%Y%m%dT%H%M"),
)

_INJECTED = json.dumps({"error": "injected fault"}).encode()


@dataclass
class NeopleFaults(Faults):
    """The base switches plus the Neople-specific ones."""

    unknown_codes: bool = False  # rows with codes no client knows, unexpected `data` keys
    missing_fields: bool = False  # some rows lose `date` or `code`
    maintenance: bool = False  # every call answers DNF980 / 503 SYSTEM_INSPECT


class NeopleError(Exception):
    """An error answer: HTTP status, Neople code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message

    def response(self, **headers: str) -> Response:
        body = {"error": {"status": self.status, "code": self.code, "message": self.message}}
        return Response.json(body, status=self.status, content_type=JSON_UTF8, **headers)


class NeopleSimulator(ClockedSimulator):
    name = "neople"
    clock_zone = KST
    clock_step = timedelta(minutes=1)

    def __init__(
        self,
        world: NeopleWorld | None = None,
        now: datetime | None = None,
        api_keys: tuple[str, ...] | list[str] = (DEFAULT_API_KEY,),
        blocked_keys: tuple[str, ...] | list[str] = (),
        rate_limit: int = 600,
        rate_window_seconds: float = 60.0,
        port: int = 0,
        faults: Faults | None = None,
        live: bool = False,
    ):
        super().__init__(now=now, live=live, port=port, faults=faults or NeopleFaults())
        self.world = world or NeopleWorld()
        self.api_keys = set(api_keys)
        self.blocked_keys = set(blocked_keys)
        self.rate_limit = SlidingWindow(rate_limit, rate_window_seconds)
        self._token_key = hashlib.sha256(f"neople-next:{self.world.seed}".encode()).digest()
        self.add_route("GET", "/df/servers", self._servers)
        self.add_route("GET", r"/df/servers/(?P<server_id>[^/]+)/characters", self._search)
        self.add_route(
            "GET",
            r"/df/servers/(?P<server_id>[^/]+)/characters/(?P<character_id>[^/]+)",
            self._character,
        )
        self.add_route(
            "GET",
            r"/df/servers/(?P<server_id>[^/]+)/characters/(?P<character_id>[^/]+)/timeline",
            self._timeline,
        )
        self.add_route("GET", r"/.*", self._unknown_url)

    @property
    def neople_faults(self) -> NeopleFaults:
        faults = self.faults
        return faults if isinstance(faults, NeopleFaults) else NeopleFaults()

    # -- dispatch: maintenance, key, rate limit around every call

    def dispatch(self, request: Request) -> Response:
        if self.neople_faults.maintenance:
            return NeopleError(503, "DNF980", "SYSTEM_INSPECT").response()
        key = request.arg("apikey") or _header(request, "apikey")
        if not key:
            return NeopleError(401, "API000", "NOT_FOUND_APIKEY").response()
        if key in self.blocked_keys:
            return NeopleError(403, "API004", "BLOCKED_APIKEY").response()
        if key not in self.api_keys:
            return NeopleError(401, "API003", "INVALID_APIKEY").response()
        wait, _ = self.rate_limit.take(key)
        if wait:
            return NeopleError(429, "API002", "API_RATE_LIMIT_EXCEEDED").response(
                **{"Retry-After": str(max(1, math.ceil(wait)))}
            )
        response = super().dispatch(request)
        if response.status >= 400 and response.body == _INJECTED:
            return _injected(response)
        return response

    # -- routes

    def _servers(self, request: Request) -> Response:
        rows = [{"serverId": sid, "serverName": name} for sid, name in SERVERS]
        return Response.json({"rows": rows}, content_type=JSON_UTF8)

    def _unknown_url(self, request: Request) -> Response:
        return NeopleError(404, "API900", "INVALID_URL").response()

    def _search(self, request: Request) -> Response:
        server_id = request.params["server_id"]
        try:
            if server_id != "all" and server_id not in SERVER_NAMES:
                raise NeopleError(400, "DNF000", "INVALID_SERVER_ID")
            name = (request.arg("characterName") or "").strip()
            if not name:
                raise NeopleError(400, "DNF901", "INVALID_CHARACTER_NAME")
            word_type = request.arg("wordType") or "match"
            if word_type not in ("match", "full"):
                raise NeopleError(400, "DNF901", "INVALID_WORD_TYPE")
            limit = _limit(request, SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX)
        except NeopleError as error:
            return error.response()
        found = self.world.search(
            server_id, name, word_type, request.arg("jobId"), request.arg("jobGrowId")
        )
        rows = [spec.search_row() for spec in found[:limit]]
        return Response.json({"rows": rows}, content_type=JSON_UTF8)

    def _lookup(self, request: Request):
        server_id = request.params["server_id"]
        if server_id not in SERVER_NAMES:
            raise NeopleError(400, "DNF000", "INVALID_SERVER_ID")
        spec = self.world.character(request.params["character_id"])
        if spec is None or spec.server_id != server_id:
            raise NeopleError(404, "DNF001", "NOT_FOUND_CHARACTER")
        return spec

    def _character(self, request: Request) -> Response:
        try:
            spec = self._lookup(request)
        except NeopleError as error:
            return error.response()
        return Response.json(spec.profile(), content_type=JSON_UTF8)

    def _timeline(self, request: Request) -> Response:
        faults = self.neople_faults
        try:
            spec = self._lookup(request)
            limit = _limit(request, TIMELINE_LIMIT_DEFAULT, TIMELINE_LIMIT_MAX)
            cursor = None
            token = request.arg("next")
            if token:
                character_id, start, end, codes, cursor = self._decode(token)
                if character_id != spec.character_id or _contradicts(request, start, end, codes):
                    raise NeopleError(400, "DNF901", "INVALID_NEXT")
            else:
                codes = _codes(request.arg("code"))
                start, end = _window(request.arg("startDate"), request.arg("endDate"), self.now)
        except NeopleError as error:
            return error.response()
        entries = self.world.window(
            spec.character_id, start, end, now=self.now, unknown_codes=faults.unknown_codes
        )
        if codes:
            wanted = set(codes)
            entries = [e for e in entries if e[2] in wanted]
        begin = 0
        if cursor is not None:  # entries are newest first: skip those at or before the cursor
            begin = bisect.bisect_right(entries, (-cursor[0], -cursor[1]), key=_descending)
        page = entries[begin : begin + limit]
        more = begin + limit < len(entries)
        rows = [
            self.world.render(
                spec.character_id,
                entry,
                unknown_codes=faults.unknown_codes,
                missing_fields=faults.missing_fields,
            )
            for entry in page
        ]
        body = spec.profile() | {
            "timeline": {
                "date": {"start": _fmt(start), "end": _fmt(end)},
                "next": self._encode(spec.character_id, start, end, codes, page[-1])
                if more
                else None,
                "rows": rows,
            }
        }
        return Response.json(body, content_type=JSON_UTF8)

    # -- next tokens: the window, the codes and the last row served, signed

    def _encode(
        self, character_id: str, start: datetime, end: datetime, codes: tuple, last: Entry
    ) -> str:
        payload = (
            f"{character_id}|{minute_index(start)}|{minute_index(end)}|"
            f"{','.join(map(str, codes))}|{last[0]}|{last[1]}"
        ).encode()
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:12]
        return (mac + payload).hex()

    def _decode(self, token: str):
        try:
            raw = bytes.fromhex(token)
            mac, payload = raw[:12], raw[12:]
            expected = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:12]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            character_id, first, last, codes, minute, j = payload.decode().split("|")
            codes_tuple = tuple(int(c) for c in codes.split(",") if c)
            return (
                character_id,
                _from_minute(int(first)),
                _from_minute(int(last)),
                codes_tuple,
                (int(minute), int(j)),
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise NeopleError(400, "DNF901", "INVALID_NEXT") from exc


# --------------------------------------------------------------------------- helpers


def _header(request: Request, name: str) -> str | None:
    wanted = name.lower()
    for key, value in request.headers.items():
        if key.lower() == wanted:
            return value
    return None


def _limit(request: Request, default: int, maximum: int) -> int:
    raw = request.arg("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise NeopleError(400, "DNF901", "INVALID_LIMIT") from None
    if value < 1:
        raise NeopleError(400, "DNF901", "INVALID_LIMIT")
    return min(value, maximum)


def _codes(raw: str | None) -> tuple[int, ...]:
    if not raw:
        return ()
    try:
        return tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise NeopleError(400, "DNF901", "INVALID_TIMELINE_CODE") from None


def parse_date(text: str) -> datetime:
    """A timeline date param (`YYYY-MM-DD HH:MM` or `YYYYMMDDTHHMM`) as naive KST."""
    for pattern, fmt in _DATE_FORMATS:
        if pattern.fullmatch(text.strip()):
            return datetime.strptime(text.strip(), fmt)
    raise ValueError(f"not a timeline date: {text!r}")


def _window(start_text: str | None, end_text: str | None, now: datetime):
    """The [start, end] a timeline request asks for (naive KST minutes), validated."""
    try:
        end = parse_date(end_text) if end_text else to_kst_minute(now)
        start = parse_date(start_text) if start_text else end - MAX_SPAN
    except ValueError:
        raise NeopleError(400, "DNF006", "INVALID_TIMELINE_DATE_PARAMS") from None
    if start > end or end - start > MAX_SPAN or start < EARLIEST:
        raise NeopleError(400, "DNF006", "INVALID_TIMELINE_DATE_PARAMS")
    return start, end


def _contradicts(request: Request, start: datetime, end: datetime, codes: tuple) -> bool:
    """Whether params re-sent with a `next` token differ from its own (omitted ones don't)."""
    try:
        return (
            (request.arg("startDate") is not None and parse_date(request.arg("startDate")) != start)
            or (request.arg("endDate") is not None and parse_date(request.arg("endDate")) != end)
            or (request.arg("code") is not None and _codes(request.arg("code")) != codes)
        )
    except ValueError:
        raise NeopleError(400, "DNF006", "INVALID_TIMELINE_DATE_PARAMS") from None


def _descending(entry: Entry) -> tuple[int, int]:
    return (-entry[0], -entry[1])


def _fmt(moment: datetime) -> str:
    return format_minute(minute_index(moment))


def _from_minute(index: int) -> datetime:
    day, minute = divmod(index, 1440)
    return datetime.fromordinal(day) + timedelta(minutes=minute)


_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


def _injected(response: Response) -> Response:
    """A base fault's generic body in the shape this API would send for that status."""
    status = response.status
    if status == 429:
        return NeopleError(429, "API002", "API_RATE_LIMIT_EXCEEDED").response(
            **{"Retry-After": response.headers.get("Retry-After", "1")}
        )
    if status == 503:
        return NeopleError(503, "DNF980", "SYSTEM_INSPECT").response()
    if status in _REASONS:  # the load balancer in front answers, in HTML
        html = _GATEWAY_HTML.format(status=status, reason=_REASONS[status])
        return Response(status, html.encode(), {"Content-Type": "text/html"})
    if status >= 500:
        return NeopleError(status, "DNF999", "SYSTEM_ERROR").response()
    return NeopleError(status, "API999", "SYSTEM_ERROR").response()


@stand_in("Neople API simulator", unless="NEOPLE_BASE_URL")
def _local_neople(stack: LocalStack) -> str:
    key = secrets.token_urlsafe(24)  # its own key per start
    neople = NeopleSimulator(live=True, api_keys=(key,)).start()
    stack.on_stop(neople.stop)
    stack.export(NEOPLE_BASE_URL=neople.url, NEOPLE_API_KEY=key)
    characters = neople.world.characters()
    stack.default(
        NEOPLE_CHARACTERS=",".join(f"{c['serverId']}:{c['characterId']}" for c in characters)
    )
    return neople.url
