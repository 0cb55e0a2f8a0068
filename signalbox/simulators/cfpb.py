"""CFPB Consumer Complaint Database search API simulator over a deterministic world.

Serves `GET /data-research/consumer-complaints/search/api/v1/` and `.../v1/<id>` the way
ccdb5-api does (API_CONTRACTS.md 3): the raw OpenSearch body (`hits.total`, `hits.hits[]`
with `_source` and `sort: [epoch ms | score, "id"]`, `aggregations` unless
`no_aggs=true`, `_meta` with break points), DRF's validation errors, and DRF's anonymous
throttles per client (search 20/min, document 5/min by default) answering 429 with
`{"detail": ...}` and Retry-After.

Upstream's traps are kept: `frm` is validated (a multiple of `size`) but never used as
an offset, so paging with it returns the first page again; a malformed `search_after`
is ignored (first page again) rather than rejected; the sort tie-break compares ids as
strings; `date_received_max` is exclusive.

The clock is `now`: fixed, settable, moved with `advance()`, or following wall time with
`live=True`; complaints appear as their publication time passes and change as their
company responds (or `world.update` says).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from signalbox.simulators.cfpb_world import (
    DELIMITER,
    EASTERN,
    INDEX,
    SORTS,
    STATE_CHOICES,
    CfpbWorld,
    Query,
    received_text,
)
from signalbox.simulators.server import (
    ClockedSimulator,
    Faults,
    Request,
    Response,
    SlidingWindow,
)
from signalbox.stack import LocalStack, stand_in

SEARCH_PATH = "/data-research/consumer-complaints/search/api/v1/"
UI_URL = "https://www.consumerfinance.gov/data-research/consumer-complaints/search"
MAX_SIZE = 100_000
MAX_FRM = 10_000
MAX_PAGINATION_DEPTH = 10_000
PAGINATION_BATCH = 100
LIST_FIELDS = (
    "company",
    "company_public_response",
    "company_response",
    "has_narrative",
    "issue",
    "product",
    "state",
    "submitted_via",
    "tags",
    "timely",
    "zip_code",
)

_TRUE = {"t", "y", "yes", "true", "on", "1"}
_FALSE = {"f", "n", "no", "false", "off", "0"}
_INJECTED = json.dumps({"error": "injected fault"}).encode()
_SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


@dataclass
class CfpbFaults(Faults):
    """The base switches plus the CFPB-specific ones."""

    duplicate_across_pages: bool = False  # a page starts with the previous page's last hit
    missing_fields: bool = False  # some hits lack `complaint_id` or `date_received`
    malformed_next: int = 0  # the next N 2xx bodies are complete but not valid JSON


class DrfThrottle(SlidingWindow):
    """DRF's SimpleRateThrottle: a sliding window of request times per client, whose wait
    spreads the window's remaining time over the requests still available."""

    def __init__(self, rate_per_minute: int, duration: float = 60.0):
        super().__init__(rate_per_minute, duration)

    def wait(self, ident: str) -> float:
        """0 if the request may go ahead, else DRF's wait in seconds."""
        remaining, used = self.take(ident)
        if not remaining:
            return 0.0
        available = self.limit - used + 1
        return max(remaining / max(available, 1), 0.001)


