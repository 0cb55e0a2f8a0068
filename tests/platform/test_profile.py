"""SIGNALBOX_ENV=production fails closed: the code location will not load while a variable
it needs is unset (one message lists them all), and nothing embedded ever starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from production_env import FAKE_PRODUCTION

from signalbox.domains import production_variables
from signalbox.platform.settings import (
    PLATFORM_PRODUCTION_VARIABLES,
    SettingsError,
    profile,
    require,
)


def test_the_fake_environment_is_complete_and_the_list_covers_every_domain():
    variables = production_variables()
    assert set(variables) == set(FAKE_PRODUCTION) - {"SIGNALBOX_ENV"}
    assert set(PLATFORM_PRODUCTION_VARIABLES) < set(variables)
    require(variables, FAKE_PRODUCTION)  # nothing missing


@pytest.mark.parametrize("removed", sorted(set(FAKE_PRODUCTION) - {"SIGNALBOX_ENV"}))
def test_each_missing_variable_is_named(removed):
    environ = {k: v for k, v in FAKE_PRODUCTION.items() if k != removed}
    with pytest.raises(SettingsError) as error:
        require(production_variables(), environ)
    assert f"  {removed}: " in str(error.value)
    assert "1 required variable(s)" in str(error.value)


def test_one_message_lists_every_missing_variable_and_no_secret():
    environ = {"SIGNALBOX_ENV": "production", "TELEGRAM_BOT_TOKEN": "123:very-secret"}
    with pytest.raises(SettingsError) as error:
        require(production_variables(), environ)
    message = str(error.value)
    assert f"{len(FAKE_PRODUCTION) - 2} required variable(s)" in message
    assert "SIGNALBOX_WAREHOUSE_URL" in message and "NEOPLE_API_KEY" in message
    assert "very-secret" not in message


def test_the_profile_is_local_unless_said_and_checked():
    assert profile({}) == "local"
    assert profile({"SIGNALBOX_ENV": " Production "}) == "production"
    with pytest.raises(SettingsError, match="must be one of local, production"):
        profile({"SIGNALBOX_ENV": "prod"})


def test_nothing_embedded_starts_in_production(monkeypatch, tmp_path):
    from signalbox.platform.clickhouse import ClickHouseResource
    from signalbox.platform.warehouse import WarehouseResource
    from signalbox.stack import local_stack

    monkeypatch.setenv("SIGNALBOX_ENV", "production")
    monkeypatch.setenv("SIGNALBOX_HOME", str(tmp_path))
    with pytest.raises(SettingsError, match="SIGNALBOX_WAREHOUSE_URL is not set"):
        WarehouseResource().resolved_url()
    with pytest.raises(SettingsError, match="the embedded chDB is never started"):
        ClickHouseResource().data_dir()
    with pytest.raises(SettingsError, match="the local stack"), local_stack():
        pass
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "clickhouse").exists()


LOAD = "from signalbox.definitions import defs; print('assets', len(list(defs.assets)))"


@pytest.mark.integration
def test_the_code_location_loads_in_production_with_everything_set_and_not_without(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALBOX_", "TELEGRAM_",
            "HELPSCOUT_", "NEOPLE_", "CFPB_"))}  # fmt: skip
    env = {**base, **FAKE_PRODUCTION, "SIGNALBOX_HOME": str(tmp_path / "home")}
    loaded = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.startswith("assets ")
    home = tmp_path / "home"
    assert not (home / "postgres").exists() and not (home / "clickhouse").exists()

    for name in ("SIGNALBOX_WAREHOUSE_URL", "HELPSCOUT_CLIENT_SECRET"):
        env.pop(name)
    refused = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert refused.returncode != 0
    assert "2 required variable(s) are not set" in refused.stderr
    assert (
        "SIGNALBOX_WAREHOUSE_URL" in refused.stderr and "HELPSCOUT_CLIENT_SECRET" in refused.stderr
    )
    assert "secret" not in refused.stderr.replace("HELPSCOUT_CLIENT_SECRET", "").replace(
        "client secret", ""
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2017-09-20", "before 2017-09-21, the source's first day"),
        ("yesterday", "must be a day as YYYY-MM-DD, got 'yesterday'"),
        ("2026-11-01'; DROP TABLE x; --", "must be a day as YYYY-MM-DD"),
        ("9" * 5000, "..."),
    ],
)
def test_a_start_date_out_of_the_source_range_or_malformed_is_refused(monkeypatch, value, message):
    from datetime import date

    from signalbox.platform.settings import start_date

    monkeypatch.setenv("NEOPLE_TIMELINE_START_DATE", value)
    with pytest.raises(SettingsError, match="NEOPLE_TIMELINE_START_DATE") as error:
        start_date("NEOPLE_TIMELINE_START_DATE", "2026-11-01", date(2017, 9, 21))
    assert message in str(error.value) and len(str(error.value)) < 200
    monkeypatch.setenv("NEOPLE_TIMELINE_START_DATE", "2017-09-21")
    assert start_date("NEOPLE_TIMELINE_START_DATE", "x", date(2017, 9, 21)) == "2017-09-21"


def test_the_code_location_refuses_timelines_before_the_apis_first_day():
    env = {**os.environ, "NEOPLE_TIMELINE_START_DATE": "2017-01-01"}
    probe = "import signalbox.domains.game_timelines.raw"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "NEOPLE_TIMELINE_START_DATE=2017-01-01 is before 2017-09-21" in result.stderr
