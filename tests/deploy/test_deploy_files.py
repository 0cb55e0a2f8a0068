"""The deployment files in deploy/ name exactly the variables the code reads, so neither can
drift from the other. "Read by the code" is found in the code itself: every string constant
shaped like one of our variables in the modules a deployment runs (not the simulators, the
embedded engines or the local stack), minus the local profile's own variables and those the
dbt profiles read (ClickHouseResource.dbt_env / WarehouseResource.dbt_env set them)."""

from __future__ import annotations

import ast
import re
from functools import cache

import yaml

from signalbox.domains import production_variables
from signalbox.platform.settings import LOCAL_VARIABLES, PROFILE_ENV, PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PACKAGE = PROJECT_ROOT / "signalbox"
NAME = re.compile(
    r"\b(?:SIGNALBOX|TELEGRAM|HELPSCOUT|NEOPLE|CFPB|AWS|DAGSTER)_[A-Z0-9_]*[A-Z0-9]\b"
)
LOCAL_ONLY_CODE = ("simulators", "platform/embedded", "stack.py", "demo.py", "bi/superset.py")
# Dagster's own: where the instance lives, and the instance's storage (deploy/dagster.yaml)
DAGSTER_HOME = "DAGSTER_HOME"


@cache
def dagster_storage_variables() -> frozenset[str]:
    """The `env:` values of the instance config."""
    return frozenset(re.findall(r"\benv: ([A-Z0-9_]+)", (DEPLOY / "dagster.yaml").read_text()))


def dbt_profile_variables() -> set[str]:
    names: set[str] = set()
    for profiles in PROJECT_ROOT.glob("dbt_project/*/profiles.yml"):
        names |= set(re.findall(r"env_var\('([A-Z0-9_]+)'", profiles.read_text()))
    return names


@cache
def code_variables() -> frozenset[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if any(part in path.relative_to(PACKAGE).as_posix() for part in LOCAL_ONLY_CODE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and NAME.fullmatch(node.value):
                names.add(node.value)
    return frozenset(names - set(LOCAL_VARIABLES) - dbt_profile_variables() - {DAGSTER_HOME})


def named_in(text: str) -> set[str]:
    return set(NAME.findall(text))


def set_in_env_file(text: str) -> dict[str, str]:
    """`NAME=value` lines (not commented)."""
    return dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    )


def test_the_scan_finds_what_the_code_is_known_to_read():
    found = code_variables()
    assert set(production_variables()) <= found
    assert {"SIGNALBOX_KAFKA_SASL_PASSWORD", "CFPB_LOOKBACK_DAYS", "TELEGRAM_API_URL"} <= found
    assert PROFILE_ENV in found
    assert not found & set(LOCAL_VARIABLES)
    assert "SIGNALBOX_CLICKHOUSE_TARGET" not in found  # the dbt profile's, set by the code


def test_the_env_file_names_every_variable_and_sets_the_required_ones():
    text = (DEPLOY / "signalbox.env.example").read_text()
    expected = code_variables() | dagster_storage_variables() | {DAGSTER_HOME}
    assert named_in(text) - expected == set(), "named but never read by the code"
    assert expected - named_in(text) == set(), "read by the code but not in the file"
    lines = set_in_env_file(text)
    required = set(production_variables()) | dagster_storage_variables() | {PROFILE_ENV}
    assert required - set(lines) == set(), "required but commented out"
    assert lines[PROFILE_ENV] == "production"


def test_the_helm_values_name_every_variable_the_code_reads():
    text = (DEPLOY / "helm" / "values.yaml").read_text()
    assert named_in(text) == set(code_variables())
    values = yaml.safe_load(text)
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env[PROFILE_ENV] == "production"
    assert set(env) <= code_variables()
    # every required variable is in `env` or in the secret the header names
    header = text.split("\nglobal:")[0]
    secret = header.split("holds the credentials")[1].split("Optional settings")[0]
    assert set(production_variables()) - set(env) - named_in(secret) == set()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "signalbox.definitions"]


def test_the_engine_limits_agree_between_the_vm_and_kubernetes():
    vm = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_coordinator"]["config"]
    k8s = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["dagsterDaemon"]
    limits = k8s["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    engines = {(item["key"], item["value"]) for item in vm["tag_concurrency_limits"]}
    assert engines == {(item["key"], item["value"]) for item in limits}


def test_compose_and_the_image_name_only_variables_the_code_reads():
    compose_text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(compose_text)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    known = code_variables() | {DAGSTER_HOME}
    assert named_in(compose_text) <= known
    assert named_in(dockerfile) <= known
    for service in compose["services"].values():
        assert service["env_file"] == "signalbox.env"
        assert service["environment"][PROFILE_ENV] == "production"
    assert "SIGNALBOX_ENV=production" in dockerfile
    assert re.search(r"^USER signalbox$", dockerfile, re.M), "the image runs as non-root"
    assert "-c /tmp/constraints.txt" in dockerfile


def test_the_constraints_pin_every_dependency_exactly():
    lines = [
        line
        for line in (DEPLOY / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+!-]+", line) for line in lines)
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    assert {"dagster", "dagster-dbt", "dbt-core", "dbt-postgres", "dbt-clickhouse"} <= pinned
    assert "chdb" not in pinned and "pgserver" not in pinned  # no embedded engine in production
