"""Does the warehouse hold what the API holds? The check each complaints run ends with.

It asks with the run's own client, after the crawl, so its requests are paced with the
crawl's under the API's 20/min throttle (a check with a client of its own fired right
after the crawl and met a 429 on every run).

One `size=0` count over the stored range; only when it differs, where the difference
lies decides what it means:
- in the window this run has just read whole: a difference that survives a full re-read
  (ERROR);
- before it, but within the reach of the next reconcile pass (late publications, updated
  responses): repaired on that pass (WARN);
- beyond every pass: it stays missing until someone re-fetches that range (ERROR, the run
  config to do it is in the metadata).
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from signalbox.domains.complaints.cfpb import CfpbClient, DayWindow
from signalbox.domains.complaints.ingest import COMPLAINTS, stored_in, table_exists
from signalbox.platform.warehouse import WarehouseResource

MATCH_API = "cfpb_complaints_match_api"


def match_api_spec(asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        MATCH_API,
        asset=asset,
        description=(
            "Between the oldest and newest stored date received, the stored complaint count "
            "equals the API's hits.total (asked with the run's client, after its crawl). A "
            "difference in the window the run read, or older than any reconcile pass reaches, "
            "fails; one the next reconcile pass will fetch warns."
        ),
    )


def compare_with_api(
    client: CfpbClient,
    warehouse: WarehouseResource,
    *,
    read: DayWindow | None,
    reachable_from: date | None,
    pass_name: str,
) -> dg.AssetCheckResult:
    """`read`: the window this run read whole; `reachable_from`: the first day the next
    reconcile pass re-reads (None when this run was that pass)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not table_exists(cur):
            return _result(True, {"stored": 0, "pass": pass_name})
        cur.execute(
            f"SELECT min(date_received), max(date_received), count(*) FROM {COMPLAINTS.name}"
        )
        first, last, stored = cur.fetchone()
    if first is None:
        return _result(True, {"stored": 0, "pass": pass_name})
    whole = DayWindow(first, last + timedelta(days=1))
    api_total = client.count(whole)
    metadata: dict[str, object] = {
        "range": whole.label,
        "stored": stored,
        "api_total": api_total,
        "missing": max(0, api_total - stored),
        "pass": pass_name,
    }
    if api_total <= stored:
        return _result(True, metadata)

    def missing_in(window: DayWindow) -> int:
        return max(0, client.count(window) - stored_in(warehouse, window))

    in_read = missing_in(read) if read is not None else 0
    repairable = 0
    if read is not None and reachable_from is not None and reachable_from < read.start:
        repairable = missing_in(DayWindow(max(first, reachable_from), read.start))
    beyond = max(0, api_total - stored - in_read - repairable)
    metadata |= {
        "missing_in_window_read": in_read,
        "missing_next_reconcile_fetches": repairable,
        "missing_beyond_every_pass": beyond,
    }
    if beyond:
        end = (read.start if read else whole.end) - timedelta(days=1)
        metadata["refetch_with"] = (
            f'{{"start_date": "{first}", "end_date": "{end}"}} (complaints_refresh run config)'
        )
    if in_read or beyond:
        return _result(False, metadata, dg.AssetCheckSeverity.ERROR)
    return _result(False, metadata, dg.AssetCheckSeverity.WARN)


def _result(
    passed: bool,
    metadata: dict[str, object],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=MATCH_API, passed=passed, severity=severity, metadata=metadata
    )
