"""The CFPB complaint search simulator over plain HTTP, and the world behind it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from clocks import FakeClock

from signalbox.simulators.cfpb import SEARCH_PATH, CfpbFaults, CfpbSimulator
from signalbox.simulators.cfpb_world import IN_PROGRESS, CfpbWorld, sort_millis

NOW = datetime(2024, 3, 15, 17, 0, tzinfo=UTC)  # noon in Washington
START = date(2024, 1, 1)
WEEK = {"date_received_min": "2024-03-04", "date_received_max": "2024-03-11"}
INGEST = {"sort": "created_date_asc", "no_aggs": "true", "size": 100}
RECEIVED = re.compile(r"^\d{4}-\d\d-\d\dT12:00:00-05:00$")
SOURCE_FIELDS = [
    "complaint_id", "date_received", "date_sent_to_company", "product", "sub_product", "issue",
    "sub_issue", "company", "state", "zip_code", "submitted_via", "company_response",
    "company_public_response", "timely", "tags", "has_narrative", "complaint_what_happened",
]  # fmt: skip


@pytest.fixture(scope="module")
def world() -> CfpbWorld:
    return CfpbWorld(seed=7, start=START)


@pytest.fixture(scope="module")
def sim(world):
    with CfpbSimulator(world, now=NOW, search_rate_per_minute=100_000) as server:
        server.document_throttle.rate = 100_000
        yield server


@pytest.fixture
def api(sim):
    sim.now = NOW
    sim.faults = CfpbFaults()
    session = requests.Session()

    def get(path: str = "", **params):
        return session.get(f"{sim.url}{SEARCH_PATH}{path}", params=params, timeout=30)

    return get


def walk(api, **params) -> tuple[list[dict], list[dict]]:
    """Every page by search_after from each page's last hit: (hits, bodies)."""
    bodies, after = [], None
    while True:
        extra = {"search_after": after} if after else {}
        body = api(**params, **extra).json()
        bodies.append(body)
        hits = body["hits"]["hits"]
        if len(hits) < int(params.get("size", 25)):
            return [h for b in bodies for h in b["hits"]["hits"]], bodies
        after = "_".join(str(v) for v in hits[-1]["sort"])


def ids(hits: list[dict]) -> list[str]:
    return [h["_id"] for h in hits]


def expected(world, date_min: str, date_max: str, at: datetime = NOW) -> list[dict]:
    return world.complaints(date.fromisoformat(date_min), date.fromisoformat(date_max), at=at)


# --------------------------------------------------------------------------- shape


def test_search_body_shape(api):
    response = api()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Date"] == "Fri, 15 Mar 2024 17:00:00 GMT"  # the simulator's clock
    body = response.json()
    assert list(body) == ["took", "timed_out", "_shards", "hits", "aggregations", "_meta"]
    assert body["timed_out"] is False and isinstance(body["took"], int)
    total = body["hits"]["total"]
    assert total["relation"] == "eq" and total["value"] > 15_000
    assert body["hits"]["max_score"] == 1.0
    hits = body["hits"]["hits"]
    assert len(hits) == 25  # the default size
    for hit in hits:
        assert list(hit) == ["_index", "_id", "_score", "_source", "sort"]
        assert hit["_index"] == "complaint-public-v2" and hit["_score"] == 1.0
        source = hit["_source"]
        assert list(source) == SOURCE_FIELDS
        assert source["complaint_id"] == hit["_id"] and hit["sort"] == [1.0, hit["_id"]]
        assert RECEIVED.match(source["date_received"])
        assert RECEIVED.match(source["date_sent_to_company"])
        assert source["date_sent_to_company"] >= source["date_received"]
        assert source["zip_code"] is None or re.match(r"^\d{3}XX$", source["zip_code"])
        assert source["timely"] in ("Yes", "No")
        assert source["has_narrative"] == bool(source["complaint_what_happened"])
    assert ids(hits) == sorted(ids(hits), reverse=True)  # equal scores: _id descending
    meta = body["_meta"]
    assert meta["license"] == "CC0" and meta["total_record_count"] == total["value"]
    assert meta["last_updated"] == "2024-03-15T12:00:00-05:00"
    assert meta["is_data_stale"] is False and meta["has_data_issue"] is False
    assert meta["break_points"]["2"] == hits[-1]["sort"]
    product = body["aggregations"]["product"]
    assert product["doc_count"] == total["value"]
    buckets = product["product"]["buckets"]
    assert buckets[0]["key"] == "Credit reporting or other personal consumer reports"
    assert (
        sum(b["doc_count"] for b in buckets) + product["product"]["sum_other_doc_count"]
        == (total["value"])
    )


