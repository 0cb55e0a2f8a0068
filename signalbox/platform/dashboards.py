"""Where alerts and reports link to: `SIGNALBOX_DASHBOARD_URL`, else the asset's page in
the Dagster UI. The template's `{asset}` (the key's path, a/b) and `{check}` are filled in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

import dagster as dg

DASHBOARD_URL_ENV = "SIGNALBOX_DASHBOARD_URL"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:3000/assets/{asset}?view=checks"


def dashboard_template(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(DASHBOARD_URL_ENV) or "").strip() or DEFAULT_DASHBOARD_URL


def dashboard_link(template: str, asset_key: dg.AssetKey, check_name: str = "") -> str:
    """The dashboard URL with `{asset}` and `{check}` filled in."""
    return template.replace("{asset}", quote("/".join(asset_key.path), safe="/")).replace(
        "{check}", quote(check_name, safe="")
    )
