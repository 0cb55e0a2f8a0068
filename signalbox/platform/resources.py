"""Every resource, configured from the environment (`EnvVar`: values never enter run config).

Unset optional variables fall back to the embedded engines; see README for the list.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

from signalbox.assets.complaints.cfpb import CfpbResource
from signalbox.assets.game_timelines.neople import NeopleResource
from signalbox.assets.mailbox.helpscout import HelpScoutResource
from signalbox.assets.user_activity import ExistingUserActions, GeneratedUserActions
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.dbt import activity_project, warehouse_project
from signalbox.platform.email import EmailResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.telegram import TelegramResource
from signalbox.platform.warehouse import WarehouseResource


def from_env(**fields: str) -> dict[str, dg.EnvVar]:
    """`field=VARIABLE` pairs -> `{field: EnvVar(VARIABLE)}` for the variables that are set;
    fields whose variable is unset keep their defaults."""
    return {field: dg.EnvVar(var) for field, var in fields.items() if os.environ.get(var)}


def user_actions_source() -> ExistingUserActions | GeneratedUserActions:
    """A production ClickHouse already has the user-action tables: observe them there;
    elsewhere generate them (SIGNALBOX_USER_ACTIONS=existing|generated overrides)."""
    default = "existing" if os.environ.get("SIGNALBOX_CLICKHOUSE_URL") else "generated"
    if os.environ.get("SIGNALBOX_USER_ACTIONS", default) == "existing":
        return ExistingUserActions()
    return GeneratedUserActions(**from_env(anomalies="SIGNALBOX_ACTIVITY_ANOMALIES"))


def build_resources() -> dict[str, Any]:
    return {
        "warehouse": WarehouseResource(**from_env(url="SIGNALBOX_WAREHOUSE_URL")),
        "warehouse_dbt": DbtCliResource(project_dir=warehouse_project),
        "clickhouse": ClickHouseResource(**from_env(url="SIGNALBOX_CLICKHOUSE_URL")),
        "activity_dbt": DbtCliResource(project_dir=activity_project),
        "user_actions": user_actions_source(),
        "telegram": TelegramResource.from_env(),
        "neople": NeopleResource.from_env(),
        "cfpb": CfpbResource.from_env(),
        "object_store": ObjectStoreResource.from_env(),
        "email": EmailResource.from_env(),
        "helpscout": HelpScoutResource(
            client_id=dg.EnvVar("HELPSCOUT_CLIENT_ID"),
            client_secret=dg.EnvVar("HELPSCOUT_CLIENT_SECRET"),
            **from_env(base_url="HELPSCOUT_BASE_URL", backfill_start="HELPSCOUT_BACKFILL_START"),
        ),
    }