def test_no_aggs_and_sort_values(api):
    body = api(**WEEK, **INGEST).json()
    assert "aggregations" not in body
    assert body["hits"]["max_score"] is None
    for hit in body["hits"]["hits"]:
        assert hit["_score"] is None
        day = date.fromisoformat(hit["_source"]["date_received"][:10])
        assert hit["sort"] == [sort_millis(day), hit["_id"]]
    assert sort_millis(date(2018, 6, 22)) == 1529686800000  # the contract's example


def test_document_endpoint(api, world):
    one = expected(world, "2024-03-04", "2024-03-05")[7]
    body = api(one["complaint_id"]).json()
    assert body["hits"]["total"] == {"value": 1, "relation": "eq"}
    hit = body["hits"]["hits"][0]
    assert hit["_id"] == one["complaint_id"] and hit["_source"] == one
    assert api(one["complaint_id"] + "/").json()["hits"]["hits"][0]["_id"] == one["complaint_id"]
    assert api("1").json()["hits"]["hits"] == []
    assert api("not-a-number").json()["hits"]["total"]["value"] == 0


# --------------------------------------------------------------------------- paging


def test_search_after_pages_ascending_and_descending(api, world):
    truth = expected(world, WEEK["date_received_min"], WEEK["date_received_max"])
    assert len(truth) > 1500
    hits, bodies = walk(api, **WEEK, **INGEST)
    assert ids(hits) == [c["complaint_id"] for c in truth]
    assert [h["_source"] for h in hits] == truth
    assert all(b["hits"]["total"]["value"] == len(truth) for b in bodies)
    down, _ = walk(api, **WEEK, **{**INGEST, "sort": "created_date_desc"})
    assert ids(down) == ids(hits)[::-1]
    days = [h["_source"]["date_received"] for h in down]
    assert days == sorted(days, reverse=True)


def test_relevance_sorts_page_too(api, world):
    day = {"date_received_min": "2024-03-06", "date_received_max": "2024-03-07"}
    truth = [c["complaint_id"] for c in expected(world, *day.values())]
    hits, _ = walk(api, **day, size=50, no_aggs="true")  # relevance_desc: ids descending
    assert ids(hits) == sorted(truth, reverse=True)
    up, _ = walk(api, **day, size=50, sort="relevance_asc", no_aggs="true")
    assert ids(up) == sorted(truth)


def test_frm_is_validated_but_not_an_offset(api):
    first = api(**WEEK, size=25).json()
    third = api(**WEEK, size=25, frm=50).json()
    assert ids(third["hits"]["hits"]) == ids(first["hits"]["hits"])  # the same page again
    bad = api(**WEEK, size=25, frm=30)
    assert bad.status_code == 400
    assert bad.json() == {"frm": ["frm is not zero or a multiple of size"]}
    assert api(size=25, frm=10_025).json() == {
        "frm": ["Ensure this value is less than or equal to 10000."]
    }
    # break points: where pages 2, 3, ... start, from the top of the result
    points = third["_meta"]["break_points"]
    hits, _ = walk(api, **WEEK, size=25)
    assert points["2"] == hits[24]["sort"] and points["3"] == hits[49]["sort"]
    assert len(api(**WEEK, size=25, frm=2500).json()["_meta"]["break_points"]) > len(points)


def test_bad_search_after_is_ignored_like_upstream(api):
    first = ids(api(**WEEK, **INGEST).json()["hits"]["hits"])
    for junk in ("garbage", "1.5_123", "1_2_3", "_"):
        assert ids(api(**WEEK, **INGEST, search_after=junk).json()["hits"]["hits"]) == first
    too_long = api(**WEEK, **INGEST, search_after="1" * 201)
    assert too_long.status_code == 400 and "search_after" in too_long.json()


def test_date_range_is_min_inclusive_max_exclusive(api, world):
    one_day = api(date_received_min="2024-03-05", date_received_max="2024-03-06", **INGEST)
    body = one_day.json()
    assert body["hits"]["total"]["value"] == len(expected(world, "2024-03-05", "2024-03-06"))
    assert {h["_source"]["date_received"][:10] for h in body["hits"]["hits"]} == {"2024-03-05"}
    empty = api(date_received_min="2024-03-05", date_received_max="2024-03-05", **INGEST).json()
    assert empty["hits"]["total"]["value"] == 0 and empty["hits"]["hits"] == []
    assert empty["_meta"]["break_points"] == {}