class CfpbSimulator(ClockedSimulator):
    name = "cfpb"
    clock_step = timedelta(seconds=1)

    def __init__(
        self,
        world: CfpbWorld | None = None,
        now: datetime | None = None,
        search_rate_per_minute: int = 20,
        document_rate_per_minute: int = 5,
        port: int = 0,
        faults: Faults | None = None,
        live: bool = False,
    ):
        super().__init__(now=now, live=live, port=port, faults=faults or CfpbFaults())
        self.world = world or CfpbWorld()
        self.search_throttle = DrfThrottle(search_rate_per_minute)
        self.document_throttle = DrfThrottle(document_rate_per_minute)
        self._malformed_lock = threading.Lock()
        self.add_route("GET", SEARCH_PATH.rstrip("/") + "/?", self._search)
        self.add_route("GET", SEARCH_PATH + r"(?P<complaint_id>[^/]+)/?", self._document)
        self.add_route("GET", r"/.*", self._not_found)

    @property
    def cfpb_faults(self) -> CfpbFaults:
        faults = self.faults
        return faults if isinstance(faults, CfpbFaults) else CfpbFaults()

    # -- controls for tests and the demo

    def burst(self, status: int = 500, count: int = 3) -> None:
        """The next `count` answers fail with `status` (500, 424, 503, 429, ...)."""
        self.faults.fail_next.extend([status] * count)

    def update(self, complaint_ids, at: datetime | None = None, **changes: Any) -> list[str]:
        """Change complaints from `at` (default: now); see CfpbWorld.update."""
        return self.world.update(complaint_ids, at or self.now, **changes)

    # -- dispatch: throttle, then faults and routes, then the malformed-body switch

    def dispatch(self, request: Request) -> Response:
        throttle = self._throttle_for(request)
        if throttle is not None:
            wait = throttle.wait(_client(request))
            if wait:
                return _throttled(math.ceil(wait))
        response = super().dispatch(request)
        if response.status >= 400 and response.body == _INJECTED:
            return _injected(response)
        if response.status < 300 and self.cfpb_faults.malformed_next > 0:
            with self._malformed_lock:
                malformed = self.cfpb_faults.malformed_next > 0
                if malformed:
                    self.cfpb_faults.malformed_next -= 1
            if malformed:
                response.body = _malform(response.body)
        return response

    def _throttle_for(self, request: Request) -> DrfThrottle | None:
        referer = _header(request, "Referer") or ""
        if UI_URL in referer:  # the UI's own calls are not throttled as anonymous
            return None
        if request.path.rstrip("/") == SEARCH_PATH.rstrip("/"):
            return self.search_throttle
        if request.path.startswith(SEARCH_PATH):
            return self.document_throttle
        return None

    # -- routes

    def _not_found(self, request: Request) -> Response:
        return Response.json({"detail": "Not found."}, status=404)

    def _document(self, request: Request) -> Response:
        """Upstream answers a document request with a search body holding it (or none)."""
        source = self.world.complaint(request.params["complaint_id"], self.now)
        hits = []
        if source is not None:
            hits.append({"_index": INDEX, "_id": source["complaint_id"], "_score": 1.0})
            hits[0]["_source"] = self._faulty(source)
        body = {
            "took": 1,
            "timed_out": False,
            "_shards": _SHARDS,
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "max_score": 1.0 if hits else None,
                "hits": hits,
            },
        }
        return Response.json(body)

    def _search(self, request: Request) -> Response:
        params, errors = _validate(request)
        if errors:
            return Response.json(errors, status=400)
        now = self.now
        t = int(now.timestamp())
        query = Query(
            sort=params["sort"],
            date_min=params.get("date_received_min"),
            date_max=params.get("date_received_max"),
            company_received_min=params.get("company_received_min"),
            company_received_max=params.get("company_received_max"),
            search_term=params.get("search_term"),
            field=params["field"],
            include=tuple(sorted((k, tuple(v)) for k, v in params["include"].items())),
            exclude=tuple(sorted((k, tuple(v)) for k, v in params["exclude"].items())),
        )
        hits = self.world.search(t, query)
        size = params["size"]
        start = 0
        after = _parse_search_after(params.get("search_after"), params["sort"])
        descending = params["sort"].endswith("desc")
        if after is not None:
            start = _first_after([h[0] for h in hits], after, descending)
        faults = self.cfpb_faults
        if after is not None and faults.duplicate_across_pages and size >= 2 and start > 0:
            start -= 1  # an unstable sort: the previous page's last hit comes round again
        page = hits[start : start + size]
        relevance = params["sort"].startswith("relevance")
        rendered = []
        for sort_key, score, record in page:
            hit = {
                "_index": INDEX,
                "_id": str(record.id),
                "_score": score if relevance else None,
                "_source": self._faulty(self.world.source(record, t)),
                "sort": list(sort_key),
            }
            if query.search_term and not params["no_highlight"]:
                hit["highlight"] = _highlight(hit["_source"], query)
            rendered.append(hit)
        total, latest, indexed = self.world.stats(t)
        body: dict[str, Any] = {
            "took": 1 + len(page) // 25,
            "timed_out": False,
            "_shards": _SHARDS,
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "max_score": (max((h[1] for h in hits), default=None) if relevance else None),
                "hits": rendered,
            },
        }
        if not params["no_aggs"]:
            body["aggregations"] = self.world.aggregations(t, query)
        body["_meta"] = {
            "license": "CC0",
            "last_updated": received_text(latest) if latest else None,
            "last_indexed": received_text(indexed) if indexed else None,
            "total_record_count": total,
            "is_data_stale": _is_stale(latest, now),
            "is_narrative_stale": False,
            "has_data_issue": False,
            "break_points": _break_points(hits, size, params["frm"]) if page else {},
        }
        return Response.json(body)

    def _faulty(self, source: dict[str, Any]) -> dict[str, Any]:
        """`missing_fields`: a few complaints lose `complaint_id` or `date_received`."""
        if self.cfpb_faults.missing_fields:
            number = int(source["complaint_id"])
            if (number * 2654435761) % 2**32 % 23 == 0:
                del source["complaint_id" if number % 2 else "date_received"]
        return source


