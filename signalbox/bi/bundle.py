"""The dashboards as code: `dashboards/*.yaml` (one short file per dashboard) rendered into
Superset's import format (databases/, datasets/, charts/, dashboards/ YAML, the layout
Superset itself exports), for `superset import-directory --overwrite`.

Superset's own export is ~100 lines per chart with database ids inside; the specs here
say only what a reviewer needs (tables, metrics, breakdowns, filters) and everything else
is derived, deterministically: each object's UUID comes from the dashboard's slug and its
name, so a re-import updates the same objects and links keep working.

A spec:

    slug: support                      # the dashboard's stable URL: /superset/dashboard/support/
    title: Support mailboxes
    links:                             # alerts and reports on these assets open it
      raw/helpscout_conversations: {}  # ({metric_filter: <filter id>}: the check's metric)
    datasets:
      emails_daily: {table: marts.mailbox_emails_daily, time: day}
    filters:                           # native filters; `applies_to`: the datasets filtered
      - {id: mailbox, name: Mailbox, column: mailbox_name, dataset: emails_daily,
         single: true, applies_to: [emails_daily]}   # `default: <value>`: preselected
    charts:
      - title: Mail received, by day
        dataset: emails_daily
        viz: line                      # line | bar (over time, or `x:` a column) | table
        metrics: {Received: sum(emails_received)}
        groupby: [mailbox_name]        # optional series / table rows
        grain: P1D                     # optional time grain (PT15M, PT1H, P1D...)
        width: 6                       # of 12
        order_by: Received             # tables: sort by this metric, descending

Every dashboard also gets a time-window filter (`NATIVE_FILTER-window`) and, per filter,
`NATIVE_FILTER-<id>`: the ids links use to preselect values (`signalbox.bi.links`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from signalbox.bi import BiError
from signalbox.platform.dashboards import WINDOW_FILTER

SPECS = Path(__file__).with_name("dashboards")
NAMESPACE = uuid.UUID("6f1c7f0e-2f1a-4d0a-9a57-5b1d3c0b7a11")  # signalbox's, fixed forever
DATABASE_NAME = "signalbox warehouse"
VERSION = "1.0.0"
_VIZ = {"line": "echarts_timeseries_line", "bar": "echarts_timeseries_bar", "table": "table"}
_METRIC = re.compile(r"^(sum|avg|min|max|count)\((\w+)\)$")


class SpecError(BiError):
    """A dashboard spec that cannot be rendered: names the file and the entry."""


def stable_uuid(*names: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(names)))


def database_uuid() -> str:
    return stable_uuid("database", DATABASE_NAME)


@dataclass(frozen=True)
class Dashboard:
    path: Path
    spec: dict[str, Any]

    @property
    def slug(self) -> str:
        return self.spec["slug"]

    @property
    def title(self) -> str:
        return self.spec["title"]

    @property
    def filter_ids(self) -> list[str]:
        return [WINDOW_FILTER] + [f"NATIVE_FILTER-{f['id']}" for f in self.spec.get("filters", [])]

    def dataset_uuid(self, name: str) -> str:
        table = self._datasets()[name]["table"]
        return stable_uuid("dataset", table)  # one dataset per table, shared by dashboards

    def chart_uuid(self, title: str) -> str:
        return stable_uuid("chart", self.slug, title)

    def _datasets(self) -> dict[str, dict[str, Any]]:
        return self.spec.get("datasets", {})

    def _fail(self, what: str) -> SpecError:
        return SpecError(f"{self.path.name}: {what}")


def load_dashboards(folder: Path = SPECS) -> list[Dashboard]:
    dashboards = []
    for path in sorted(folder.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        dashboard = Dashboard(path, spec)
        for key in ("slug", "title", "datasets", "charts"):
            if not spec.get(key):
                raise dashboard._fail(f"no {key}")
        dashboards.append(dashboard)
    slugs = [d.slug for d in dashboards]
    if len(set(slugs)) != len(slugs):
        raise SpecError(f"dashboard slugs repeat: {sorted(slugs)}")
    return dashboards


def metric(label: str, expression: str, dashboard: Dashboard) -> dict[str, Any]:
    """An ad-hoc SQL metric; only aggregate(column) so a spec cannot smuggle SQL in."""
    match = _METRIC.match(expression.strip())
    if not match:
        raise dashboard._fail(f"metric {label!r}: {expression!r} is not aggregate(column)")
    function, column = match.groups()
    return {
        "expressionType": "SQL",
        "sqlExpression": f"{function.upper()}({column})",
        "label": label,
        "hasCustomLabel": True,
        "optionName": f"metric_{stable_uuid(label)[:8]}",
    }


def chart_params(dashboard: Dashboard, chart: dict[str, Any]) -> dict[str, Any]:
    dataset = dashboard._datasets().get(chart["dataset"])
    if dataset is None:
        raise dashboard._fail(f"chart {chart['title']!r}: no dataset {chart['dataset']!r}")
    viz = _VIZ.get(chart.get("viz", ""))
    if viz is None:
        raise dashboard._fail(f"chart {chart['title']!r}: viz must be one of {sorted(_VIZ)}")
    metrics = [metric(label, expr, dashboard) for label, expr in chart["metrics"].items()]
    time = dataset.get("time")
    params: dict[str, Any] = {
        "viz_type": viz,
        "metrics": metrics,
        "groupby": chart.get("groupby", []),
        "adhoc_filters": [],
        "row_limit": 10000,
        "color_scheme": "supersetColors",
        "show_legend": True,
    }
    if time:
        params["granularity_sqla"] = time
        params["adhoc_filters"] = [
            {
                "clause": "WHERE",
                "subject": time,
                "operator": "TEMPORAL_RANGE",
                "comparator": "No filter",
                "expressionType": "SIMPLE",
            }
        ]
    if viz == "table":
        params |= {"query_mode": "aggregate", "order_desc": True, "include_time": False}
        if order := chart.get("order_by"):
            if order not in chart["metrics"]:
                raise dashboard._fail(f"chart {chart['title']!r}: order_by must be a metric")
            params["timeseries_limit_metric"] = metrics[list(chart["metrics"]).index(order)]
        return params
    x_axis = chart.get("x", time)
    if not x_axis:
        raise dashboard._fail(f"chart {chart['title']!r}: a {viz} needs a time column or x")
    params |= {
        "x_axis": x_axis,
        "time_grain_sqla": chart.get("grain", "P1D") if x_axis == time else None,
        "rich_tooltip": True,
        "y_axis_format": "SMART_NUMBER",
        "x_axis_time_format": "smart_date",
        "truncate_metric": True,
        "order_desc": True,
    }
    if x_axis != time:
        params["x_axis_sort_asc"] = True
    if viz == "echarts_timeseries_line":  # a window of one day is one point: show it
        params |= {"markerEnabled": True, "markerSize": 4}
    return params


def native_filters(dashboard: Dashboard, chart_ids: dict[str, int]) -> list[dict[str, Any]]:
    """A time window over every chart, then the spec's select filters, each scoped to the
    charts of the datasets it applies to (Superset takes exclusions by chart id)."""
    datasets_of = {c["title"]: c["dataset"] for c in dashboard.spec["charts"]}
    window = {
        "id": WINDOW_FILTER,
        "name": "Time window",
        "filterType": "filter_time",
        "targets": [{}],
        "controlValues": {"enableEmptyFilter": False},
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
        "type": "NATIVE_FILTER",
        "description": "The days shown (links from alerts preselect the alert's window)",
        "chartsInScope": sorted(chart_ids.values()),
        "tabsInScope": [],
    }
    filters = [window]
    for entry in dashboard.spec.get("filters", []):
        if entry["dataset"] not in dashboard._datasets():
            raise dashboard._fail(f"filter {entry['id']!r}: no dataset {entry['dataset']!r}")
        applies = set(entry.get("applies_to", [entry["dataset"]]))
        excluded = [i for title, i in chart_ids.items() if datasets_of[title] not in applies]
        filters.append(
            {
                "id": f"NATIVE_FILTER-{entry['id']}",
                "name": entry["name"],
                "filterType": "filter_select",
                "targets": [
                    {
                        "column": {"name": entry["column"]},
                        "datasetUuid": dashboard.dataset_uuid(entry["dataset"]),
                    }
                ],
                "controlValues": {
                    "enableEmptyFilter": False,
                    "defaultToFirstItem": False,
                    "multiSelect": not entry.get("single", False),
                    "searchAllOptions": False,
                    "inverseSelection": False,
                },
                "defaultDataMask": default_mask(entry),
                "cascadeParentIds": [],
                "scope": {"rootPath": ["ROOT_ID"], "excluded": sorted(excluded)},
                "type": "NATIVE_FILTER",
                "description": "",
                "chartsInScope": sorted(set(chart_ids.values()) - set(excluded)),
                "tabsInScope": [],
            }
        )
    return filters


def default_mask(entry: dict[str, Any]) -> dict[str, Any]:
    """A select filter's value on opening: the spec's `default`, or none (everything)."""
    if "default" not in entry:
        return {"extraFormData": {}, "filterState": {}, "ownState": {}}
    values = [str(entry["default"])]
    return {
        "extraFormData": {"filters": [{"col": entry["column"], "op": "IN", "val": values}]},
        "filterState": {"value": values},
        "ownState": {},
    }


def position(dashboard: Dashboard, chart_ids: dict[str, int]) -> dict[str, Any]:
    """Rows of charts, 12 units wide, in the spec's order."""
    layout: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": dashboard.title}},
    }
    rows: list[list[tuple[dict[str, Any], int]]] = [[]]
    for chart in dashboard.spec["charts"]:
        width = int(chart.get("width", 6))
        if sum(w for _, w in rows[-1]) + width > 12:
            rows.append([])
        rows[-1].append((chart, width))
    for number, row in enumerate(rows, start=1):
        row_id = f"ROW-{number}"
        layout["GRID_ID"]["children"].append(row_id)
        layout[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for chart, width in row:
            chart_id = chart_ids[chart["title"]]
            component = f"CHART-{chart_id}"
            layout[row_id]["children"].append(component)
            layout[component] = {
                "type": "CHART",
                "id": component,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "chartId": chart_id,
                    "width": width,
                    "height": 50,
                    "uuid": dashboard.chart_uuid(chart["title"]),
                    "sliceName": chart["title"],
                },
            }
    return layout