# --------------------------------------------------------------------------- filters


def test_multi_value_filters(api, world):
    truth = expected(world, WEEK["date_received_min"], WEEK["date_received_max"])
    companies = ("EQUIFAX, INC.", "CAPITAL ONE FINANCIAL CORPORATION")
    cases = [
        ({"state": ["CA", "TX"]}, lambda c: c["state"] in ("CA", "TX")),
        ({"company": list(companies)}, lambda c: c["company"] in companies),
        (
            {"product": ["Mortgage", "Debt collection\u2022Medical debt"]},
            lambda c: (
                c["product"] == "Mortgage"
                or (c["product"], c["sub_product"]) == ("Debt collection", "Medical debt")
            ),
        ),
        ({"not_state": ["CA", "FL"]}, lambda c: c["state"] not in ("CA", "FL")),
        (
            {"issue": ["Improper use of your report"]},
            lambda c: c["issue"] == "Improper use of your report",
        ),
        (
            {"company_response": ["In progress", "Closed with monetary relief"]},
            lambda c: c["company_response"] in ("In progress", "Closed with monetary relief"),
        ),
        ({"has_narrative": ["true"]}, lambda c: c["has_narrative"]),
        (
            {"submitted_via": ["Phone", "Postal mail"]},
            lambda c: c["submitted_via"] in ("Phone", "Postal mail"),
        ),
        (
            {"state": ["NY"], "product": ["Credit card"]},
            lambda c: c["state"] == "NY" and c["product"] == "Credit card",
        ),
    ]
    for params, predicate in cases:
        want = [c["complaint_id"] for c in truth if predicate(c)]
        hits, bodies = walk(api, **WEEK, **INGEST, **params)
        assert ids(hits) == want, params
        assert 0 < len(want) < len(truth), params
        assert bodies[0]["hits"]["total"]["value"] == len(want)


def test_validation_errors(api):
    cases = [
        ({"size": "ten"}, {"size": ["A valid integer is required."]}),
        ({"size": "100001"}, {"size": ["Ensure this value is less than or equal to 100000."]}),
        ({"size": "-1"}, {"size": ["Ensure this value is greater than or equal to 0."]}),
        ({"sort": "newest"}, {"sort": ['"newest" is not a valid choice.']}),
        (
            {"date_received_min": "03/01/2024"},
            {
                "date_received_min": [
                    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
                ]
            },
        ),
        ({"state": ["CA", "ZZ"]}, {"state": {"1": ['"ZZ" is not a valid choice.']}}),
        (
            {"zip_code": ["207"]},
            {"zip_code": {"0": ["Ensure this field has at least 5 characters."]}},
        ),
        ({"no_aggs": "maybe"}, {"no_aggs": ["Must be a valid boolean."]}),
        ({"page": "0"}, {"page": ["Ensure this value is greater than or equal to 1."]}),
    ]
    for params, errors in cases:
        response = api(**params)
        assert response.status_code == 400, params
        assert response.json() == errors, params
    two_bullets = api(product="A\u2022B\u2022C")
    assert two_bullets.status_code == 400 and "product" in two_bullets.json()
    assert api(size=0).json()["hits"]["hits"] == []  # size 0 is valid: counts only
    assert api(unknown_param="x", size=1).status_code == 200  # unknown params are ignored


def test_search_term(api):
    body = api(search_term="collector", size=10).json()
    hits = body["hits"]["hits"]
    assert hits and all("collector" in h["_source"]["complaint_what_happened"] for h in hits)
    assert all("<em>collector</em>" in h["highlight"]["complaint_what_happened"][0] for h in hits)
    plain = api(search_term="collector", size=10, no_highlight="true").json()
    assert all("highlight" not in h for h in plain["hits"]["hits"])


# --------------------------------------------------------------------------- clock and changes


