"""The dbt projects signalbox runs, and how their nodes map onto Dagster assets.

One dbt invocation talks to one engine, so each engine has its own project under
`dbt_project/`. Kept in its own small module: `dagster-dbt project prepare-and-package`
and the CLI import it to build the manifests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from signalbox.platform.settings import DBT_ROOT

# dagster-dbt runs `dbt` from PATH: make the one installed beside this interpreter win,
# even when the virtualenv is not activated (the Makefile calls .venv/bin/* directly).
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])

warehouse_project = DbtProject(
    project_dir=DBT_ROOT / "warehouse",
    profiles_dir=DBT_ROOT / "warehouse",
)
warehouse_project.prepare_if_dev()

activity_project = DbtProject(
    project_dir=DBT_ROOT / "activity",
    profiles_dir=DBT_ROOT / "activity",
)
activity_project.prepare_if_dev()

PROJECTS = [warehouse_project, activity_project]


@contextmanager
def dbt_connection(project: DbtProject) -> Iterator[dict[str, str]]:
    """The variables the project's profiles.yml reads, for the engine the environment
    configures; for the activity project the embedded ClickHouse is held meanwhile."""
    from signalbox.platform.clickhouse import ClickHouseResource
    from signalbox.platform.warehouse import WarehouseResource

    if project is warehouse_project:
        yield WarehouseResource(url=os.environ.get("SIGNALBOX_WAREHOUSE_URL")).dbt_env()
    elif project is activity_project:
        clickhouse = ClickHouseResource(url=os.environ.get("SIGNALBOX_CLICKHOUSE_URL"))
        with clickhouse.dbt_lock(f"dbt {project.project_dir.name}") as env:
            yield env
    else:
        raise ValueError(f"no engine known for dbt project {project.project_dir}")


def prepare_projects() -> None:
    """Install every dbt project's packages and parse it so its manifest exists (the CLI
    and tests call this). dagster-dbt's preparer runs `dbt deps` whenever packages.yml
    exists (the local `dbt_project/shared` package), then `dbt parse`."""
    for project in PROJECTS:
        project.preparer.prepare(project)


class SignalboxDbtTranslator(DagsterDbtTranslator):
    """Keys are `[schema, model]` (dbt's default with folder schemas); sources link to the
    raw Python assets through `meta.dagster.asset_key`; the group is the domain folder
    (`models/<layer>/<domain>/...`, mapped by `meta.dagster.group` in dbt_project.yml)."""

    def __init__(self):
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        group = super().get_group_name(dbt_resource_props)
        if group:
            return group
        meta = (dbt_resource_props.get("config") or {}).get("meta") or {}
        return (meta.get("dagster") or {}).get("group")

    def get_automation_condition(self, dbt_resource_props):  # scheduled by jobs, not eagerly
        return None


def dbt_group_keys(dbt_assets: dg.AssetsDefinition, group: str) -> list[dg.AssetKey]:
    return [key for key, name in dbt_assets.group_names_by_key.items() if name == group]
