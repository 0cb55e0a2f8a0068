#!/usr/bin/env bash
# Build signalbox's wheel, the dbt projects and their manifests inside it, into OUTDIR
# (default dist/). Run with the project's virtualenv first on PATH (`make wheel` does).
# The checkout is not touched: the package's sources (no build output) are copied to a
# scratch directory, `dagster-dbt project prepare-and-package` parses each dbt project
# there and copies it into the package (signalbox/dbt_project/), and pip builds the wheel.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
bin="$(dirname "$(command -v python)")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$root"
tar --create --exclude=__pycache__ --exclude='dbt_project/*/target' \
    --exclude='dbt_project/*/logs' --exclude='dbt_project/*/dbt_packages' \
    --exclude=signalbox/dbt_project pyproject.toml README.md signalbox dbt_project |
  tar --extract --directory "$scratch"

cd "$scratch"
# manifests for a ClickHouse server (dbt-clickhouse): a production image has no chDB
export SIGNALBOX_CLICKHOUSE_TARGET=server SIGNALBOX_ENV=local SIGNALBOX_HOME="$scratch/.signalbox"
# this copy's package, not the one installed (editable) in the virtualenv
export PYTHONPATH="$scratch"
"$bin/dagster-dbt" project prepare-and-package --file signalbox/platform/dbt.py
"$bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$out" .
ls "$out"/signalbox-*.whl