def test_new_complaints_appear_as_the_clock_moves(sim, api, world):
    today = {"date_received_min": "2024-03-15", "date_received_max": "2024-03-16"}
    sim.now = datetime(2024, 3, 15, 6, 0, tzinfo=UTC)  # 2 am in Washington
    early = api(**today, **INGEST).json()["hits"]["total"]["value"]
    sim.now = NOW
    noon = api(**today, **INGEST).json()["hits"]["total"]["value"]
    sim.advance(timedelta(hours=12))
    night = api(**today, **INGEST).json()["hits"]["total"]["value"]
    assert early < noon < night
    assert noon == len(expected(world, "2024-03-15", "2024-03-16"))


def test_late_publication_grows_a_past_day(sim, api, world):
    day = date(2024, 3, 4)
    late = [r for r in world.day(day) if r.published > int(NOW.timestamp()) - 86_400 * 8]
    late = [
        r
        for r in late
        if datetime.fromtimestamp(r.published, UTC) > datetime(2024, 3, 6, tzinfo=UTC)
    ]
    assert late, "some complaints of the day are published days later"
    record = late[0]
    params = {"date_received_min": "2024-03-04", "date_received_max": "2024-03-05", **INGEST}
    sim.now = world.published_at(record.id) - timedelta(seconds=1)
    before = ids(walk(api, **params)[0])
    sim.now = world.published_at(record.id)
    after = ids(walk(api, **params)[0])
    assert str(record.id) not in before and str(record.id) in after
    assert set(before) < set(after)


def test_company_responses_change_over_time(world):
    day = date(2024, 3, 1)
    answered = [
        r
        for r in world.day(day)
        if r.responded is not None and r.narrative and r.responded > r.published
    ]
    record = answered[0]
    before = world.complaint(record.id, datetime.fromtimestamp(record.responded - 1, UTC))
    after = world.complaint(record.id, datetime.fromtimestamp(record.responded, UTC))
    assert before["company_response"] == IN_PROGRESS and before["has_narrative"] is False
    assert after["company_response"] != IN_PROGRESS and after["has_narrative"] is True
    assert after["complaint_what_happened"] and "XX" in " ".join(
        c["complaint_what_happened"] for c in world.complaints(day, day + timedelta(1), at=NOW)
    )


def test_update_changes_a_complaint_later(world):
    local = CfpbWorld(seed=7, start=START)
    later = NOW + timedelta(hours=1)
    open_ones = [
        c
        for c in local.complaints(date(2024, 3, 13), date(2024, 3, 14), at=NOW)
        if c["company_response"] == IN_PROGRESS
    ]
    target = open_ones[0]["complaint_id"]
    assert local.update([target], later) == [target]
    assert local.complaint(target, NOW) == open_ones[0]
    changed = local.complaint(target, later)
    assert changed["company_response"] == "Closed with explanation" and changed["timely"] == "Yes"
    # each default step moves it on; explicit changes win
    local.update([target], later + timedelta(minutes=1))
    assert local.complaint(target, later + timedelta(minutes=1))["company_public_response"]
    local.update([int(target)], later + timedelta(minutes=2), tags="Servicemember")
    assert local.complaint(target, later + timedelta(minutes=3))["tags"] == "Servicemember"
    with pytest.raises(KeyError):
        local.update(["123"], later)


def test_update_over_http(world):
    local = CfpbWorld(seed=7, start=START)
    with CfpbSimulator(local, now=NOW, search_rate_per_minute=1000) as sim:
        url = f"{sim.url}{SEARCH_PATH}"
        params = {"date_received_min": "2024-03-14", "date_received_max": "2024-03-15", **INGEST}
        first = requests.get(url, params=params).json()["hits"]["hits"]
        target = next(h for h in first if h["_source"]["company_response"] == IN_PROGRESS)
        sim.update([target["_id"]])  # from now on
        again = requests.get(url, params=params).json()["hits"]["hits"]
        changed = next(h for h in again if h["_id"] == target["_id"])
        assert changed["_source"]["company_response"] == "Closed with explanation"
        assert ids(again) == ids(first)


# --------------------------------------------------------------------------- the world


def test_untimely_responses_show_after_fifteen_days(api, world):
    window = {"date_received_min": "2024-02-01", "date_received_max": "2024-02-15"}
    late = walk(api, **window, **INGEST, timely="No")[0]
    assert late and all(h["_source"]["timely"] == "No" for h in late)
    assert all(h["_source"]["company_response"] != IN_PROGRESS for h in late)
    recent = {"date_received_min": "2024-03-04", "date_received_max": "2024-03-11"}
    assert api(**recent, **INGEST, timely="No").json()["hits"]["total"]["value"] == 0


