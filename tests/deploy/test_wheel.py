"""The production artefact as an operator gets it: deploy/build-wheel.sh builds the wheel,
it is installed with deploy/constraints.txt into a fresh virtualenv outside the checkout,
and the code location loads there from the packaged dbt projects in the production
profile, or refuses to, naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from production_env import FAKE_PRODUCTION

from signalbox.platform.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        ["bash", str(PROJECT_ROOT / "deploy" / "build-wheel.sh"), str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("signalbox-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed, as deploy/Dockerfile does."""
    root = tmp_path_factory.mktemp("production") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    constraints = PROJECT_ROOT / "deploy" / "constraints.txt"
    installed = subprocess.run(
        [*pip, "-c", str(constraints), str(wheel)], capture_output=True, text=True, timeout=900
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return root


def run_installed(venv: Path, args: list[str], cwd: Path, **env: str):
    """A command from the virtualenv with nothing of this process's environment but PATH."""
    return subprocess.run(
        args,
        cwd=cwd,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_wheel_carries_the_dbt_projects_and_their_manifests_only(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    for project in ("warehouse", "activity"):
        root = f"signalbox/dbt_project/{project}"
        assert f"{root}/target/manifest.json" in names
        assert f"{root}/dbt_project.yml" in names and f"{root}/profiles.yml" in names
        assert any(n.startswith(f"{root}/dbt_packages/signalbox_shared/macros/") for n in names)
        built = [n for n in names if n.startswith(f"{root}/target/")]
        assert built == [f"{root}/target/manifest.json"]  # no run output, no logs
    assert not [n for n in names if "/logs/" in n or n.endswith(".msgpack")]


def test_the_installed_code_location_validates_in_production(venv: Path, tmp_path: Path):
    where = run_installed(
        venv,
        [
            "python",
            "-c",
            "import signalbox.platform.dbt as d; print(d.warehouse_project.project_dir)",
        ],
        tmp_path,
        **FAKE_PRODUCTION,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), "not the installed package's projects"

    result = run_installed(
        venv,
        ["dagster", "definitions", "validate", "--module-name", "signalbox.definitions"],
        tmp_path,
        **FAKE_PRODUCTION,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Validation successful for code location signalbox.definitions" in output
    # nothing embedded started, nothing written where it ran
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_installed_code_location_names_a_missing_variable(venv: Path, tmp_path: Path):
    environ = {k: v for k, v in FAKE_PRODUCTION.items() if k != "SIGNALBOX_CLICKHOUSE_URL"}
    result = run_installed(
        venv,
        ["dagster", "definitions", "validate", "--module-name", "signalbox.definitions"],
        tmp_path,
        **environ,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "SIGNALBOX_CLICKHOUSE_URL: the ClickHouse server with the user actions" in output
    assert "secret" not in output  # the credentials in the other URLs are never printed
