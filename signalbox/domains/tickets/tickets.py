"""A customer ticket: the message on the topic, its validation, and its routing to a team.

On the wire a ticket is one JSON object, keyed by its ticket id:
`{"ticket_id", "client_id", "request_type", "priority", "created_at", "text"}`.
A message that is not such an object (not JSON, a field missing or of the wrong type, an
unknown priority, too large) is rejected with a reason and goes to the dead-letter path;
an unknown request type is not an error, it goes to the routing's default team.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import orjson
import yaml

PRIORITIES = ("low", "medium", "high", "urgent")
REQUIRED = ("ticket_id", "client_id", "request_type", "priority", "created_at")
MAX_MESSAGE_BYTES = 64 * 1024  # a ticket is a few hundred bytes; anything this big is not one
ROUTING_FILE = Path(__file__).with_name("routing.yaml")


class Rejected(ValueError):
    """A message that is not a valid ticket; `reason` is short and stable (for grouping)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    client_id: int
    request_type: str
    priority: str
    created_at: datetime
    text: str

    def to_json(self) -> bytes:
        fields = {
            "ticket_id": self.ticket_id,
            "client_id": self.client_id,
            "request_type": self.request_type,
            "priority": self.priority,
            "created_at": _iso(self.created_at),
            "text": self.text,
        }
        return orjson.dumps(fields)


@dataclass(frozen=True)
class Routing:
    teams: Mapping[str, str]  # request type -> team
    default_team: str

    def team(self, request_type: str) -> str:
        return self.teams.get(request_type, self.default_team)

    def known(self, request_type: str) -> bool:
        return request_type in self.teams

    @classmethod
    def load(cls, path: Path = ROUTING_FILE) -> Routing:
        document = yaml.safe_load(path.read_text()) or {}
        teams = document.get("teams") or {}
        default = document.get("default_team")
        if not isinstance(teams, dict) or not isinstance(default, str) or not default:
            raise ValueError(f"{path}: needs `default_team: <team>` and a `teams:` mapping")
        return cls({str(k): str(v) for k, v in teams.items()}, default)


@cache
def default_routing() -> Routing:
    return Routing.load()


def parse(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> Ticket:
    """The ticket in a message's value, or `Rejected` saying why it is not one."""
    if value is None:
        raise Rejected("empty", "the message has no value")
    if len(value) > max_bytes:
        raise Rejected("oversized", f"{len(value)} bytes > {max_bytes}")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
        raise Rejected("not_json", str(exc)[:200]) from None
    if not isinstance(document, dict):
        raise Rejected("not_an_object", type(document).__name__)
    values = tuple(map(document.get, REQUIRED))
    if None in values or "" in values:  # checked in C; names listed only for a rejection
        missing = [f for f, v in zip(REQUIRED, values, strict=True) if v is None or v == ""]
        raise Rejected("missing_fields", ", ".join(missing))
    ticket_id, client_id = document["ticket_id"], document["client_id"]
    if not isinstance(ticket_id, str) or len(ticket_id) > 64:
        raise Rejected("bad_field", "ticket_id must be a string of at most 64 characters")
    if isinstance(client_id, bool) or not isinstance(client_id, int):
        raise Rejected("bad_field", f"client_id must be an integer, got {client_id!r}"[:200])
    request_type, priority = document["request_type"], document["priority"]
    if not isinstance(request_type, str) or len(request_type) > 64:
        raise Rejected("bad_field", "request_type must be a string of at most 64 characters")
    if priority not in PRIORITIES:
        raise Rejected(
            "unknown_priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}"[:200]
        )
    try:
        created_at = datetime.fromisoformat(str(document["created_at"]))
    except ValueError:
        raise Rejected(
            "bad_field", f"created_at is not an ISO time: {document['created_at']!r}"[:200]
        ) from None
    if created_at.tzinfo is None:
        raise Rejected("bad_field", "created_at has no time zone")
    text = document.get("text") or ""
    if not isinstance(text, str):
        raise Rejected("bad_field", "text must be a string")
    return Ticket(ticket_id, client_id, request_type, priority, created_at.astimezone(UTC), text)


# --------------------------------------------------------------------------- generating

_TEXTS = {
    "technical_issue": [
        "The dashboard shows an error after login",
        "Sensor readings stopped updating",
    ],
    "bug_report": ["Export to CSV drops the last column", "Chart legend overlaps the values"],
    "outage": ["The API returns 503 for every call", "Nothing loads since this morning"],
    "billing": ["I was charged twice this month", "The invoice shows the wrong VAT number"],
    "refund": ["Please refund the unused licences", "Refund for the cancelled order"],
    "account_access": ["I cannot reset my password", "Please add a user to our account"],
    "data_request": ["Send me all data you hold about me", "Delete the data of a former employee"],
    "feature_request": ["Please add a dark mode", "We need an hourly export"],
}
# the seed's producer drew each field uniformly; the weights make the dashboards readable
_REQUEST_WEIGHTS = {"technical_issue": 30, "bug_report": 15, "outage": 3, "billing": 15,
                    "refund": 6, "account_access": 14, "data_request": 4, "feature_request": 10,
                    "other": 3}  # fmt: skip
_PRIORITY_WEIGHTS = {"low": 40, "medium": 35, "high": 20, "urgent": 5}


def generate(
    count: int, *, seed: int | None = None, now: datetime | None = None
) -> Iterator[Ticket]:
    """`count` tickets as the seed's producer made them (random client, request type,
    priority), created now; `seed` makes them repeatable."""
    rng = random.Random(seed)
    types, type_weights = zip(*_REQUEST_WEIGHTS.items(), strict=True)
    priorities, priority_weights = zip(*_PRIORITY_WEIGHTS.items(), strict=True)
    for _ in range(count):
        request_type = rng.choices(types, type_weights)[0]
        created = (now or datetime.now(UTC)) - timedelta(milliseconds=rng.randint(0, 50))
        yield Ticket(
            ticket_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            client_id=rng.randint(1, 5000),
            request_type=request_type,
            priority=rng.choices(priorities, priority_weights)[0],
            created_at=created,
            text=rng.choice(_TEXTS.get(request_type, ["Something else entirely"])),
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