def test_seasonality_and_realism(world):
    counts = {}
    for offset in range(28):
        day = date(2024, 2, 5) + timedelta(days=offset)
        counts[day] = len(world.day(day))
    weekdays = [n for d, n in counts.items() if d.weekday() < 5]
    weekends = [n for d, n in counts.items() if d.weekday() >= 5]
    assert min(weekdays) > 2 * max(weekends)
    assert 200 < sum(weekdays) / len(weekdays) < 450
    sources = world.complaints(date(2024, 2, 1), date(2024, 3, 1), at=NOW)
    products = Counter(c["product"] for c in sources)
    assert products.most_common(1)[0][0].startswith("Credit reporting")
    states = Counter(c["state"] for c in sources)
    assert {s for s, _ in states.most_common(4)} >= {"CA", "FL", "TX"}
    assert Counter(c["submitted_via"] for c in sources).most_common(1)[0][0] == "Web"
    responses = Counter(c["company_response"] for c in sources)
    assert responses.most_common(1)[0][0] == "Closed with explanation"
    assert 0 < responses[IN_PROGRESS] < len(sources) * 0.2
    bureaus = {c["company"] for c in sources if c["product"].startswith("Credit reporting")}
    assert "EQUIFAX, INC." in bureaus and "Nelnet, Inc." not in bureaus


def test_daily_rate_is_configurable():
    busy = CfpbWorld(seed=1, start=START, daily_rate=1000)
    quiet = CfpbWorld(seed=1, start=START, daily_rate=50)
    day = date(2024, 3, 5)
    assert len(busy.day(day)) > 10 * len(quiet.day(day)) > 0
    assert len({r.id for r in busy.day(day)}) == len(busy.day(day))


def test_determinism_and_lazy_lookup():
    a, b = CfpbWorld(seed=3, start=START), CfpbWorld(seed=3, start=START)
    day = date(2024, 2, 20)
    assert a.complaints(day, day + timedelta(1), at=NOW) == b.complaints(
        day, day + timedelta(1), at=NOW
    )
    other = CfpbWorld(seed=4, start=START).complaints(day, day + timedelta(1), at=NOW)
    assert other != a.complaints(day, day + timedelta(1), at=NOW)
    fresh = CfpbWorld(seed=3, start=START)
    target = a.day(day)[10]
    assert fresh.complaint(target.id, NOW) == a.complaint(target.id, NOW)
    assert len(fresh._days) == 1  # looking one up generated its day only
    taken = {r.id for r in a.day(day)}
    gap = next(i for i in range(target.id, target.id + 100) if i not in taken)
    assert fresh.complaint(gap, NOW) is None and fresh.complaint("x", NOW) is None


def test_live_clock_follows_wall_time(world):
    sim = CfpbSimulator(world, live=True)
    assert abs((datetime.now(UTC) - sim.now).total_seconds()) < 120
    sim.advance(timedelta(days=-2))
    assert abs((datetime.now(UTC) - sim.now) - timedelta(days=2)) < timedelta(minutes=2)


def test_two_simulators_serve_identical_bytes():
    bodies = []
    for _ in range(2):
        with CfpbSimulator(CfpbWorld(seed=7, start=START), now=NOW) as sim:
            params = {**WEEK, "size": 50}
            bodies.append(requests.get(f"{sim.url}{SEARCH_PATH}", params=params).content)
    assert bodies[0] == bodies[1]


# --------------------------------------------------------------------------- throttle and faults


def test_search_throttle_is_drf_like(world):
    with CfpbSimulator(world, now=NOW, search_rate_per_minute=3) as sim:
        url = f"{sim.url}{SEARCH_PATH}"
        params = {"size": 1, "no_aggs": "true"}
        assert [requests.get(url, params=params).status_code for _ in range(3)] == [200] * 3
        throttled = requests.get(url, params=params)
        assert throttled.status_code == 429
        wait = int(throttled.headers["Retry-After"])
        assert 50 <= wait <= 60
        assert throttled.json() == {
            "detail": f"Request was throttled. Expected available in {wait} seconds."
        }
        other = requests.get(url, params=params, headers={"X-Forwarded-For": "10.0.0.2"})
        assert other.status_code == 200  # per client
        ui = {
            "Referer": "https://www.consumerfinance.gov/data-research/consumer-complaints/search/"
        }
        assert requests.get(url, params=params, headers=ui).status_code == 200
        # documents have their own bucket (5/min by default)
        doc = world.complaints(date(2024, 3, 4), date(2024, 3, 5), at=NOW)[0]["complaint_id"]
        answers = [requests.get(f"{url}{doc}").status_code for _ in range(6)]
        assert answers == [200] * 5 + [429]


