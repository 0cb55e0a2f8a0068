"""A ticket on the wire: what is valid, why the rest is rejected, where each is routed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from signalbox.domains.tickets.tickets import (
    PRIORITIES,
    Rejected,
    Routing,
    default_routing,
    generate,
    parse,
)

GOOD = {
    "ticket_id": "t-1",
    "client_id": 42,
    "request_type": "billing",
    "priority": "high",
    "created_at": "2026-12-04T10:00:00.123Z",
    "text": "charged twice",
}


def encode(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_generated_ticket_survives_the_wire():
    for ticket in generate(50, seed=1):
        assert parse(ticket.to_json()) == ticket.__class__(
            **{**ticket.__dict__, "created_at": ticket.created_at.replace(
                microsecond=ticket.created_at.microsecond // 1000 * 1000)}
        )  # fmt: skip
        assert ticket.priority in PRIORITIES


def test_generation_is_repeatable_with_a_seed():
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert list(generate(5, seed=7, now=now)) == list(generate(5, seed=7, now=now))
    assert len({t.ticket_id for t in generate(1000, seed=3)}) == 1000


def test_a_valid_message_parses_to_utc():
    ticket = parse(encode(created_at="2026-12-04T13:00:00+03:00"))
    assert ticket.created_at == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert (ticket.ticket_id, ticket.client_id, ticket.priority) == ("t-1", 42, "high")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"{not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "client_id"}).encode(),
            "missing_fields",
        ),
        (encode(priority=""), "missing_fields"),
        (encode(priority="whenever"), "unknown_priority"),
        (encode(client_id="42"), "bad_field"),
        (encode(client_id=True), "bad_field"),
        (encode(created_at="yesterday"), "bad_field"),
        (encode(created_at="2026-12-04T10:00:00"), "bad_field"),
        (encode(text=["a"]), "bad_field"),
        (encode(text="x" * 70_000), "oversized"),
    ],
)
def test_what_is_not_a_ticket_is_rejected_with_a_reason(value, reason):
    with pytest.raises(Rejected) as rejected:
        parse(value)
    assert rejected.value.reason == reason


def test_an_unknown_request_type_goes_to_the_default_team_not_to_the_dead_letters():
    routing = default_routing()
    ticket = parse(encode(request_type="pigeon_post"))
    assert routing.team(ticket.request_type) == routing.default_team == "general_support"
    assert not routing.known("pigeon_post")
    assert routing.team("billing") == "billing"


def test_the_routing_file_is_checked(tmp_path):
    bad = tmp_path / "routing.yaml"
    bad.write_text("teams: {a: b}\n")
    with pytest.raises(ValueError, match="default_team"):
        Routing.load(bad)


class FakeMessage:
    def __init__(self, partition: int, offset: int):
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def test_offsets_a_broker_sends_again_are_taken_once():
    """A broker may send fetched ranges again (Tansu does); the processor takes each offset
    once per assignment, in order, and counts what it dropped."""
    from signalbox.domains.tickets.process import TicketProcessor

    processor = TicketProcessor.__new__(TicketProcessor)
    processor._next_offset, processor.skipped_repeats = {}, 0
    first = processor._unseen([FakeMessage(p, o) for p, o in [(0, 0), (0, 1), (1, 7)]])
    again = processor._unseen(
        [FakeMessage(p, o) for p, o in [(0, 0), (0, 1), (0, 2), (1, 7), (1, 8), (0, 2)]]
    )
    assert [(m.partition(), m.offset()) for m in first] == [(0, 0), (0, 1), (1, 7)]
    assert [(m.partition(), m.offset()) for m in again] == [(0, 2), (1, 8)]
    assert processor.skipped_repeats == 4
