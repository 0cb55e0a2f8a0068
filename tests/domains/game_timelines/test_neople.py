"""The Neople client and resource against the simulator over HTTP: character lists, paging a
KST day with `next`, Neople's error codes, and the API key kept out of errors and logs."""

from __future__ import annotations

import logging
from datetime import date, datetime

import dagster as dg
import pytest
from game_timelines_support import DAYS, NOW

from signalbox.domains.game_timelines.neople import (
    Character,
    CharacterRef,
    NeopleResource,
    NeopleTimelineError,
    day_bounds,
    parse_characters,
    parse_error_body,
)
from signalbox.simulators.neople import DEFAULT_API_KEY

ID = "0123456789abcdef0123456789abcdef"


def test_character_list_format():
    refs = parse_characters(f" cain:{ID}, siroco:붉은여우\nPREY:새벽검객,\n")
    assert refs == [
        CharacterRef("cain", character_id=ID),
        CharacterRef("siroco", character_name="붉은여우"),
        CharacterRef("prey", character_name="새벽검객"),
    ]
    for bad in ("cain", "cain:", ":abc", "ca in:x"):
        with pytest.raises(ValueError, match="serverId:characterId"):
            parse_characters(bad)
    with pytest.raises(ValueError, match="listed twice"):
        parse_characters("cain:a,cain:a")
    with pytest.raises(ValueError, match="empty"):
        parse_characters(" , ")


def test_day_bounds_cover_the_kst_day_inclusively():
    assert day_bounds(date(2026, 11, 16)) == ("2026-11-16 00:00", "2026-11-16 23:59")


def test_error_bodies():
    body = b'{"error":{"status":503,"code":"DNF980","message":"SYSTEM_INSPECT"}}'
    assert parse_error_body(body) == ("DNF980", "SYSTEM_INSPECT")
    assert parse_error_body(b"<html>502 Bad Gateway</html>") is None
    assert parse_error_body(b'{"error":"injected fault"}') is None


def resource(sim, **fields) -> NeopleResource:
    return NeopleResource(
        **{
            "base_url": sim.url,
            "api_key": DEFAULT_API_KEY,
            "characters": "cain:unused",
            "rate_limit_per_minute": None,
            "backoff_base_seconds": 0.01,
            "max_attempts": 2,
            **fields,
        }
    )


def test_a_day_is_paged_with_next_and_matches_the_world(neople_sim, world):
    spec = max(world.specs, key=lambda s: len(_day(world, s.character_id, DAYS[2])))
    client = resource(neople_sim, page_limit=10).client()
    character = Character(spec.server_id, spec.character_id)
    pages = list(client.timeline_day(character, DAYS[2]))
    rows = [row for page in pages for row in page.rows]
    assert rows == _day(world, spec.character_id, DAYS[2])
    assert len(pages) == -(-len(rows) // 10) > 2
    assert pages[0].profile["characterName"] == spec.character_name
    requests = [r for r in neople_sim.requests if r.path.endswith("/timeline")]
    assert len(requests) == len(pages)
    for request in requests:  # the window is re-sent with every `next`
        assert request.query["startDate"] == ["2026-11-19 00:00"]
        assert request.query["endDate"] == ["2026-11-19 23:59"]
        assert request.query["limit"] == ["10"]
        assert request.query["apikey"] == [DEFAULT_API_KEY]
    assert "next" not in requests[0].query and all("next" in r.query for r in requests[1:])


def test_names_are_resolved_with_the_search(neople_sim, world):
    spec = world.specs[3]
    client = resource(neople_sim).client()
    refs = parse_characters(f"{spec.server_id}:{spec.character_name},cain:{ID}")
    assert client.resolve(refs) == [
        Character(spec.server_id, spec.character_id, spec.character_name),
        Character("cain", ID),
    ]
    with pytest.raises(ValueError, match="no character named '없음' on server 'prey'"):
        client.resolve(parse_characters("prey:없음"))
    with pytest.raises(ValueError, match="same character twice"):
        client.resolve(parse_characters(f"{spec.server_id}:{spec.character_name},"
                                        f"{spec.server_id}:{spec.character_id}"))  # fmt: skip


def test_neople_errors_name_the_code_the_character_and_the_day(neople_sim):
    client = resource(neople_sim).client()
    with pytest.raises(NeopleTimelineError) as caught:
        list(client.timeline_day(Character("cain", ID, "유령"), DAYS[0]))
    error = caught.value
    assert error.code == "DNF001" and error.page == 1 and error.day == DAYS[0]
    text = str(error)
    assert f"cain:{ID} (유령)" in text and "KST day 2026-11-16" in text
    assert "DNF001 NOT_FOUND_CHARACTER (character not found (check NEOPLE_CHARACTERS))" in text
    assert "HTTP 404" in text and "apikey=" not in text
    assert len(neople_sim.requests) == 1  # fatal at once


def test_the_api_key_never_reaches_errors_or_logs(neople_sim, world, caplog):
    spec = world.specs[0]
    character = Character(spec.server_id, spec.character_id)
    neople_sim.faults.truncate_next = 10  # malformed JSON: the error shows the URL
    client = resource(neople_sim).client()
    with caplog.at_level(logging.DEBUG), pytest.raises(NeopleTimelineError) as caught:
        list(client.timeline_day(character, DAYS[0]))
    assert "malformed JSON" in str(caught.value) and "apikey=***" in str(caught.value)
    assert DEFAULT_API_KEY not in str(caught.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/timeline" in logged  # urllib3's request lines were logged ...
    assert DEFAULT_API_KEY not in logged  # ... without the key
    assert "signalbox-demo-key" not in repr(resource(neople_sim))


def test_resource_from_env(monkeypatch):
    monkeypatch.setenv("NEOPLE_API_KEY", "k-123456")
    monkeypatch.setenv("NEOPLE_CHARACTERS", "cain:검은달빛")
    monkeypatch.setenv("NEOPLE_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("NEOPLE_RATE_LIMIT_PER_MINUTE", "120")
    made = NeopleResource.from_env()
    assert isinstance(made.api_key, dg.EnvVar) and made.api_key.env_var_name == "NEOPLE_API_KEY"
    ready = made.process_config_and_initialize()
    assert (ready.api_key, ready.base_url, ready.rate_limit_per_minute) == (
        "k-123456",
        "http://127.0.0.1:1",
        120,
    )
    assert ready.character_refs() == [CharacterRef("cain", character_name="검은달빛")]


def _day(world, character_id: str, day: date) -> list[dict]:
    start = datetime(day.year, day.month, day.day, 0, 0)
    end = datetime(day.year, day.month, day.day, 23, 59)
    return world.timeline(character_id, start, end, now=NOW)
