"""The dashboards as code (signalbox/bi/dashboards/*.yaml -> Superset's import format) and
the links alerts and reports carry to them. Rendering needs no Superset: the import itself,
and each dashboard drawn with data, are checked in the browser by the demo's e2e test."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import pytest
import yaml

from signalbox.bi import bundle
from signalbox.platform.dashboards import (
    DEFAULT_DASHBOARD_URL,
    dashboard_link,
    rison,
    superset_link,
)
from signalbox.platform.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

URI = "postgresql+psycopg2://signalbox:secret@127.0.0.1:5432/signalbox"


def some_columns(dashboards) -> dict[str, list[tuple[str, str]]]:
    return {table: [("day", "date"), ("value", "bigint")] for table in bundle.tables(dashboards)}


def rendered() -> dict[str, dict]:
    dashboards = bundle.load_dashboards()
    files = bundle.render(dashboards, URI, some_columns(dashboards))
    return {path: yaml.safe_load(text) for path, text in files.items()}


def test_every_dashboard_renders_into_superset_import_files():
    dashboards = bundle.load_dashboards()
    assert {d.slug for d in dashboards} == {
        "support", "user-activity", "game-timelines", "complaints", "tickets",
    }  # fmt: skip
    files = rendered()
    assert files["databases/signalbox_warehouse.yaml"]["sqlalchemy_uri"] == URI
    charts = {path: doc for path, doc in files.items() if path.startswith("charts/")}
    assert len(charts) == sum(len(d.spec["charts"]) for d in dashboards)
    datasets = {doc["uuid"] for path, doc in files.items() if path.startswith("datasets/")}
    for dashboard in dashboards:
        board = files[f"dashboards/{dashboard.slug}.yaml"]
        placed = [c["meta"] for c in board["position"].values() if isinstance(c, dict)
                  and c.get("type") == "CHART"]  # fmt: skip
        assert len(placed) == len(dashboard.spec["charts"])
        chart_uuids = {doc["uuid"] for doc in charts.values()}
        assert {meta["uuid"] for meta in placed} <= chart_uuids
        for row in (c for c in board["position"].values() if isinstance(c, dict)):
            if row.get("type") == "ROW":
                assert sum(board["position"][c]["meta"]["width"] for c in row["children"]) <= 12
        filters = board["metadata"]["native_filter_configuration"]
        assert [f["id"] for f in filters] == dashboard.filter_ids
        for native in filters[1:]:
            assert native["targets"][0]["datasetUuid"] in datasets
    # the support dashboard's five views of the seed (and arrivals by hour)
    support = {doc["slice_name"] for path, doc in charts.items() if "/support/" in path}
    assert len(support) >= 5


def test_rendering_is_deterministic_so_reimports_update_the_same_objects():
    dashboards = bundle.load_dashboards()
    first = bundle.render(dashboards, URI, some_columns(dashboards))
    assert bundle.render(dashboards, URI, some_columns(dashboards)) == first


def test_filters_apply_only_to_the_datasets_they_name():
    files = rendered()
    board = files["dashboards/user-activity.yaml"]
    position = board["position"]
    chart_ids = {c["meta"]["sliceName"]: c["meta"]["chartId"] for c in position.values()
                 if isinstance(c, dict) and c.get("type") == "CHART"}  # fmt: skip
    by_id = {f["id"]: f for f in board["metadata"]["native_filter_configuration"]}
    metric = by_id["NATIVE_FILTER-metric"]
    assert metric["chartsInScope"] == [
        chart_ids["Alerted metrics every 15 minutes (an alert's link picks them)"]
    ]
    assert len(metric["scope"]["excluded"]) == len(chart_ids) - 1
    assert sorted(by_id["NATIVE_FILTER-window"]["chartsInScope"]) == sorted(chart_ids.values())


def test_the_tables_dashboards_read_are_models_or_published_marts():
    """A renamed model fails here, not as an empty tile in front of a person."""
    from signalbox.domains.user_activity.publish import PUBLISHED, SCHEMA

    models = {
        p.stem for p in (PROJECT_ROOT / "dbt_project" / "warehouse" / "models").rglob("*.sql")
    }
    published = {f"{SCHEMA}.{p.table}" for p in PUBLISHED}
    published |= {f"{SCHEMA}.{p.table}_long" for p in PUBLISHED if p.long_keys}
    for table in bundle.tables(bundle.load_dashboards()):
        schema, _, name = table.partition(".")
        assert table in published or (schema == "marts" and name in models), table


def test_linked_assets_exist():
    from signalbox.definitions import defs
    from signalbox.platform.dashboards import linked_dashboards

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(linked_dashboards()) <= keys
    # every source whose silence is alerted opens a dashboard
    from signalbox.sensors.freshness_alerts import freshness_expectations

    watched = {e.asset_key.to_user_string() for e in freshness_expectations(defs.assets or [])}
    assert watched <= set(linked_dashboards())


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"metrics": {"x": "sum(a); drop table b"}}, "is not aggregate"),
        ({"viz": "pie"}, "viz must be one of"),
        ({"dataset": "nowhere"}, "no dataset 'nowhere'"),
        ({"viz": "table", "order_by": "nope"}, "order_by must be a metric"),
    ],
)
def test_a_spec_that_cannot_render_names_its_file_and_chart(tmp_path: Path, spec, error):
    chart = {"title": "T", "dataset": "d", "viz": "line", "metrics": {"x": "sum(a)"}} | spec
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "slug": "bad", "title": "Bad", "datasets": {"d": {"table": "marts.t", "time": "day"}},
        "charts": [chart],
    }))  # fmt: skip
    dashboards = bundle.load_dashboards(tmp_path)
    with pytest.raises(bundle.SpecError, match=f"bad.yaml: .*{error}"):
        bundle.render(dashboards, URI, some_columns(dashboards))


def test_rison_as_superset_reads_it():
    assert rison({"a": [1, "x y", True, None], "b": "it's!"}) == "(a:!(1,'x y',!t,!n),b:'it!'s!!')"
    assert rison("NATIVE_FILTER-window") == "NATIVE_FILTER-window"
    assert rison("") == "''"


WINDOW = (datetime(2026, 12, 3, 11), datetime(2026, 12, 4, 11, 30))


def test_an_alert_opens_its_dashboard_with_the_metric_and_window_preselected():
    link = dashboard_link(
        "https://bi.example.org", dg.AssetKey(["marts", "activity_metrics_15min"]),
        ["iqr_views", "iqr_ctr"], WINDOW,
    )  # fmt: skip
    assert link.startswith(
        "https://bi.example.org/superset/dashboard/user-activity/?native_filters="
    )
    filters = unquote(link.split("native_filters=")[1])
    assert "time_range:'2026-12-03T11:00:00 : 2026-12-04T11:30:00'" in filters
    assert "NATIVE_FILTER-metric:(id:NATIVE_FILTER-metric" in filters
    assert "val:!(views,ctr)" in filters and "filterState:(value:!(views,ctr))" in filters


def test_links_without_superset_or_without_a_dashboard_go_to_the_dagster_page():
    key = dg.AssetKey(["marts", "activity_metrics_15min"])
    assert dashboard_link(DEFAULT_DASHBOARD_URL, key, "iqr_views") == (
        "http://127.0.0.1:3000/assets/marts/activity_metrics_15min?view=checks"
    )
    unlisted = dg.AssetKey(["staging", "stg_helpscout__threads"])
    assert dashboard_link("https://bi.example.org", unlisted).startswith("http://127.0.0.1:3000/")
    # a template for another tool is filled in as before
    assert dashboard_link("https://grafana/d/{asset}?c={check}", key, "iqr_views") == (
        "https://grafana/d/marts/activity_metrics_15min?c=iqr_views"
    )
    assert superset_link("http://h:8088/", "support") == "http://h:8088/superset/dashboard/support/"


def test_without_superset_signalbox_bi_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from signalbox.cli import main

    monkeypatch.setattr("signalbox.cli.stop_on_signals", lambda: None)  # pytest's own stay
    not_executable = tmp_path / "superset"
    not_executable.write_text("")
    monkeypatch.setenv("SIGNALBOX_SUPERSET", str(not_executable))
    monkeypatch.setenv("SIGNALBOX_HOME", str(tmp_path))
    assert main(["bi", "--reset-password"]) == 1
    assert "SIGNALBOX_SUPERSET" in capsys.readouterr().err
    monkeypatch.delenv("SIGNALBOX_SUPERSET")
    monkeypatch.setattr("signalbox.bi.superset.PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert main(["bi", "--reset-password"]) == 1
    assert "make bi-install" in capsys.readouterr().err
