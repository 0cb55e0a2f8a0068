"""The user-activity domain: feed and messenger actions in ClickHouse -> dbt-clickhouse
models -> 15-minute IQR checks and the daily KPI report."""

import os

import dagster as dg

from signalbox.domains.user_activity import checks, models, publish, raw, report, schedules
from signalbox.domains.user_activity.source import ExistingUserActions, UserActionsSource
from signalbox.platform.dbt import activity_project, dbt_resource
from signalbox.platform.settings import env_fields, refuse_embedded


def user_actions_source() -> UserActionsSource:
    """A ClickHouse server already has the product's tables: observe them there; without
    one, the local stand-in generates them (SIGNALBOX_USER_ACTIONS=existing|generated)."""
    default = "existing" if os.environ.get("SIGNALBOX_CLICKHOUSE_URL") else "generated"
    if os.environ.get("SIGNALBOX_USER_ACTIONS", default) == "existing":
        return ExistingUserActions()
    refuse_embedded("the user-actions generator", "SIGNALBOX_USER_ACTIONS=existing")
    from signalbox.simulators.user_activity import GeneratedUserActions

    return GeneratedUserActions(**env_fields(anomalies="SIGNALBOX_ACTIVITY_ANOMALIES"))


defs = dg.Definitions.merge(
    dg.load_definitions_from_modules([raw, models, publish, checks, report, schedules]),
    dg.Definitions(
        resources={
            "user_actions": user_actions_source(),
            "activity_dbt": dbt_resource(activity_project),
        }
    ),
)