# --------------------------------------------------------------------------- validation


def _validate(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The search params as upstream's SearchInputSerializer reads them, and DRF's errors."""
    errors: dict[str, Any] = {}
    params: dict[str, Any] = {"include": {}, "exclude": {}}

    def integer(name: str, default: int, low: int, high: int) -> None:
        raw = request.arg(name)
        if raw is None:
            params[name] = default
            return
        try:
            value = int(raw.strip())
        except ValueError:
            errors[name] = ["A valid integer is required."]
            return
        if value < low:
            errors[name] = [f"Ensure this value is greater than or equal to {low}."]
        elif value > high:
            errors[name] = [f"Ensure this value is less than or equal to {high}."]
        else:
            params[name] = value

    def choice(name: str, default: str, options: tuple[str, ...]) -> None:
        raw = request.arg(name)
        if raw is None:
            params[name] = default
        elif raw in options:
            params[name] = raw
        else:
            errors[name] = [f'"{raw}" is not a valid choice.']

    def boolean(name: str) -> None:
        raw = request.arg(name)
        if raw is None or raw.lower() in _FALSE:
            params[name] = False
        elif raw.lower() in _TRUE:
            params[name] = True
        else:
            errors[name] = ["Must be a valid boolean."]

    def day(name: str) -> None:
        raw = request.arg(name)
        if raw is None:
            return
        try:
            params[name] = date.fromisoformat(raw.strip())
        except ValueError:
            errors[name] = ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]

    def text(name: str, limit: int = 200) -> None:
        raw = request.arg(name)
        if raw is None or raw == "":
            return
        if len(raw) > limit:
            errors[name] = [f"Ensure this field has no more than {limit} characters."]
        else:
            params[name] = raw

    integer("size", 25, 0, MAX_SIZE)
    integer("frm", 0, 0, MAX_FRM)
    integer("page", 1, 1, 10_000)
    choice("sort", "relevance_desc", SORTS)
    choice(
        "field", "complaint_what_happened", ("complaint_what_happened", "company", "all", "_all")
    )
    choice("format", "default", ("default", "json", "csv"))
    if params.get("format") in ("json", "csv"):
        errors["format"] = [f'"{params["format"]}" exports are not simulated.']
    boolean("no_aggs")
    boolean("no_highlight")
    for name in ("date_received_min", "date_received_max"):
        day(name)
    for name in ("company_received_min", "company_received_max"):
        day(name)
    text("search_term")
    text("search_after")
    for name in LIST_FIELDS:
        for prefix, target in (("", "include"), ("not_", "exclude")):
            values = [v for v in request.args(prefix + name) if v != ""]
            if not values:
                continue
            problem = _list_problem(name, values)
            if problem:
                errors[prefix + name] = problem
            else:
                params[target][name] = sorted(set(values))
    if not errors and params["size"] != 0 and params["frm"] % params["size"] != 0:
        errors["frm"] = ["frm is not zero or a multiple of size"]
    return params, errors


def _list_problem(name: str, values: list[str]) -> Any:
    if name == "state":
        bad = {str(i): [f'"{v}" is not a valid choice.'] for i, v in enumerate(values)}
        bad = {i: m for i, m in bad.items() if values[int(i)] not in STATE_CHOICES}
        return bad or None
    if name == "zip_code":
        bad = {}
        for i, v in enumerate(values):
            if len(v) < 5:
                bad[str(i)] = ["Ensure this field has at least 5 characters."]
            elif len(v) > 5:
                bad[str(i)] = ["Ensure this field has no more than 5 characters."]
        return bad or None
    if name in ("product", "issue") and any(v.count(DELIMITER) > 1 for v in values):
        label = name.capitalize()
        return [f'{label} is malformed, it needs to be "{name}" or "{name}{DELIMITER}sub{name}"']
    return None


def _parse_search_after(raw: str | None, sort: str) -> tuple | None:
    """Upstream's parse_search_after: anything it cannot read is silently ignored."""
    if not raw or "_" not in raw or len(raw.split("_")) != 2:
        return None
    value, id_ = raw.split("_")
    if sort.startswith("relevance"):
        try:
            return (float(value), id_)
        except ValueError:
            return None
    if not value.isdigit():
        return None
    return (int(value), id_)


def _first_after(keys: list[tuple], after: tuple, descending: bool) -> int:
    """The first index whose sort key comes strictly after `after` in the sort order."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if (keys[mid] < after) if descending else (keys[mid] > after):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _pagination_query_size(page: float, size: int) -> int:
    batch_ahead = PAGINATION_BATCH * 2
    batch_point = page * size
    if batch_point < PAGINATION_BATCH:
        return batch_ahead
    query_size = batch_ahead + PAGINATION_BATCH * math.ceil(batch_point / PAGINATION_BATCH)
    return min(query_size, MAX_PAGINATION_DEPTH)


def _break_points(hits: list, size: int, frm: int) -> dict[str, list]:
    """Upstream's `_meta.break_points`: the sort values where pages 2, 3, ... start,
    harvested from the top of the result (not from `search_after`)."""
    if not size or len(hits) <= size:
        return {}
    batch = hits[: _pagination_query_size(frm / size, size)]
    end_page = MAX_PAGINATION_DEPTH // size
    points: dict[str, list] = {}
    if size >= len(batch):
        return points
    page = 2
    points[str(page)] = list(batch[size - 1][0])
    rest = batch[size:]
    while page < end_page and len(rest) > size:
        page += 1
        points[str(page)] = list(rest[size - 1][0])
        rest = rest[size:]
    return points


def _is_stale(latest: date | None, now: datetime) -> bool:
    """Upstream's _is_data_stale: compares the formatted date with a YYYY-MM-DD string."""
    if latest is None:
        return True
    local = now.astimezone(EASTERN)
    weekday = local.weekday()
    delta = weekday if weekday > 3 else 6
    return received_text(latest) < (local - timedelta(days=delta)).strftime("%Y-%m-%d")


def _highlight(source: dict[str, Any], query: Query) -> dict[str, list[str]]:
    field = "company" if query.field == "company" else "complaint_what_happened"
    text = source.get(field) or ""
    for term in (query.search_term or "").split():
        lowered = text.lower()
        at = lowered.find(term.lower())
        if at >= 0:
            text = f"{text[:at]}<em>{text[at : at + len(term)]}</em>{text[at + len(term) :]}"
    return {field: [text]} if "<em>" in text else {}


# --------------------------------------------------------------------------- answers


def _header(request: Request, name: str) -> str | None:
    wanted = name.lower()
    for key, value in request.headers.items():
        if key.lower() == wanted:
            return value
    return None


def _client(request: Request) -> str:
    """DRF's ident: the first X-Forwarded-For address, else the peer (always local here)."""
    forwarded = _header(request, "X-Forwarded-For")
    return forwarded.split(",")[0].strip() if forwarded else "127.0.0.1"


def _throttled(wait: int) -> Response:
    unit = "second" if wait == 1 else "seconds"
    detail = f"Request was throttled. Expected available in {wait} {unit}."
    return Response.json({"detail": detail}, status=429, **{"Retry-After": str(wait)})


_EDGE_HTML = (
    "<HTML><HEAD>\n<TITLE>{reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
    "The server is temporarily unable to service your request.<P>\n"
    "Reference&#32;&#35;18&#46;5c2a1502&#46;1710522000&#46;1f2e3d4c\n</BODY>\n</HTML>\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _injected(response: Response) -> Response:
    """A base fault's generic body in the shape this API would send for that status."""
    status = response.status
    if status == 429:
        return _throttled(int(response.headers.get("Retry-After", "1")))
    if status == 424:
        return Response.json({"error": "There was an error calling OpenSearch"}, status=424)
    if status in _REASONS:  # the CDN in front answers, in HTML
        html = _EDGE_HTML.format(reason=_REASONS[status])
        return Response(status, html.encode(), {"Content-Type": "text/html"})
    if status >= 500:
        return Response.json({"error": "There was a problem retrieving your request"}, status)
    return Response.json({"detail": "Bad request."}, status=status)


def _malform(body: bytes) -> bytes:
    """The same bytes with one comma dropped: complete, but not JSON any more."""
    for marker in (b', "hits": ', b', "_meta": ', b", "):
        at = body.find(marker)
        if at >= 0:
            return body[:at] + body[at + 1 :]
    return body + b"}"


@stand_in("CFPB complaint search simulator", unless="CFPB_BASE_URL")
def _local_cfpb(stack: LocalStack) -> str:
    today = datetime.now(UTC).date()
    cfpb = CfpbSimulator(
        world=CfpbWorld(start=today - timedelta(days=stack.demo_backfill_days)),
        search_rate_per_minute=600,
        live=True,
    ).start()
    stack.on_stop(cfpb.stop)
    stack.export(CFPB_BASE_URL=f"{cfpb.url}{SEARCH_PATH}")
    stack.default(
        CFPB_RATE_LIMIT_PER_MINUTE="600",
        CFPB_BACKFILL_START=(today - timedelta(days=30)).isoformat(),
    )
    return f"{cfpb.url}{SEARCH_PATH}"
