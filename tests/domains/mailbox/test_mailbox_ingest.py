"""The incremental Help Scout crawl against the simulator over HTTP and the embedded
PostgreSQL: what it fetches, what it stores, and how it fails."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from signalbox.domains.mailbox.helpscout import HelpScoutClient
from signalbox.domains.mailbox.ingest import (
    CONVERSATIONS,
    WATERMARK,
    crawl_conversations,
    load_mailboxes,
    stored_mailbox_ids,
)
from signalbox.platform.http import (
    ApiResponseError,
    ApiTimeoutError,
    HttpClient,
    RetryPolicy,
)
from signalbox.platform.warehouse import read_watermark
from signalbox.simulators.server import Response, SimulatorServer


def crawl(helpscout, warehouse, **kwargs):
    client = helpscout.client()
    load_mailboxes(client, warehouse)
    result = crawl_conversations(
        client,
        warehouse,
        mailbox_ids=stored_mailbox_ids(warehouse),
        backfill_start=helpscout.backfill_start_at(),
        **kwargs,
    )
    return result, client


def snapshot(warehouse):
    return warehouse.query(
        f"SELECT id, payload_md5, loaded_at FROM {CONVERSATIONS.name} ORDER BY id"
    )


def mark(warehouse):
    with warehouse.connect() as conn, conn.cursor() as cur:
        return read_watermark(cur, WATERMARK)


def expected(sim, since):
    return {c["id"]: c for c in sim.world.conversations(sim.now, modified_since=since)}


def test_first_crawl_stores_the_window_verbatim(helpscout_sim, helpscout, warehouse):
    result, client = crawl(helpscout, warehouse)
    want = expected(helpscout_sim, helpscout.backfill_start_at())
    stored = dict(warehouse.query(f"SELECT id, payload FROM {CONVERSATIONS.name}"))
    assert stored == want  # every conversation of the window, payload for payload
    assert result.inserted == len(want) and result.pages == math.ceil(len(want) / 25)
    # token + mailboxes + one request per page, nothing wasted
    assert helpscout_sim.count("/v2/conversations") == result.pages
    assert client.http.stats.requests == result.pages + 2
    assert mark(warehouse) == helpscout_sim.now  # the server's clock, not ours


def test_rerun_changes_nothing_and_next_run_fetches_only_changes(
    helpscout_sim, helpscout, warehouse
):
    crawl(helpscout, warehouse)
    before = snapshot(warehouse)
    helpscout_sim.reset_log()
    again, _ = crawl(helpscout, warehouse)
    assert snapshot(warehouse) == before  # not even loaded_at moved
    assert again.inserted == again.updated == 0
    assert helpscout_sim.count("/v2/conversations") == 1  # just the 10-minute overlap

    first_mark = mark(warehouse)
    helpscout_sim.advance(timedelta(hours=1))
    touched = helpscout_sim.touch(0.01, at=helpscout_sim.now - timedelta(minutes=30))
    changed = expected(helpscout_sim, first_mark - timedelta(minutes=10))
    helpscout_sim.reset_log()
    result, _ = crawl(helpscout, warehouse)

    assert set(touched) <= set(changed)
    assert result.received == len(changed)
    assert result.pages == helpscout_sim.count("/v2/conversations") == math.ceil(len(changed) / 25)
    assert result.inserted + result.updated + result.unchanged == len(changed)
    assert result.inserted + result.updated >= len(touched)  # old ones are new to us
    stored = dict(warehouse.query(f"SELECT id, payload FROM {CONVERSATIONS.name}"))
    for conversation_id, payload in changed.items():
        assert stored[conversation_id] == payload
    assert mark(warehouse) == helpscout_sim.now


def test_schema_drift_is_kept_verbatim(helpscout_sim, helpscout, warehouse):
    helpscout_sim.faults.unknown_values = True
    crawl(helpscout, warehouse)
    drifted = warehouse.scalar(
        f"SELECT count(*) FROM {CONVERSATIONS.name} WHERE payload ? 'aiSummary'"
    )
    statuses = {row[0] for row in warehouse.query(
        f"SELECT DISTINCT payload->>'status' FROM {CONVERSATIONS.name}"
    )}  # fmt: skip
    assert drifted > 0 and "archived" in statuses


def test_transient_faults_and_token_expiry_are_survived(helpscout_sim, helpscout, warehouse):
    helpscout_sim.faults.error_rate = 0.15
    helpscout_sim.faults.truncate_next = 2
    helpscout_sim.faults.fail_next = [429, 429]

    def expire_on_page_two(page, total):
        if page == 2:
            helpscout_sim.expire_tokens()

    result, client = crawl(helpscout, warehouse, on_page=expire_on_page_two)
    want = expected(helpscout_sim, helpscout.backfill_start_at())
    assert warehouse.scalar(f"SELECT count(*) FROM {CONVERSATIONS.name}") == len(want)
    assert client.http.stats.retries >= 3 and client.http.stats.rate_limited == 2
    assert any(r.status == 401 for r in helpscout_sim.requests)  # the expired token...
    assert helpscout_sim.requests[-1].status == 200  # ...was replaced and the crawl went on
    assert mark(warehouse) == helpscout_sim.now


def test_a_persistently_malformed_page_fails_cleanly_and_loses_nothing(
    helpscout_sim, helpscout, warehouse
):
    crawl(helpscout, warehouse)
    before, first_mark = snapshot(warehouse), mark(warehouse)
    helpscout_sim.advance(timedelta(days=2))  # many changed conversations: several pages

    def break_page_three(page, total):
        if page == 2:
            helpscout_sim.faults.truncate_next = 1000

    with pytest.raises(ApiResponseError, match="malformed JSON") as err:
        crawl(helpscout, warehouse, on_page=break_page_three, batch_rows=10_000)
    assert "helpscout" in str(err.value) and "page=3" in str(err.value)
    assert snapshot(warehouse) == before  # the failed batch was rolled back whole
    assert mark(warehouse) == first_mark  # and the mark did not move

    helpscout_sim.faults.truncate_next = 0
    crawl(helpscout, warehouse)
    want = expected(helpscout_sim, helpscout.backfill_start_at())
    assert warehouse.scalar(f"SELECT count(*) FROM {CONVERSATIONS.name}") == len(want)


def test_committed_batches_survive_a_later_failure(helpscout_sim, helpscout, warehouse):
    def break_page_four(page, total):
        if page == 3:
            helpscout_sim.faults.truncate_next = 1000

    with pytest.raises(ApiResponseError):
        crawl(helpscout, warehouse, on_page=break_page_four, batch_rows=25)
    assert warehouse.scalar(f"SELECT count(*) FROM {CONVERSATIONS.name}") == 75
    assert mark(warehouse) is None  # incomplete crawl: the next one starts from scratch


def test_timeouts_end_in_a_clear_error(helpscout_sim, helpscout, warehouse):
    slow = helpscout.model_copy(update={"read_timeout_seconds": 0.2, "max_attempts": 2})
    client = slow.client()
    helpscout_sim.faults.slow_seconds = 0.5
    with pytest.raises(ApiTimeoutError) as err:
        load_mailboxes(client, warehouse)
    message = str(err.value)
    assert "helpscout" in message and "/v2/" in message and "2 attempts" in message
    assert helpscout.client_secret not in message


def test_a_record_without_an_id_is_named_and_nothing_of_its_page_is_stored(helpscout, warehouse):
    page = {
        "_embedded": {"conversations": [{"id": 1, "mailboxId": 5}, {"mailboxId": 5}]},
        "page": {"size": 25, "totalElements": 2, "totalPages": 1, "number": 1},
    }
    with SimulatorServer() as server:
        server.add_route("GET", "/v2/conversations", lambda r: Response.json(page))
        client = HelpScoutClient(HttpClient(server.url, "helpscout", retry=RetryPolicy()))
        with pytest.raises(
            ApiResponseError, match=r"conversation #2 on page 1 has no integer 'id'"
        ):
            crawl_conversations(
                client, warehouse, mailbox_ids=[5], backfill_start=helpscout.backfill_start_at()
            )
    assert warehouse.scalar(f"SELECT count(*) FROM {CONVERSATIONS.name}") == 0
