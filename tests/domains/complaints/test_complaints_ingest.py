"""The incremental CFPB pull against the simulator over HTTP and the embedded PostgreSQL:
the window rule, what is fetched and stored, late publications, updates, duplicates."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from complaints_helpers import NOW, resource_for

from signalbox.domains.complaints.cfpb import DayWindow, received_day, search_after_value
from signalbox.domains.complaints.ingest import (
    COMPLAINTS,
    crawl_complaints,
    crawl_start,
    day_windows,
)
from signalbox.simulators.cfpb import SEARCH_PATH
from signalbox.simulators.cfpb_world import sort_millis


def crawl(cfpb, warehouse, **kwargs):
    client = cfpb.client()
    result = crawl_complaints(
        client,
        warehouse,
        lookback_days=kwargs.pop("lookback_days", cfpb.lookback_days),
        backfill_start=cfpb.backfill_start_date(),
        backfill_days=cfpb.backfill_days,
        window_days=cfpb.window_days,
        **kwargs,
    )
    return result, client


def stored(warehouse) -> dict[str, dict]:
    return dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))


def snapshot(warehouse):
    return warehouse.query(
        f"SELECT complaint_id, payload_md5, first_loaded_at, loaded_at FROM {COMPLAINTS.name}"
        " ORDER BY complaint_id"
    )


def expected(sim, since: date, at=None) -> dict[str, dict]:
    return {c["complaint_id"]: c for c in sim.world.complaints(since, None, at=at or sim.now)}


def searches(sim):
    return [r for r in sim.requests if r.path == SEARCH_PATH]


# --------------------------------------------------------------------------- pure logic


def test_window_start_rule():
    stored_max, backfill = date(2024, 3, 15), date(2024, 3, 4)
    rule = dict(lookback_days=16, backfill_days=30, newest=date(2024, 3, 20))
    # with data: the newest stored date received minus the lookback ...
    assert crawl_start(stored_max, backfill_start=None, **rule) == date(2024, 2, 28)
    # ... never before the backfill start
    assert crawl_start(stored_max, backfill_start=backfill, **rule) == backfill
    # first run: the backfill start, else backfill_days before the newest complaint
    assert crawl_start(None, backfill_start=backfill, **rule) == backfill
    assert crawl_start(None, backfill_start=None, **rule) == date(2024, 2, 19)
    assert crawl_start(None, backfill_start=None, **{**rule, "newest": None}) is None
    with pytest.raises(ValueError):
        crawl_start(stored_max, backfill_start=None, **{**rule, "lookback_days": -1})


def test_day_windows_and_paging_values():
    windows = day_windows(date(2024, 2, 28), date(2024, 3, 2))
    assert [w.params() for w in windows][0] == {
        "date_received_min": "2024-02-28",
        "date_received_max": "2024-02-29",  # exclusive: one day
    }
    assert [w.label for w in windows] == ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
    three = day_windows(date(2024, 2, 28), date(2024, 3, 2), days=3)
    assert three == [
        DayWindow(date(2024, 2, 28), date(2024, 3, 2)),
        DayWindow(date(2024, 3, 2), date(2024, 3, 3)),
    ]
    assert three[0].label == "2024-02-28..2024-03-01"
    assert day_windows(date(2024, 3, 2), date(2024, 3, 1)) == []
    with pytest.raises(ValueError):
        day_windows(date(2024, 3, 1), date(2024, 3, 2), days=0)

    assert search_after_value([1529686800000, "2943267"]) == "1529686800000_2943267"
    assert search_after_value([1.5e12, "7"]) == "1500000000000_7"
    for bad in (None, [], [1, "2", 3], ["x", "1"], [True, "1"], [1.5, "1"], [1, ""], [1, "a_b"]):
        assert search_after_value(bad) is None, bad
    assert received_day("2018-06-22T12:00:00-05:00") == date(2018, 6, 22)
    for bad in (None, "", "2018-13-01T12:00:00-05:00", "22/06/2018", 20180622):
        assert received_day(bad) is None


# --------------------------------------------------------------------------- crawls


def test_first_crawl_stores_every_complaint_verbatim(cfpb_sim, cfpb, warehouse):
    result, client = crawl(cfpb, warehouse)
    want = expected(cfpb_sim, date(2024, 3, 4))
    assert stored(warehouse) == want  # payload for payload, unknown fields included
    assert result.inserted == result.received == len(want) and result.updated == 0
    assert (result.start, result.end) == (date(2024, 3, 4), date(2024, 3, 15))
    assert warehouse.scalar(f"SELECT max(date_received) FROM {COMPLAINTS.name}") == result.end

    # one probe, then per day: floor(n / 100) + 1 pages (a short page ends the day)
    per_day = Counter(c["date_received"][:10] for c in want.values())
    assert result.windows == 12 and result.pages == sum(n // 100 + 1 for n in per_day.values())
    requests = searches(cfpb_sim)
    assert len(requests) == client.http.stats.requests == result.pages + 1
    probe, pages = requests[0].query, [r.query for r in requests[1:]]
    assert probe["size"] == ["1"] and probe["sort"] == ["created_date_desc"]
    for query in pages:
        assert query["sort"] == ["created_date_asc"] and query["size"] == ["100"]
        assert query["no_aggs"] == ["true"] and "frm" not in query
        day = date.fromisoformat(query["date_received_min"][0])
        assert query["date_received_max"] == [(day + timedelta(days=1)).isoformat()]
    # a day's second page continues after its first page's last hit
    followers = [q for q in pages if "search_after" in q]
    assert len(followers) == sum(n // 100 for n in per_day.values()) > 0
    day = followers[0]["date_received_min"][0]
    ids = sorted(c for c, v in want.items() if v["date_received"].startswith(day))
    assert followers[0]["search_after"] == [
        f"{sort_millis(date.fromisoformat(day))}_{ids[99]}"
    ]  # ties sort by id (as strings)


def test_rerun_changes_nothing(cfpb_sim, cfpb, warehouse):
    crawl(cfpb, warehouse)
    before = snapshot(warehouse)
    again, _ = crawl(cfpb, warehouse)
    assert snapshot(warehouse) == before  # not even loaded_at moved
    assert again.inserted == again.updated == 0 and again.unchanged == again.received > 0


def test_lookback_catches_late_published_complaints(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start="2024-02-05")
    cfpb_sim.now = NOW - timedelta(days=14)
    first, _ = crawl(cfpb, warehouse)
    assert first.end == date(2024, 3, 1)
    before = set(stored(warehouse))

    cfpb_sim.now = NOW
    cfpb_sim.reset_log()
    second, _ = crawl(cfpb, warehouse)
    # the next window starts at the newest stored date received minus 16 days
    assert second.start == date(2024, 2, 14)
    assert searches(cfpb_sim)[0].query["date_received_min"] == ["2024-02-14"]
    have = stored(warehouse)
    want = expected(cfpb_sim, date(2024, 2, 5))
    assert set(have) == set(want)  # nothing published late is missing
    late = {cid for cid in set(have) - before if want[cid]["date_received"][:10] < "2024-03-01"}
    assert second.late_published == len(late) > 20
    # the re-read days are as the API shows them now (company responses included)
    recent = {cid: v for cid, v in want.items() if v["date_received"][:10] >= "2024-02-14"}
    assert {cid: have[cid] for cid in recent} == recent
    assert second.updated > 0  # answers arrived for complaints stored as "In progress"


def test_without_a_lookback_late_complaints_are_lost(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start="2024-02-20", lookback_days=0)
    cfpb_sim.now = NOW - timedelta(days=7)
    crawl(cfpb, warehouse)
    cfpb_sim.now = NOW
    crawl(cfpb, warehouse)
    missing = set(expected(cfpb_sim, date(2024, 2, 20))) - set(stored(warehouse))
    assert len(missing) > 10  # why the default lookback is 16 days


def test_updated_complaints_are_replaced(cfpb_sim, cfpb, warehouse):
    crawl(cfpb, warehouse)
    before = {row[0]: row for row in snapshot(warehouse)}
    targets = sorted(before)[:3]
    cfpb_sim.update(targets, at=NOW, tags="Servicemember", company_response="Closed")
    result, _ = crawl(cfpb, warehouse)
    assert (result.inserted, result.updated) == (0, 3)
    after = {row[0]: row for row in snapshot(warehouse)}
    assert after.keys() == before.keys()  # still one row per complaint
    for cid in targets:
        payload = stored(warehouse)[cid]
        assert payload == cfpb_sim.world.complaint(cid, NOW)
        assert payload["company_response"] == "Closed" and payload["tags"] == "Servicemember"
        assert after[cid][2] == before[cid][2]  # first_loaded_at kept
        assert after[cid][3] > before[cid][3]  # loaded_at moved
    untouched = set(before) - set(targets)
    assert all(after[cid] == before[cid] for cid in untouched)


def test_duplicates_across_pages_are_stored_once(cfpb_sim, cfpb, warehouse):
    cfpb_sim.faults.duplicate_across_pages = True
    result, _ = crawl(cfpb, warehouse)
    continued = sum(1 for r in searches(cfpb_sim) if "search_after" in r.query)
    assert result.repeated == continued > 0  # each continued page repeated one hit
    want = expected(cfpb_sim, date(2024, 3, 4))
    assert stored(warehouse) == want
    assert result.inserted == len(want) == result.received - result.repeated
    assert (
        warehouse.scalar(f"SELECT count(*) - count(DISTINCT complaint_id) FROM {COMPLAINTS.name}")
        == 0
    )


def test_a_chosen_range_is_refetched(cfpb_sim, cfpb, warehouse):
    crawl(cfpb, warehouse)
    cfpb_sim.reset_log()
    result, _ = crawl(cfpb, warehouse, start=date(2024, 2, 1), end=date(2024, 2, 3))
    assert (result.start, result.end, result.windows) == (date(2024, 2, 1), date(2024, 2, 3), 3)
    assert result.inserted == len(
        cfpb_sim.world.complaints(date(2024, 2, 1), date(2024, 2, 4), at=NOW)
    )
    days = {r.query.get("date_received_min", [""])[0] for r in searches(cfpb_sim)[1:]}
    assert days == {"2024-02-01", "2024-02-02", "2024-02-03"}
