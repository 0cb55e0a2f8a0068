"""Where signalbox keeps its local state, read from the environment.

Everything the embedded engines write (Dagster home, PostgreSQL data dir, object store)
lives under one directory: `SIGNALBOX_HOME`, default `.signalbox/` in the working dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_ROOT = PROJECT_ROOT / "dbt_project"


def signalbox_home() -> Path:
    """The local state directory (created on first use)."""
    home = Path(os.environ.get("SIGNALBOX_HOME", ".signalbox")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def dagster_home() -> Path:
    path = signalbox_home() / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_fields(**fields: str) -> dict[str, EnvVar]:
    """`field=VARIABLE` pairs -> `{field: EnvVar(VARIABLE)}` for the variables that are set,
    so a resource's unset fields keep their defaults and no value enters run config."""
    return {field: EnvVar(var) for field, var in fields.items() if os.environ.get(var)}


def env_int_fields(**fields: str) -> dict[str, EnvVar]:
    """`env_fields` for integer fields (`EnvVar.int`)."""
    return {field: EnvVar.int(var) for field, var in fields.items() if os.environ.get(var)}
