"""Faults on the CFPB pull: each is survived by a retry, or ends in a clear error naming
the request or the record, with every stored page whole and nothing half-written."""

from __future__ import annotations

import time
from datetime import date

import pytest
from complaints_helpers import resource_for

from signalbox.domains.complaints.cfpb import CfpbPagingError, CfpbRecordError
from signalbox.domains.complaints.ingest import COMPLAINTS, crawl_complaints
from signalbox.platform.http import ApiHttpError, ApiResponseError, ApiTimeoutError
from signalbox.simulators.cfpb import SEARCH_PATH, DrfThrottle
from signalbox.simulators.server import Response, SimulatorServer

SINCE = date(2024, 3, 12)


@pytest.fixture
def cfpb(cfpb_sim):
    return resource_for(cfpb_sim, backfill_start=SINCE.isoformat(), max_attempts=3)


def crawl(cfpb, warehouse, on_page=None):
    client = cfpb.client()
    result = crawl_complaints(
        client,
        warehouse,
        lookback_days=cfpb.lookback_days,
        backfill_start=cfpb.backfill_start_date(),
        on_page=on_page,
    )
    return result, client


def stored(warehouse) -> dict[str, dict]:
    return dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))


def expected(sim) -> dict[str, dict]:
    return {c["complaint_id"]: c for c in sim.world.complaints(SINCE, None, at=sim.now)}


class PageRecorder:
    """on_page callback: remembers stored pages; runs `action` after page `after`."""

    def __init__(self, after: int | None = None, action=None):
        self.ids: set[str] = set()
        self.pages = 0
        self.after, self.action = after, action

    def __call__(self, page) -> None:
        self.pages += 1
        self.ids |= {c.complaint_id for c in page.complaints}
        if self.pages == self.after:
            self.action()


def assert_whole_pages_only(sim, warehouse, recorder: PageRecorder) -> None:
    have = stored(warehouse)
    assert set(have) == recorder.ids  # exactly the pages stored before the failure
    want = expected(sim)
    assert all(have[cid] == want[cid] for cid in have)


def test_5xx_and_424_bursts_are_retried(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=SINCE.isoformat(), max_attempts=6)
    cfpb_sim.faults.fail_next = [500, 503, 424, 502]  # JSON, edge HTML, OpenSearch, HTML
    result, client = crawl(cfpb, warehouse)
    assert stored(warehouse) == expected(cfpb_sim)
    assert client.http.stats.retries == 4
    assert {s: client.http.stats.statuses[s] for s in (424, 500, 502, 503)} == {
        424: 1,
        500: 1,
        502: 1,
        503: 1,
    }


def test_persistent_5xx_fails_clearly_and_keeps_whole_pages(cfpb_sim, cfpb, warehouse):
    recorder = PageRecorder(after=3, action=lambda: cfpb_sim.burst(500, 10))
    with pytest.raises(ApiHttpError) as failure:
        crawl(cfpb, warehouse, on_page=recorder)
    message = str(failure.value)
    assert failure.value.status == 500 and failure.value.attempts == 3
    assert message.startswith("cfpb: GET http://127.0.0.1:") and SEARCH_PATH in message
    assert "date_received_min=" in message and "There was a problem retrieving" in message
    assert recorder.pages == 3
    assert_whole_pages_only(cfpb_sim, warehouse, recorder)
    # the next run (the RetryPolicy's, or the sensor's) completes the window
    cfpb_sim.faults.fail_next.clear()
    crawl(cfpb, warehouse)
    assert stored(warehouse) == expected(cfpb_sim)


def test_timeouts_fail_clearly_and_keep_whole_pages(cfpb_sim, warehouse):
    cfpb = resource_for(
        cfpb_sim, backfill_start=SINCE.isoformat(), max_attempts=2, read_timeout_seconds=0.2
    )

    def slow_down():
        cfpb_sim.faults.slow_seconds = 0.6

    recorder = PageRecorder(after=2, action=slow_down)
    with pytest.raises(ApiTimeoutError) as failure:
        crawl(cfpb, warehouse, on_page=recorder)
    assert "ReadTimeout" in str(failure.value) and "after 2 attempts" in str(failure.value)
    assert "date_received_min=" in str(failure.value)
    assert_whole_pages_only(cfpb_sim, warehouse, recorder)


def test_malformed_and_truncated_bodies_are_retried(cfpb_sim, cfpb, warehouse):
    cfpb_sim.faults.malformed_next = 1  # the probe: complete body, one comma dropped
    # a page later: a body cut in half
    recorder = PageRecorder(after=2, action=lambda: setattr(cfpb_sim.faults, "truncate_next", 1))
    result, client = crawl(cfpb, warehouse, on_page=recorder)
    assert stored(warehouse) == expected(cfpb_sim)
    assert client.http.stats.retries == 2


