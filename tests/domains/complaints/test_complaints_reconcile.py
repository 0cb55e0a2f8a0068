"""Late complaints and updated responses the incremental lookback cannot reach: the runs'
own check tells where a difference lies, the reconcile pass repairs it and counts what it
repaired, and a difference beyond every pass fails until the range is re-fetched."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
from complaints_helpers import NOW, resource_for

from signalbox.domains.complaints.cfpb import DayWindow
from signalbox.domains.complaints.ingest import COMPLAINTS, crawl_complaints
from signalbox.domains.complaints.raw import build_cfpb_complaints_asset, complaints_retry_policy
from signalbox.domains.complaints.reconcile import MATCH_API, compare_with_api

ASSET = build_cfpb_complaints_asset(complaints_retry_policy({}))
START = "2024-01-15"


def stored(warehouse) -> dict[str, dict]:
    return dict(warehouse.query(f"SELECT complaint_id, payload FROM {COMPLAINTS.name}"))


def truth(sim) -> dict[str, dict]:
    return {
        c["complaint_id"]: c
        for c in sim.world.complaints(date.fromisoformat(START), None, at=sim.now)
    }


def run(cfpb, warehouse, **config) -> tuple[dict, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [ASSET],
        resources={"cfpb": cfpb, "warehouse": warehouse},
        run_config={"ops": {"raw__cfpb_complaints": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    (materialization,) = result.asset_materializations_for_node("raw__cfpb_complaints")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == MATCH_API
    return {k: v.value for k, v in materialization.metadata.items()}, check


def meta(check: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in check.metadata.items()}


def test_the_reconcile_pass_repairs_what_the_lookback_cannot_reach(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=START, lookback_days=16, reconcile_days=60)
    cfpb_sim.now = NOW - timedelta(days=20)
    _, check = run(cfpb, warehouse)
    assert check.passed and set(stored(warehouse)) == set(truth(cfpb_sim))

    # three weeks on. Complaints published later than the lookback reaches: the simulator
    # publishes within 15 days, so three of them are taken out of the warehouse, which is
    # how it looks when their days were read before they were published. And older
    # complaints got their company's response, some of them changed once more.
    gone = warehouse.query(
        f"DELETE FROM {COMPLAINTS.name} WHERE complaint_id IN (SELECT complaint_id"
        f" FROM {COMPLAINTS.name} WHERE date_received BETWEEN '2024-01-25' AND '2024-02-05'"
        " ORDER BY complaint_id LIMIT 3) RETURNING complaint_id"
    )
    cfpb_sim.now = NOW
    old = sorted(cid for cid, c in stored(warehouse).items() if c["date_received"] < "2024-02-01")
    cfpb_sim.update(old[:7], at=NOW - timedelta(hours=1), company_response="Closed with relief")
    metadata, check = run(cfpb, warehouse)
    assert metadata["pass"].startswith("incremental")
    reach = metadata["window_start"]  # what the incremental run re-read from
    have, want = stored(warehouse), truth(cfpb_sim)
    missing = set(want) - set(have)
    stale = {cid for cid in have if have[cid] != want[cid]}
    assert missing == {cid for (cid,) in gone} and len(stale) >= 7
    assert all(want[cid]["date_received"][:10] < reach for cid in missing | stale)
    # the run's check sees them and knows the next reconcile pass will fetch them
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    found = meta(check)
    assert found["missing"] == found["missing_next_reconcile_fetches"] == len(missing)
    assert found["missing_in_window_read"] == found["missing_beyond_every_pass"] == 0

    metadata, check = run(cfpb, warehouse, reconcile=True)
    assert metadata["pass"] == "reconcile (60 days before the newest stored)"
    assert (metadata["repaired_missing"], metadata["repaired_stale"]) == (len(missing), len(stale))
    assert stored(warehouse) == truth(cfpb_sim)
    assert check.passed and meta(check)["missing"] == 0


def test_a_difference_beyond_every_pass_fails_until_its_range_is_refetched(cfpb_sim, warehouse):
    cfpb = resource_for(cfpb_sim, backfill_start=START, reconcile_days=30)
    run(cfpb, warehouse)
    lost = warehouse.query(
        f"DELETE FROM {COMPLAINTS.name} WHERE complaint_id = (SELECT min(complaint_id)"
        f" FROM {COMPLAINTS.name} WHERE date_received = '2024-01-20') RETURNING complaint_id"
    )
    assert len(lost) == 1
    _, check = run(cfpb, warehouse)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    found = meta(check)
    assert found["missing_beyond_every_pass"] == 1 and found["missing_next_reconcile_fetches"] == 0
    assert '"start_date": "2024-01-15"' in found["refetch_with"]
    # the run config the check names brings it back
    _, check = run(cfpb, warehouse, start_date="2024-01-15", end_date="2024-02-13")
    assert check.passed and lost[0][0] in stored(warehouse)


def test_a_difference_in_the_window_just_read_is_an_error(cfpb_sim, cfpb, warehouse):
    client = cfpb.client()
    result = crawl_complaints(client, warehouse, backfill_start=cfpb.backfill_start_date())
    read = DayWindow(result.start, result.end + timedelta(days=1))
    assert compare_with_api(
        client, warehouse, read=read, reachable_from=None, pass_name="incremental"
    ).passed
    warehouse.query(
        f"DELETE FROM {COMPLAINTS.name} WHERE complaint_id = (SELECT max(complaint_id)"
        f" FROM {COMPLAINTS.name}) RETURNING 1"
    )
    check = compare_with_api(client, warehouse, read=read, reachable_from=None, pass_name="x")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert meta(check)["missing_in_window_read"] == 1


def test_the_check_shares_the_crawls_pacing(cfpb_sim, warehouse):
    """The API's throttle (here 4 requests per 2 s) against a run paced under it: the crawl
    and its check together are never refused."""
    from signalbox.simulators.cfpb import DrfThrottle

    cfpb_sim.search_throttle = DrfThrottle(4, duration=2.0)
    cfpb = resource_for(cfpb_sim, backfill_start="2024-03-13", rate_limit_per_minute=110)
    metadata, check = run(cfpb, warehouse)
    assert check.passed
    assert 429 not in {r.status for r in cfpb_sim.requests}
    counts = [r for r in cfpb_sim.requests if r.query.get("size") == ["0"]]
    assert len(counts) == 1  # the check's one request, after the crawl's
