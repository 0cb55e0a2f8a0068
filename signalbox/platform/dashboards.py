"""Where alerts and reports link to.

- `SIGNALBOX_DASHBOARD_URL` set to Superset's address (`signalbox demo --bi` sets it to its
  own): the dashboard whose spec lists the asset under `links:` (signalbox/bi/dashboards),
  by its stable slug, with the time window and, for a check on one metric, that metric
  preselected in its filters (`?native_filters=`, Rison, as Superset's own links carry
  them). An asset no dashboard lists gets the Dagster page.
- A value with `{asset}` / `{check}` in it is a template for any other tool, filled in.
- Unset: the asset's page (its checks) in the Dagster UI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from urllib.parse import quote

import dagster as dg

DASHBOARD_URL_ENV = "SIGNALBOX_DASHBOARD_URL"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:3000/assets/{asset}?view=checks"
WINDOW_FILTER = "NATIVE_FILTER-window"  # every dashboard's (signalbox.bi.bundle)


def dashboard_template(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(DASHBOARD_URL_ENV) or "").strip() or DEFAULT_DASHBOARD_URL


def dashboard_link(
    template: str,
    asset_key: dg.AssetKey,
    checks: str | Sequence[str] = (),
    window: tuple[datetime, datetime] | None = None,
) -> str:
    """The link for an alert or report on `asset_key` and its checks (one name or several:
    every metric they watch is preselected; see the module's docstring)."""
    names = [checks] if isinstance(checks, str) else list(checks)
    if "{" not in template:
        target = linked_dashboards().get(asset_key.to_user_string())
        if target is not None:
            slug, metric_filter = target
            metrics = [m for m in map(_metric, names) if m]
            return superset_link(template, slug, window, metric_filter, metrics)
        template = DEFAULT_DASHBOARD_URL
    return template.replace("{asset}", quote("/".join(asset_key.path), safe="/")).replace(
        "{check}", quote(names[0] if names else "", safe="")
    )


def superset_link(
    base: str,
    slug: str,
    window: tuple[datetime, datetime] | None = None,
    metric_filter: str | None = None,
    metrics: Sequence[str] = (),
) -> str:
    """A Superset dashboard by slug, with native filter values preselected."""
    mask = {}
    if window is not None:
        span = f"{window[0]:%Y-%m-%dT%H:%M:%S} : {window[1]:%Y-%m-%dT%H:%M:%S}"
        mask[WINDOW_FILTER] = {
            "id": WINDOW_FILTER,
            "extraFormData": {"time_range": span},
            "filterState": {"value": span},
        }
    if metric_filter and metrics:
        filter_id = f"NATIVE_FILTER-{metric_filter}"
        values = list(metrics)
        mask[filter_id] = {
            "id": filter_id,
            "extraFormData": {"filters": [{"col": metric_filter, "op": "IN", "val": values}]},
            "filterState": {"value": values},
        }
    url = f"{base.rstrip('/')}/superset/dashboard/{quote(slug)}/"
    return f"{url}?native_filters={quote(rison(mask), safe='')}" if mask else url


def _metric(check_name: str) -> str | None:
    """The metric an IQR check watches: iqr_<metric>."""
    return check_name.removeprefix("iqr_") if check_name.startswith("iqr_") else None


@cache
def linked_dashboards() -> dict[str, tuple[str, str | None]]:
    """asset key (a/b) -> (dashboard slug, metric filter id or None), from the specs."""
    from signalbox.bi.bundle import load_dashboards

    links = {}
    for dashboard in load_dashboards():
        for key, options in (dashboard.spec.get("links") or {}).items():
            links[key] = (dashboard.slug, (options or {}).get("metric_filter"))
    return links


# Rison (https://github.com/Nanonid/rison), the URL-friendly JSON Superset's links use
_RISON_ID = re.compile(r"^[A-Za-z_./~][A-Za-z0-9_./~-]*$")


def rison(value) -> str:
    if value is None:
        return "!n"
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if _RISON_ID.match(value):
            return value
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, list | tuple):
        return "!(" + ",".join(rison(item) for item in value) + ")"
    if isinstance(value, dict):
        return "(" + ",".join(f"{rison(str(k))}:{rison(v)}" for k, v in value.items()) + ")"
    raise TypeError(f"no Rison for {type(value).__name__}")
