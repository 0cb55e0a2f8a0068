"""The whole complaints graph through Dagster in one run of `complaints_refresh`: raw pull
from the simulator -> `dbt build` of the cfpb staging and complaints marts (with their
tests) -> CSV export to a moto S3 server; figures against the simulator's world."""

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import dagster as dg
import pytest
from complaints_helpers import NOW, make_world, resource_for
from moto_s3 import aws_environment, moto_server

from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.cfpb import CfpbSimulator

SINCE = date(2024, 2, 15)
BUCKET = "signalbox-complaints"
EXPORT_OBJECT = "complaints_export/date=2024-03-15/part-0.csv"
KEYS = {
    "raw/cfpb_complaints",
    "staging/stg_cfpb__complaints",
    "marts/complaints_daily_by_state_product_company",
    "marts/complaints_company_response_timeliness",
    "exports/complaints_by_state_product_company",
}
LEGACY_RESPONSE = "Closed with relief"  # used by the CFPB until 2016
RESPONSE_COLUMNS = {
    "Closed with explanation": "closed_with_explanation",
    "Closed with non-monetary relief": "closed_with_non_monetary_relief",
    "Closed with monetary relief": "closed_with_monetary_relief",
    "Closed": "closed_without_relief",
    "Untimely response": "untimely_response",
    "In progress": "in_progress",
}


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server with the standard AWS variables only (no machine profile)."""
    with aws_environment(tmp_path_factory.mktemp("aws")), moto_server() as url:
        yield url


@dataclass
class Built:
    sim: CfpbSimulator
    warehouse: WarehouseResource
    store: ObjectStoreResource
    defs: dg.Definitions
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def built(fresh_database, s3_url, code_location) -> Iterator[Built]:
    import signalbox.domains.complaints
    from signalbox.platform.dbt import dbt_resource, warehouse_project

    with (
        CfpbSimulator(make_world(), now=NOW, search_rate_per_minute=1_000_000) as sim,
        fresh_database() as warehouse,
    ):
        # a legacy response kind the marts do not know: kept, counted, and only warned about
        legacy = sim.world.complaints(date(2024, 3, 1), date(2024, 3, 2), at=NOW)[0]
        sim.update([legacy["complaint_id"]], at=NOW, company_response=LEGACY_RESPONSE)
        store = ObjectStoreResource(bucket=BUCKET, endpoint_url=s3_url)
        store.ensure_bucket()
        resources = {
            "cfpb": resource_for(sim, backfill_start=SINCE.isoformat()),
            "warehouse": warehouse,
            "warehouse_dbt": dbt_resource(warehouse_project),
            "object_store": store,
        }
        defs = dg.load_definitions_from_package_module(
            signalbox.domains.complaints, resources=resources
        )
        result = defs.resolve_job_def("complaints_refresh").execute_in_process(
            instance=dg.DagsterInstance.ephemeral()
        )
        yield Built(sim, warehouse, store, defs, result)


def world_complaints(built: Built) -> list[dict]:
    return built.sim.world.complaints(SINCE, None, at=NOW)


def test_one_run_builds_the_graph_with_lineage_and_passing_checks(built):
    assert built.result.success
    materialized = {
        e.asset_key.to_user_string() for e in built.result.get_asset_materialization_events()
    }
    assert materialized == KEYS
    graph = built.defs.resolve_asset_graph()
    for key in KEYS:
        assert graph.get(dg.AssetKey.from_user_string(key)).group_name == "complaints", key

    def parents(key: str) -> set[str]:
        node = graph.get(dg.AssetKey.from_user_string(key))
        return {p.to_user_string() for p in node.parent_keys}

    assert parents("staging/stg_cfpb__complaints") == {"raw/cfpb_complaints"}
    assert parents("marts/complaints_daily_by_state_product_company") == {
        "staging/stg_cfpb__complaints"
    }
    assert parents("exports/complaints_by_state_product_company") == {
        "marts/complaints_daily_by_state_product_company"
    }
    checks = built.result.get_asset_check_evaluations()
    names = {c.check_name for c in checks}
    assert {"cfpb_complaints_unique", "cfpb_complaints_match_api"} <= names
    assert any(n.startswith("accepted_values_stg_cfpb__complaints_timely") for n in names)
    assert {"assert_daily_mart_counts_every_complaint", "assert_company_responses_add_up"} <= names
    assert len(checks) >= 18
    failed = [c for c in checks if not c.passed]
    assert [(c.check_name[:53], c.severity) for c in failed] == [
        ("accepted_values_stg_cfpb__complaints_company_response", dg.AssetCheckSeverity.WARN)
    ]
    assert failed[0].metadata["dagster_dbt/failed_row_count"].value == 1


def test_raw_and_staging_hold_every_complaint(built):
    want = world_complaints(built)
    assert built.warehouse.scalar("SELECT count(*) FROM raw.cfpb_complaints") == len(want)
    rows = built.warehouse.query(
        "SELECT complaint_id, date_received, company, state, timely, has_narrative"
        " FROM staging.stg_cfpb__complaints"
    )
    assert {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows} == {
        c["complaint_id"]: (
            date.fromisoformat(c["date_received"][:10]),
            c["company"],
            c["state"],
            c["timely"],
            c["has_narrative"],
        )
        for c in want
    }


def test_daily_mart_equals_the_world(built):
    counts, in_progress, untimely, narrative = Counter(), Counter(), Counter(), Counter()
    for c in world_complaints(built):
        key = (date.fromisoformat(c["date_received"][:10]), c["state"], c["product"], c["company"])
        counts[key] += 1
        in_progress[key] += c["company_response"] == "In progress"
        untimely[key] += c["timely"] == "No"
        narrative[key] += c["has_narrative"]
    rows = built.warehouse.query(
        "SELECT date_received, state, product, company, complaints, complaints_in_progress,"
        " untimely_responses, complaints_with_narrative"
        " FROM marts.complaints_daily_by_state_product_company"
    )
    got = {tuple(r[:4]): tuple(r[4:]) for r in rows}
    assert len(got) == len(rows)  # one row per day, state, product and company
    assert got == {k: (n, in_progress[k], untimely[k], narrative[k]) for k, n in counts.items()}
    assert any(k[1] is None for k in got)  # complaints without a state are kept


def test_company_timeliness_equals_the_world(built):
    want: dict[str, Counter] = defaultdict(Counter)
    for c in world_complaints(built):
        company = want[c["company"]]
        company["complaints"] += 1
        company[RESPONSE_COLUMNS.get(c["company_response"], "other_responses")] += 1
        if c["company_response"] != "In progress":
            company["responses"] += 1
            company["timely_responses" if c["timely"] == "Yes" else "untimely_responses"] += 1
    columns = [
        "complaints",
        "responses",
        "timely_responses",
        "untimely_responses",
        *RESPONSE_COLUMNS.values(),
        "other_responses",
    ]
    rows = built.warehouse.query(
        f"SELECT company, {', '.join(columns)}, share_timely"
        " FROM marts.complaints_company_response_timeliness"
    )
    assert {r[0]: dict(zip(columns, r[1:-1], strict=True)) for r in rows} == {
        company: {c: figures[c] for c in columns} for company, figures in want.items()
    }
    for row in rows:
        figures = want[row[0]]
        share = figures["timely_responses"] / figures["responses"] if figures["responses"] else None
        assert (None if row[-1] is None else float(row[-1])) == pytest.approx(share)
    assert sum(f["untimely_responses"] for f in want.values()) > 0  # the share is not all 1
    assert sum(f["other_responses"] for f in want.values()) == 1  # the legacy kind, kept


def test_csv_export_equals_sql_over_the_mart(built):
    data = built.store.get_bytes(EXPORT_OBJECT)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == ["state", "product", "company", "complaints"]
    from signalbox.domains.complaints.export import EXPORT_KEY, EXPORT_SQL

    sql = built.warehouse.query(EXPORT_SQL)
    assert rows[1:] == [["" if s is None else s, p, c, str(n)] for s, p, c, n in sql]
    # and the seed's question answered from the source, independently of the mart
    world = Counter((c["state"] or "", c["product"], c["company"]) for c in world_complaints(built))
    assert {(s, p, c): int(n) for s, p, c, n in rows[1:]} == dict(world)
    assert any("," in c for _, _, c, _ in rows[1:])  # "Kimball, Tirey & St. John LLP" quoted

    [event] = [
        e for e in built.result.get_asset_materialization_events() if e.asset_key == EXPORT_KEY
    ]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["url"] == f"s3://{BUCKET}/{EXPORT_OBJECT}"
    assert metadata["dagster/row_count"] == len(rows) - 1
    assert metadata["as_of_date_received"] == "2024-03-15"


def test_export_rerun_rewrites_the_same_object(built):
    from signalbox.domains.complaints.export import complaints_by_state_product_company

    before = built.store.get_bytes(EXPORT_OBJECT)
    result = dg.materialize(
        [complaints_by_state_product_company],
        resources={"warehouse": built.warehouse, "object_store": built.store},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert built.store.get_bytes(EXPORT_OBJECT) == before
    assert built.store.list("complaints_export/") == [EXPORT_OBJECT]
