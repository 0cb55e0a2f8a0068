"""Where signalbox keeps its local state, read from the environment.

Everything the embedded engines write (Dagster home, PostgreSQL data dir, object store)
lives under one directory: `SIGNALBOX_HOME`, default `.signalbox/` in the working dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from dagster import EnvVar

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent  # the checkout, when running from one
# The dbt projects: a checkout keeps them beside the package (dbt_project/); a wheel carries
# a prepared copy, manifests included, as package data (deploy/build-wheel.sh puts it there
# with `dagster-dbt project prepare-and-package`).
SOURCE_DBT_ROOT = PROJECT_ROOT / "dbt_project"
PACKAGED_DBT_ROOT = PACKAGE_ROOT / "dbt_project"
DBT_ROOT = SOURCE_DBT_ROOT if SOURCE_DBT_ROOT.is_dir() else PACKAGED_DBT_ROOT


# Runs tagged with the engine they load: deploy/dagster.yaml (and the Helm values) limit how
# many of each run at once (`tag_concurrency_limits`), so a backfill cannot swamp one engine.
ENGINE_TAG = "signalbox/engine"


def engine_tags(engine: str) -> dict[str, str]:
    """The run tags of a job whose heavy work is on `engine` (postgres | clickhouse)."""
    return {ENGINE_TAG: engine}


def signalbox_home() -> Path:
    """The local state directory (created on first use)."""
    home = Path(os.environ.get("SIGNALBOX_HOME", ".signalbox")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read, never readable by others even for an instant."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    path.chmod(0o600)


def dagster_home() -> Path:
    """The local Dagster instance's home, with telemetry off unless its own dagster.yaml
    says otherwise (with it on, the UI loads a script from dagster.io: nothing of the local
    stack may reach outside this machine)."""
    path = signalbox_home() / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "# the local instance: nothing leaves this machine\ntelemetry:\n  enabled: false\n"
        )
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


# --------------------------------------------------------------------------- profiles
#
# SIGNALBOX_ENV=local (the default: the demo and the tests) lets an unset production
# variable mean "use the embedded stand-in". SIGNALBOX_ENV=production fails closed: the code
# location refuses to load while any variable it needs is unset, listing all of them, and
# no embedded engine or simulator is ever started.

PROFILE_ENV = "SIGNALBOX_ENV"
PROFILES = ("local", "production")

# what every production deployment needs, whatever its domains (each domain lists its own
# in its package's PRODUCTION_VARIABLES)
PLATFORM_PRODUCTION_VARIABLES = {
    "SIGNALBOX_WAREHOUSE_URL": "the warehouse PostgreSQL URL",
    "SIGNALBOX_S3_BUCKET": "the object store's bucket",
    "SIGNALBOX_SMTP_HOST": "the mail server for notifications",
    "SIGNALBOX_MAIL_TO": "who receives the notifications",
    "TELEGRAM_BOT_TOKEN": "the on-call chat's bot token",
    "TELEGRAM_CHAT_ID": "the on-call chat",
}


# read only by the local profile's stand-ins: never part of a deployment
LOCAL_VARIABLES = {
    "SIGNALBOX_HOME": "where the embedded engines keep their data (default .signalbox/)",
    "SIGNALBOX_USER_ACTIONS": "existing|generated: generate the user actions locally",
    "SIGNALBOX_ACTIVITY_ANOMALIES": "anomalies injected into the generated user actions",
    "SIGNALBOX_KAFKA_EMBEDDED_STORAGE": "memory: the embedded broker keeps nothing on disk",
}


class SettingsError(RuntimeError):
    """The environment does not describe a deployment this profile may run."""


def start_date(variable: str, default: str, earliest: date | None = None) -> str:
    """A partitions' first day from `variable` (YYYY-MM-DD): a clear `SettingsError` for
    anything else, or for a day before `earliest` (whose partitions could only fail)."""
    value = os.environ.get(variable) or default
    try:
        day = date.fromisoformat(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise SettingsError(f"{variable} must be a day as YYYY-MM-DD, got {shown!r}") from None
    if earliest is not None and day < earliest:
        raise SettingsError(
            f"{variable}={value} is before {earliest}, the source's first day: its partitions "
            f"could only fail. Use {earliest} or later."
        )
    return day.isoformat()


def profile(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    value = (environ.get(PROFILE_ENV) or "local").strip().lower()
    if value not in PROFILES:
        raise SettingsError(f"{PROFILE_ENV} must be one of {', '.join(PROFILES)}, got {value!r}")
    return value


def in_production(environ: Mapping[str, str] | None = None) -> bool:
    return profile(environ) == "production"


def require(variables: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
    """One `SettingsError` naming every variable of `variables` (name -> what it is) that
    is unset or empty."""
    environ = os.environ if environ is None else environ
    missing = sorted(name for name in variables if not (environ.get(name) or "").strip())
    if missing:
        listed = "\n".join(f"  {name}: {variables[name]}" for name in missing)
        raise SettingsError(
            f"{PROFILE_ENV}=production, and {len(missing)} required variable(s) are not set "
            f"(nothing was started):\n{listed}"
        )


def refuse_embedded(what: str, variable: str | None = None) -> None:
    """Called where a stand-in would start: in production that is an error, never a default."""
    if in_production():
        unset = f"{variable} is not set, and " if variable else ""
        raise SettingsError(f"{PROFILE_ENV}=production: {unset}{what} is never started there")
