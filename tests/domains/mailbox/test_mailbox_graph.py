"""The whole mailbox graph materialized through Dagster (raw -> dbt staging -> marts, all
checks), and the marts' numbers against an independent computation over the simulator."""

from __future__ import annotations

import csv
import importlib
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from signalbox.platform.settings import DBT_ROOT
from signalbox.simulators.helpscout import HelpScoutSimulator
from signalbox.simulators.helpscout_world import HelpScoutWorld

MADRID = ZoneInfo("Europe/Madrid")
SEEDS = DBT_ROOT / "warehouse" / "seeds" / "mailbox"


NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BACKFILL_START = "2026-02-24"


@pytest.fixture(scope="module")
def stack(fresh_database):
    """One simulator and one warehouse database for the module's single materialization."""
    with (
        HelpScoutSimulator(
            world=HelpScoutWorld(seed=11), now=NOW, rate_limit_per_minute=100_000
        ) as sim,
        fresh_database() as warehouse,
    ):
        yield sim, warehouse


@pytest.fixture(scope="module")
def defs(stack):
    """The code location's Definitions, loaded with this module's environment."""
    sim, warehouse = stack
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SIGNALBOX_WAREHOUSE_URL", warehouse.url)
        env.setenv("HELPSCOUT_BASE_URL", sim.url)
        env.setenv("HELPSCOUT_CLIENT_ID", sim.client_id)
        env.setenv("HELPSCOUT_CLIENT_SECRET", sim.client_secret)
        env.setenv("HELPSCOUT_BACKFILL_START", BACKFILL_START)
        import signalbox.definitions
        import signalbox.domains.mailbox.definitions as mailbox

        importlib.reload(mailbox)  # its Help Scout resource reads this environment
        yield importlib.reload(signalbox.definitions).defs


@pytest.fixture(scope="module")
def materialized(defs):
    result = defs.resolve_job_def("mailbox_hourly").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return result


def mailbox_keys(defs) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return [k for k in graph.materializable_asset_keys if graph.get(k).group_name == "mailbox"]


def test_whole_graph_materializes_with_lineage_and_passing_checks(defs, materialized):
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}  # fmt: skip
    assert "raw/helpscout_conversations" in parents["staging/stg_helpscout__threads"]
    assert "staging/stg_helpscout__conversations" in parents["marts/fct_helpscout__conversations"]
    materialized_keys = {e.asset_key for e in materialized.get_asset_materialization_events()}
    assert materialized_keys == set(mailbox_keys(defs))
    checks = materialized.get_asset_check_evaluations()
    assert len(checks) > 40
    failed = [c.check_name for c in checks if not c.passed]
    assert failed == []
    raw = next(
        e.materialization
        for e in materialized.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "raw/helpscout_conversations"
    )
    assert raw.metadata["pages_fetched"].value > 1
    assert raw.metadata["dagster/row_count"].value == raw.metadata["new"].value


def test_marts_equal_an_independent_computation(materialized, stack):
    sim, warehouse = stack
    since = datetime.fromisoformat(BACKFILL_START).replace(tzinfo=UTC)
    conversations = sim.world.conversations(sim.now, modified_since=since)
    received, answered, first_response = Counter(), Counter(), {}
    calendar = BusinessCalendar()
    for conversation in conversations:
        threads = sorted(
            conversation["_embedded"]["threads"], key=lambda t: (t["createdAt"], t["id"])
        )
        mailbox = conversation["mailboxId"]
        for thread in threads:
            local_day = _ts(thread["createdAt"]).astimezone(MADRID).date()
            if thread["type"] == "customer":
                received[mailbox, local_day] += 1
            if _is_reply(thread):
                answered[mailbox, local_day] += 1
        customer = next((t for t in threads if t["type"] == "customer"), None)
        reply = customer and next(
            (t for t in threads if _is_reply(t) and t["createdAt"] > customer["createdAt"]), None
        )
        if reply:
            start, end = _ts(customer["createdAt"]), _ts(reply["createdAt"])
            first_response[conversation["id"]] = (
                (end - start).total_seconds() / 60,
                calendar.business_minutes(start, end),
            )

    daily = warehouse.query(
        "SELECT mailbox_id, day, emails_received, emails_answered FROM marts.mailbox_emails_daily"
    )
    assert {(m, d): r for m, d, r, _ in daily if r} == dict(received)
    assert {(m, d): a for m, d, _, a in daily if a} == dict(answered)
    hourly_total = warehouse.scalar("SELECT sum(emails_received) FROM marts.mailbox_emails_hourly")
    assert hourly_total == sum(received.values())

    stored = {
        cid: (float(minutes), float(business))
        for cid, minutes, business in warehouse.query(
            "SELECT conversation_id, first_response_minutes, first_response_business_minutes"
            " FROM marts.fct_helpscout__conversations WHERE is_replied"
        )
    }
    assert stored.keys() == first_response.keys()
    for cid, (minutes, business) in first_response.items():
        assert stored[cid] == pytest.approx((minutes, business), abs=1e-6), cid
    # the business clock runs slower than the wall clock, and it really differs here
    assert sum(b for _, b in first_response.values()) < sum(m for m, _ in first_response.values())


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _is_reply(thread) -> bool:
    return (
        thread["type"] == "message"
        and thread["createdBy"]["type"] == "user"
        and thread.get("state") != "draft"
    )


class BusinessCalendar:
    """Business hours and holidays from the dbt seeds, evaluated in plain Python."""

    def __init__(self):
        with open(SEEDS / "business_hours.csv") as f:
            self.hours = {
                int(r["iso_weekday"]): (time.fromisoformat(r["opens_at"]),
                                        time.fromisoformat(r["closes_at"]))
                for r in csv.DictReader(f)
            }  # fmt: skip
        with open(SEEDS / "holidays.csv") as f:
            self.holidays = {date.fromisoformat(r["holiday_date"]) for r in csv.DictReader(f)}

    def business_minutes(self, start: datetime, end: datetime) -> float:
        total = 0.0
        day = start.astimezone(MADRID).date()
        while day <= end.astimezone(MADRID).date():
            hours = self.hours.get(day.isoweekday())
            if hours and day not in self.holidays:
                opens = datetime.combine(day, hours[0], MADRID)
                closes = datetime.combine(day, hours[1], MADRID)
                overlap = min(end, closes) - max(start, opens)
                total += max(overlap, timedelta(0)).total_seconds() / 60
            day += timedelta(days=1)
        return total