def tables(dashboards: list[Dashboard]) -> set[str]:
    """Every `schema.table` the dashboards read."""
    return {d["table"] for dashboard in dashboards for d in dashboard._datasets().values()}


def column(name: str, sql_type: str) -> dict[str, Any]:
    return {
        "column_name": name,
        "type": sql_type.upper(),
        "is_dttm": sql_type.startswith(("date", "timestamp")),
        "groupby": True,
        "filterable": True,
        "is_active": True,
        "expression": None,
        "description": None,
        "verbose_name": None,
        "python_date_format": None,
        "advanced_data_type": None,
        "extra": None,
    }


def render(
    dashboards: list[Dashboard], warehouse_uri: str, columns: dict[str, list[tuple[str, str]]]
) -> dict[str, str]:
    """Superset's import files (relative path -> YAML text) for these dashboards, on one
    database entry whose URI (with its password) is `warehouse_uri`; `columns` gives each
    table's (name, type) as the warehouse has them."""
    files = {
        "metadata.yaml": _dump({"version": VERSION, "timestamp": "2026-01-01T00:00:00+00:00"}),
        "databases/signalbox_warehouse.yaml": _dump(
            {
                "database_name": DATABASE_NAME,
                "sqlalchemy_uri": warehouse_uri,
                "cache_timeout": None,
                "expose_in_sqllab": True,
                "allow_run_async": False,
                "allow_ctas": False,
                "allow_cvas": False,
                "allow_dml": False,
                "allow_file_upload": False,
                "extra": {"allows_virtual_table_explore": True},
                "uuid": database_uuid(),
                "version": VERSION,
            }
        ),
    }
    next_id = 1
    for dashboard in dashboards:
        for name, dataset in dashboard._datasets().items():
            schema, _, table = dataset["table"].partition(".")
            files[f"datasets/signalbox_warehouse/{schema}.{table}.yaml"] = _dump(
                {
                    "table_name": table,
                    "schema": schema,
                    "main_dttm_col": dataset.get("time"),
                    "description": f"{dataset['table']} (dashboard {dashboard.slug}, {name})",
                    "sql": None,
                    "params": None,
                    "template_params": None,
                    "filter_select_enabled": True,
                    "fetch_values_predicate": None,
                    "extra": None,
                    "uuid": dashboard.dataset_uuid(name),
                    "metrics": [],
                    "columns": [column(*c) for c in columns[dataset["table"]]],
                    "version": VERSION,
                    "database_uuid": database_uuid(),
                    "offset": 0,
                    "cache_timeout": None,
                }
            )
        chart_ids: dict[str, int] = {}
        for chart in dashboard.spec["charts"]:
            if chart["title"] in chart_ids:
                raise dashboard._fail(f"two charts are titled {chart['title']!r}")
            chart_ids[chart["title"]] = next_id
            next_id += 1
            params = chart_params(dashboard, chart)
            files[f"charts/{dashboard.slug}/{chart_ids[chart['title']]:03d}.yaml"] = _dump(
                {
                    "slice_name": chart["title"],
                    "description": None,
                    "certified_by": None,
                    "certification_details": None,
                    "viz_type": params["viz_type"],
                    "params": params,
                    "query_context": None,
                    "cache_timeout": None,
                    "uuid": dashboard.chart_uuid(chart["title"]),
                    "version": VERSION,
                    "dataset_uuid": dashboard.dataset_uuid(chart["dataset"]),
                }
            )
        files[f"dashboards/{dashboard.slug}.yaml"] = _dump(
            {
                "dashboard_title": dashboard.title,
                "description": None,
                "css": "",
                "slug": dashboard.slug,
                "certified_by": "",
                "certification_details": "",
                "published": True,
                "uuid": stable_uuid("dashboard", dashboard.slug),
                "position": position(dashboard, chart_ids),
                "metadata": {
                    "native_filter_configuration": native_filters(dashboard, chart_ids),
                    "color_scheme": "supersetColors",
                    "cross_filters_enabled": False,
                    "refresh_frequency": 0,
                    "expanded_slices": {},
                    "label_colors": {},
                    "timed_refresh_immune_slices": [],
                    "default_filters": "{}",
                },
                "version": VERSION,
            }
        )
    return files


def write(files: dict[str, str], folder: Path) -> None:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
