"""The dbt-postgres warehouse project as Dagster assets: staging -> intermediate -> marts.

dbt tests become asset checks; row counts of the built tables become metadata. Sources
point at the raw Python assets (meta.dagster.asset_key), so lineage is one graph.
"""

import os

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from signalbox.platform.dbt import SignalboxDbtTranslator, warehouse_project
from signalbox.platform.warehouse import WarehouseResource


@dbt_assets(
    manifest=warehouse_project.manifest_path,
    project=warehouse_project,
    dagster_dbt_translator=SignalboxDbtTranslator(),
    name="warehouse_dbt_models",
)
def warehouse_dbt_models(
    context: dg.AssetExecutionContext,
    warehouse_dbt: DbtCliResource,
    warehouse: WarehouseResource,
):
    # dbt runs as a subprocess and reads its connection from libpq variables (profiles.yml)
    os.environ.update(warehouse.dbt_env())
    yield from warehouse_dbt.cli(["build"], context=context).stream().fetch_row_counts()
