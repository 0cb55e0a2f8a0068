"""The dbt projects signalbox runs, and how their nodes map onto Dagster assets.

One dbt invocation talks to one engine, so each engine has its own project under
`dbt_project/`. Kept in its own small module: `dagster-dbt project prepare-and-package`
and the CLI import it to build the manifests.
"""

import fcntl
import functools
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from signalbox.platform.settings import DBT_ROOT, PACKAGED_DBT_ROOT
from signalbox.platform.warehouse import WarehouseResource

# the dbt installed beside this interpreter, whether or not its virtualenv is activated
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
_SKIPPED_DIRS = {"target", "logs", "dbt_packages"}
_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")  # what dbt reads (hidden files aside)


@functools.cache
def sources_fingerprint() -> str:
    """A hash of every dbt source file under dbt_project/ (the shared package's too) and
    of dbt's version; build output (target/, logs/, dbt_packages/) is not walked."""
    from dbt.version import __version__ as dbt_version

    digest = hashlib.sha256(dbt_version.encode())
    for folder, dirs, files in os.walk(DBT_ROOT):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(f for f in files if f.endswith(_SOURCE_SUFFIXES) and f[0] != "."):
            path = Path(folder, name)
            digest.update(str(path.relative_to(DBT_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def dbt_resource(project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)


def is_packaged(project: DbtProject) -> bool:
    """Running from the prepared copy a wheel carries (read as built, never re-parsed)."""
    return Path(project.project_dir) == project.packaged_project_dir


def prepare(project: DbtProject) -> None:
    """`dbt deps` and `dbt parse` with the dbt beside this interpreter, skipped when the
    manifest was built from the same sources (a test session, a demo start or a UI reload
    whose projects did not change pays nothing); processes that start together (a code
    server and a run worker) wait on one lock instead of parsing twice. An installed wheel's
    prepared copy is used as it was built."""
    if is_packaged(project):
        if not project.manifest_path.exists():
            raise FileNotFoundError(
                f"{project.manifest_path} is missing: this installation's dbt project was not "
                "prepared; build the wheel with deploy/build-wheel.sh"
            )
        return
    target = Path(project.project_dir) / project.target_path
    stamp = target / ".signalbox-fingerprint"
    fingerprint = sources_fingerprint()

    def current() -> bool:
        built = project.manifest_path.exists() and stamp.exists()
        return built and stamp.read_text() == fingerprint

    if current():
        return
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".signalbox-prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if current():
            return
        dbt = dbt_resource(project)
        if any(Path(project.project_dir, f).exists() for f in ("packages.yml", "dependencies.yml")):
            dbt.cli(["deps", "--quiet"], target_path=project.target_path).wait()
        dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()
        stamp.write_text(fingerprint)


INVOCATIONS_KEPT = 20  # recent runs' dbt artefacts (run_results, logs) to look at


def prune_invocations(invocation: Any, keep: int = INVOCATIONS_KEPT) -> list[Path]:
    """dagster-dbt gives every invocation a folder of its own, `target/<op>-<run>-<id>`, and
    nothing removes them (226 folders, 767 MB in a day of tests): keep the newest `keep` of
    this op's folders, remove the others. Called after a build; concurrent builds are few
    (the run queue) and always among the newest."""
    folder = Path(invocation.target_path)
    if not folder.is_absolute():
        folder = Path(invocation.project_dir) / folder
    op = folder.name.rsplit("-", 2)[0]
    ours = [
        path
        for path in folder.parent.glob(f"{op}-*-*")
        if path.is_dir() and path.name.rsplit("-", 2)[0] == op
    ]
    ours.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    removed = ours[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _project(name: str) -> DbtProject:
    """A dbt project under dbt_project/ (its profiles.yml beside it); `packaged_project_dir`
    is where `dagster-dbt project prepare-and-package` copies it into the wheel."""
    return DbtProject(project_dir=DBT_ROOT / name, packaged_project_dir=PACKAGED_DBT_ROOT / name)


warehouse_project = _project("warehouse")
activity_project = _project("activity")
PROJECTS = [warehouse_project, activity_project]


def prepare_projects() -> None:
    """Make every dbt project's manifest current."""
    for project in PROJECTS:
        prepare(project)


# the dbt assets below read the manifests when they are defined: make them current first
# (a no-op unless a dbt file changed since the last parse)
prepare_projects()


@contextmanager
def invocation_environ(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` in the environment only while a dbt invocation starts (its subprocess
    and dagster-dbt's adapter handle read the profile's `env_var`s then), restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def dbt_connection(project: DbtProject) -> Iterator[dict[str, str]]:
    """The variables the project's profiles.yml reads, for the engine the environment
    configures; for the activity project the embedded ClickHouse is held meanwhile."""
    from signalbox.platform.clickhouse import ClickHouseResource

    if project is warehouse_project:
        yield WarehouseResource(url=os.environ.get("SIGNALBOX_WAREHOUSE_URL")).dbt_env()
    elif project is activity_project:
        clickhouse = ClickHouseResource(url=os.environ.get("SIGNALBOX_CLICKHOUSE_URL"))
        with clickhouse.dbt_lock(f"dbt {project.project_dir.name}") as env:
            yield env
    else:
        raise ValueError(f"no engine known for dbt project {project.project_dir}")


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


def domain_selection(group: str) -> str:
    """The dbt selector of one domain's models, seeds and tests (its `meta.dagster.group`)."""
    return f"config.meta.dagster.group:{group}"


def warehouse_models(group: str) -> dg.AssetsDefinition:
    """One domain's part of the warehouse project as assets: `dbt build` of its models and
    seeds, tests as asset checks, row counts of the built tables as metadata."""

    @dbt_assets(
        manifest=warehouse_project.manifest_path,
        project=warehouse_project,
        select=domain_selection(group),
        dagster_dbt_translator=SignalboxDbtTranslator(),
        name=f"{group}_dbt_models",
    )
    def _models(
        context: dg.AssetExecutionContext,
        warehouse_dbt: DbtCliResource,
        warehouse: WarehouseResource,
    ):
        with invocation_environ(warehouse.dbt_env()):
            build = warehouse_dbt.cli(["build"], context=context)
        yield from build.stream().fetch_row_counts()
        prune_invocations(build)

    return _models


def model_key(dbt_models: dg.AssetsDefinition, model: str) -> dg.AssetKey:
    """The asset key dagster-dbt gave a model (never typed by hand)."""
    from dagster_dbt import get_asset_key_for_model

    return get_asset_key_for_model([dbt_models], model)