def test_persistent_malformed_json_fails_clearly(cfpb_sim, cfpb, warehouse):
    recorder = PageRecorder(after=2, action=lambda: setattr(cfpb_sim.faults, "malformed_next", 99))
    with pytest.raises(ApiResponseError) as failure:
        crawl(cfpb, warehouse, on_page=recorder)
    assert "malformed JSON" in str(failure.value)
    assert_whole_pages_only(cfpb_sim, warehouse, recorder)


def test_a_truncated_page_that_stays_truncated_fails_clearly(cfpb_sim, cfpb, warehouse):
    recorder = PageRecorder(after=1, action=lambda: setattr(cfpb_sim.faults, "truncate_next", 99))
    with pytest.raises(ApiResponseError) as failure:
        crawl(cfpb, warehouse, on_page=recorder)
    assert "malformed JSON" in str(failure.value) and "after 3 attempts" in str(failure.value)
    assert_whole_pages_only(cfpb_sim, warehouse, recorder)


def test_missing_fields_name_the_record_and_store_nothing_of_its_page(cfpb_sim, cfpb, warehouse):
    cfpb_sim.faults.missing_fields = True
    recorder = PageRecorder()
    with pytest.raises(CfpbRecordError) as failure:
        crawl(cfpb, warehouse, on_page=recorder)
    error = failure.value
    assert error.field_name in ("complaint_id", "date_received") and error.record_id
    assert error.window == "2024-03-12" and error.page >= 1 and error.position >= 1
    message = str(error)
    assert f"window 2024-03-12 page {error.page}" in message
    assert f"hit #{error.position} (_id '{error.record_id}') has no" in message
    assert f"'{error.field_name}'" in message and "nothing from this page was stored" in message
    assert error.record_id not in stored(warehouse)
    assert_whole_pages_only(cfpb_sim, warehouse, recorder)


def test_429_waits_out_retry_after(cfpb_sim, cfpb, warehouse):
    cfpb_sim.burst(429, 1)
    started = time.monotonic()
    result, client = crawl(cfpb, warehouse)
    assert time.monotonic() - started >= 1.0  # DRF's Retry-After: 1
    assert client.http.stats.rate_limited == 1
    assert stored(warehouse) == expected(cfpb_sim)


# --------------------------------------------------------------------------- broken paging


class StuckSearch(SimulatorServer):
    """A search endpoint that answers every request with the same full page."""

    def __init__(self, with_sort: bool):
        super().__init__()
        hits = []
        for n in range(100):
            source = {"complaint_id": str(5000 + n), "date_received": "2024-03-12T12:00:00-05:00"}
            hit = {"_id": source["complaint_id"], "_source": source}
            if with_sort:
                hit["sort"] = [1710262800000, "5099"]  # always the same last value
            hits.append(hit)
        self.body = {"hits": {"total": {"value": 1000, "relation": "eq"}, "hits": hits}}
        self.add_route("GET", SEARCH_PATH, lambda request: Response.json(self.body))


@pytest.mark.parametrize("with_sort", [False, True], ids=["no-sort", "no-progress"])
def test_broken_search_after_chains_stop_with_a_clear_error(warehouse, with_sort):
    with StuckSearch(with_sort) as server:
        cfpb = resource_for(server, backfill_start="2024-03-12")
        with pytest.raises(CfpbPagingError) as failure:
            crawl(cfpb, warehouse)
        assert server.count(SEARCH_PATH) == (2 if with_sort else 1) + 1  # + the probe
    message = str(failure.value)
    if with_sort:
        assert "search_after did not move past 1710262800000_5099" in message
    else:
        assert "has no usable 'sort' array" in message
    assert len(stored(warehouse)) == 100  # the whole first page, once


# --------------------------------------------------------------------------- throttle


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "unpaced"])
def test_drf_throttle(cfpb_sim, warehouse, paced):
    """Upstream throttles anonymous searches per IP (20/min over a sliding minute); here
    4 per 2 s (120/min) keeps the test short. Paced below it the client is never refused;
    unpaced it is, waits out Retry-After, and still stores everything. (A warm-up crawl
    first: the pacer lets a caller that fell behind catch up a few slots, which a 2-second
    window cannot absorb the way upstream's minute does.)"""
    crawl(resource_for(cfpb_sim, backfill_start="2024-03-13"), warehouse)
    cfpb_sim.search_throttle = DrfThrottle(4, duration=2.0)
    cfpb_sim.reset_log()
    cfpb = resource_for(
        cfpb_sim, backfill_start="2024-03-13", rate_limit_per_minute=110 if paced else None
    )
    started = time.monotonic()
    result, client = crawl(cfpb, warehouse)
    elapsed = time.monotonic() - started
    assert {
        c["complaint_id"] for c in cfpb_sim.world.complaints(date(2024, 3, 13), at=cfpb_sim.now)
    } == set(stored(warehouse))
    requests = client.http.stats.requests
    assert requests - client.http.stats.rate_limited == result.pages + 1 > 4
    if paced:
        assert client.http.stats.rate_limited == 0
        assert elapsed >= (requests - 1) * 60 / (110 * 0.97) - 0.05
    else:
        assert client.http.stats.rate_limited >= 1
        assert 429 in {r.status for r in cfpb_sim.requests}