def test_throttle_window_slides(world):
    with CfpbSimulator(world, now=NOW, search_rate_per_minute=2) as sim:
        sim.search_throttle.window = 1.0
        sim.search_throttle.clock = clock = FakeClock()
        url = f"{sim.url}{SEARCH_PATH}"
        codes = [requests.get(url, params={"size": 1}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        clock.advance(1.05)
        assert requests.get(url, params={"size": 1}).status_code == 200


def test_error_bursts(api, sim):
    sim.burst(500, 3)
    answers = [api(size=1) for _ in range(4)]
    assert [a.status_code for a in answers] == [500, 500, 500, 200]
    assert answers[0].json() == {"error": "There was a problem retrieving your request"}
    sim.burst(424, 1)
    opensearch = api(size=1)
    assert opensearch.status_code == 424
    assert opensearch.json() == {"error": "There was an error calling OpenSearch"}
    sim.faults.fail_next = [503, 429]
    edge = api(size=1)
    assert edge.status_code == 503 and edge.headers["Content-Type"] == "text/html"
    assert "Service Unavailable" in edge.text
    throttled = api(size=1)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert throttled.json()["detail"] == "Request was throttled. Expected available in 1 second."
    sim.faults.error_rate = 0.5
    statuses = Counter(api(size=1).status_code for _ in range(40))
    assert statuses[200] > 5 and statuses[503] > 5
    sim.faults.error_rate = 0.0


def test_slow_answers_time_out(api, sim):
    sim.faults.slow_seconds = 0.4
    started = time.perf_counter()
    assert api(size=1).status_code == 200
    assert time.perf_counter() - started >= 0.4
    with pytest.raises(requests.Timeout):
        requests.get(f"{sim.url}{SEARCH_PATH}", params={"size": 1}, timeout=0.1)
    sim.faults.slow_seconds = 0.0


def test_truncated_and_malformed_bodies(api, sim):
    sim.faults.truncate_next = 1
    truncated = api(**WEEK, size=10)
    with pytest.raises(ValueError):
        truncated.json()
    sim.faults.malformed_next = 2
    malformed = [api(**WEEK, size=10) for _ in range(2)]
    for response in malformed:
        assert response.status_code == 200 and response.text.rstrip().endswith("}")
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert api(**WEEK, size=10).json()["hits"]["hits"]
    assert sim.faults.malformed_next == 0


def test_duplicates_across_pages(api, sim, world):
    truth = [
        c["complaint_id"]
        for c in expected(world, WEEK["date_received_min"], WEEK["date_received_max"])
    ]
    sim.faults.duplicate_across_pages = True
    hits, bodies = walk(api, **WEEK, **INGEST)
    got = ids(hits)
    assert len(got) > len(truth) and len(set(got)) == len(truth)
    assert sorted(set(got)) == sorted(truth)
    for previous, page in zip(bodies, bodies[1:], strict=False):
        if page["hits"]["hits"]:
            assert page["hits"]["hits"][0]["_id"] == previous["hits"]["hits"][-1]["_id"]
    deduped = list(dict.fromkeys(got))
    assert deduped == truth


def test_missing_fields(api, sim):
    clean, _ = walk(api, **WEEK, **INGEST)
    sim.faults.missing_fields = True
    broken, _ = walk(api, **WEEK, **INGEST)
    assert ids(broken) == ids(clean)
    lacking = [h for h in broken if set(h["_source"]) != set(SOURCE_FIELDS)]
    assert 0 < len(lacking) < len(broken) // 10
    assert any("complaint_id" not in h["_source"] for h in lacking)
    assert any("date_received" not in h["_source"] for h in lacking)
    assert all(len(h["_source"]) == len(SOURCE_FIELDS) - 1 for h in lacking)


def test_pages_are_fast(api):
    api(**WEEK, **INGEST)  # warm the query cache
    started = time.perf_counter()
    for _ in range(20):
        assert api(**WEEK, **INGEST, search_after=f"{sort_millis(date(2024, 3, 6))}_0").ok
    per_page = (time.perf_counter() - started) / 20
    assert per_page < 0.05, f"{per_page * 1000:.1f} ms per page"
