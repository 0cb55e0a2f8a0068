"""The Dagster code location: every domain's definitions, the shared resources, and the
alert sensors that watch every domain: IQR breaches, and sources gone silent.

A domain is a package under `signalbox.domains` with a `definitions.py` holding `defs`;
it is found here by its folder, so adding one edits nothing in this file.
"""

import importlib
import pkgutil
import warnings

import dagster as dg

import signalbox.domains
from signalbox.checks.iqr import iqr_check_keys
from signalbox.domains import production_variables
from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.dbt import dbt_resource, warehouse_project
from signalbox.platform.email import EmailResource
from signalbox.platform.kafka import KafkaResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.settings import env_fields, in_production, require
from signalbox.platform.telegram import TelegramResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.sensors.freshness_alerts import build_freshness_alert_sensor, freshness_expectations
from signalbox.sensors.iqr_alerts import build_iqr_alert_sensor

# gathering definitions from modules is a Dagster "preview" API; say so once, here
warnings.filterwarnings("ignore", message=".*load_definitions_from", category=dg.PreviewWarning)


def domain_definitions() -> list[dg.Definitions]:
    """`defs` of every `signalbox.domains.<name>.definitions`."""
    return [
        importlib.import_module(f"{signalbox.domains.__name__}.{module.name}.definitions").defs
        for module in pkgutil.iter_modules(signalbox.domains.__path__)
        if module.ispkg
    ]


def shared_resources() -> dict[str, object]:
    """The engines and channels every domain uses, configured from the environment."""
    return {
        "warehouse": WarehouseResource(**env_fields(url="SIGNALBOX_WAREHOUSE_URL")),
        "warehouse_dbt": dbt_resource(warehouse_project),
        "clickhouse": ClickHouseResource(**env_fields(url="SIGNALBOX_CLICKHOUSE_URL")),
        "object_store": ObjectStoreResource.from_env(),
        "kafka": KafkaResource.from_env(),
        "email": EmailResource.from_env(),
        "telegram": TelegramResource.from_env(),
    }


def build_definitions() -> dg.Definitions:
    if in_production():  # fail closed, before any resource is built
        require(production_variables())
    domains = dg.Definitions.merge(*domain_definitions())
    return dg.Definitions.merge(
        domains,
        dg.Definitions(
            sensors=[
                build_iqr_alert_sensor(iqr_check_keys(domains.asset_checks or [])),
                build_freshness_alert_sensor(freshness_expectations(domains.assets or [])),
            ],
            resources=shared_resources(),
            # Steps mostly wait on databases and APIs; one process per run avoids
            # re-importing the code for every step (seconds each on two cores).
            executor=dg.in_process_executor,
        ),
    )


defs = build_definitions()
