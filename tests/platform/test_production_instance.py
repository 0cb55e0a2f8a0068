"""The production Dagster instance config (deploy/dagster.yaml, dagster-postgres storage)
exercised for real: a materialization recorded in the embedded PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest

from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.domains.mailbox.raw import (
    RAW_CONVERSATIONS,
    helpscout_conversations,
    helpscout_mailboxes,
)
from signalbox.platform.settings import PROJECT_ROOT
from signalbox.simulators.helpscout import HelpScoutSimulator


def test_materialization_lands_in_dagster_postgres(tmp_path: Path, fresh_database):
    with (
        fresh_database() as dagster_db,
        fresh_database() as warehouse,
        HelpScoutSimulator(now=datetime(2026, 5, 4, 9, 0, tzinfo=UTC)) as sim,
        pytest.MonkeyPatch.context() as env,
    ):
        url = urlsplit(dagster_db.url)
        env.setenv("DAGSTER_PG_HOST", url.hostname)
        env.setenv("DAGSTER_PG_PORT", str(url.port))
        env.setenv("DAGSTER_PG_USER", url.username)
        env.setenv("DAGSTER_PG_PASSWORD", url.password)
        env.setenv("DAGSTER_PG_DB", url.path.lstrip("/"))
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
        instance = dg.DagsterInstance.from_config(str(tmp_path))
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            start = (sim.now - timedelta(days=3)).date().isoformat()
            result = dg.materialize(
                [helpscout_mailboxes, helpscout_conversations],
                instance=instance,
                resources={
                    "warehouse": warehouse,
                    "helpscout": HelpScoutResource(
                        base_url=sim.url,
                        client_id=sim.client_id,
                        client_secret=sim.client_secret,
                        backfill_start=start,
                    ),
                },
            )
            assert result.success
            event = instance.get_latest_materialization_event(RAW_CONVERSATIONS)
            assert event is not None and event.run_id == result.run_id
        finally:
            instance.dispose()

        with psycopg2.connect(dagster_db.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,))
            assert cur.fetchone()[0] == 1
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s"
                " AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (result.run_id,),
            )
            assert cur.fetchone()[0] == 2
