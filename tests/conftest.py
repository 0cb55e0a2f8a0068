"""Session-wide real engines: each starts once and is stopped at the end."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg2
import pytest
from chat_support import CHAT_TOKEN

from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.embedded.clickhouse_http import EmbeddedClickHouseServer, provision_database
from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.server import Faults
from signalbox.simulators.telegram import TelegramSimulator

# Fixtures that start an engine (or load the code location, which needs the dbt
# manifests): a test that uses one, directly or through another fixture, is integration.
ENGINE_FIXTURES = frozenset(
    {"postgres", "pg_url", "fresh_database", "clickhouse_database", "signalbox_home",
     "moto_url", "s3_url", "code_location", "kafka_bootstrap", "clickhouse_server",
     "clickhouse_server_database"}
)  # fmt: skip
pytest_plugins = ["browsing"]  # the `browser` and `checked_page` fixtures, for any test
TIERS = ("unit", "integration", "e2e")
# A test that injects a fault into our code says so in its name (or is a drill): the
# score counts them. The simulators' own tests of their fault switches are not counted.
FAULT_WORDS = frozenset(
    {
        "429",
        "5xx",
        "500",
        "503",
        "424",
        "timeout",
        "timeouts",
        "truncated",
        "malformed",
        "expired",
        "expiry",
        "revoked",
        "throttle",
        "down",
        "refused",
        "lost",
        "hostile",
        "sigkill",
        "broken",
        "drift",
        "orphan",
        "held",
        "crash",
        "maintenance",
        "oversized",
        "wrong",
        "missing",
        "unknown",
        "bad",
        "failed",
        "unavailable",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets one tier: its own marker, else e2e under tests/e2e, integration when
    it uses an engine fixture, unit otherwise (`make test-fast` runs `-m unit`)."""
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)
        elif ENGINE_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
        words = set(item.originalname.split("_"))
        if "simulators" not in item.path.parts and (
            words & FAULT_WORDS or "drills" in item.path.parts or "hostile" in item.path.name
        ):
            item.add_marker(pytest.mark.fault)
    # the longest tests first, so two xdist workers finish together (stable otherwise)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A unit run must stay fast: no test module may import the dbt projects (or anything
    built on them) at collection; load the code location through `code_location`."""
    if session.config.option.markexpr.strip() == "unit" and "dagster_dbt" in sys.modules:
        raise pytest.UsageError(
            "a unit run imported dagster_dbt while collecting: import the domain's dbt-built "
            "modules inside the tests that need them (fixture code_location)"
        )


# score.json: the last session's crash drill score (absolute: a test may change the cwd)
DRILL_SCORE_DIR = Path(__file__).resolve().parents[1] / "build" / "drill"


def pytest_configure(config: pytest.Config) -> None:
    """A folder of this session's own for the drills' figures (tests/drills/drill.py writes
    one file per drill there); set in the controller, before the workers start."""
    if not hasattr(config, "workerinput"):
        session = DRILL_SCORE_DIR.resolve() / f"session-{os.getpid()}"
        shutil.rmtree(session, ignore_errors=True)
        os.environ["SIGNALBOX_DRILL_SCORE_DIR"] = str(session)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The crash drills' score, when any ran: summed over domains, and kept as JSON (by
    the controller only: xdist workers call this hook too)."""
    import json

    if hasattr(config, "workerinput"):
        return

    faults = sum(1 for r in terminalreporter.stats.get("passed", []) if "fault" in r.keywords)
    if faults:
        terminalreporter.write_line(f"faults injected: {faults} passing tests inject a fault")
    session = Path(os.environ.get("SIGNALBOX_DRILL_SCORE_DIR", DRILL_SCORE_DIR / "none"))
    scores = [json.loads(f.read_text()) for f in sorted(session.glob("*.json"))]
    shutil.rmtree(session, ignore_errors=True)
    if not scores:
        return
    figures = ("kill_points", "random_kills", "runs", "rows_lost", "duplicates",
               "watermarks_ahead", "partial_partitions", "faults", "seconds")  # fmt: skip
    total = {name: sum(score[name] for score in scores) for name in figures}
    write = terminalreporter.write_line
    terminalreporter.section("crash drill score")
    for score in scores:
        write(
            f"{score['domain']:>15}: {score['kill_points']} kill points, "
            f"{score['random_kills']} random kills, {score['runs']} runs, "
            f"{score['rows_lost']} lost, {score['duplicates']} duplicates, "
            f"{score['seconds']:.0f}s"
        )
    write(
        "drill: kill_points={kill_points} random_kills={random_kills} runs={runs} "
        "rows_lost={rows_lost} duplicates={duplicates} watermarks_ahead={watermarks_ahead} "
        "partial_partitions={partial_partitions} faults={faults} seconds={seconds:.0f}".format(
            **total
        )
    )
    (DRILL_SCORE_DIR / "score.json").write_text(json.dumps({"total": total, "domains": scores}))


@pytest.fixture(scope="session")
def code_location():
    """The code location's Definitions (imported on first use: the dbt assets need the
    projects' manifests, which a unit run never builds)."""
    from signalbox.definitions import defs

    return defs


@pytest.fixture(scope="session")
def signalbox_home() -> Iterator[Path]:
    """A fresh SIGNALBOX_HOME whose parents the embedded PostgreSQL's user can enter."""
    home = Path(tempfile.mkdtemp(prefix="signalbox-test-", dir="/tmp"))
    home.chmod(0o755)
    previous = os.environ.get("SIGNALBOX_HOME")
    os.environ["SIGNALBOX_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SIGNALBOX_HOME", None)
    else:
        os.environ["SIGNALBOX_HOME"] = previous
    shutil.rmtree(home, ignore_errors=True)


def drop_databases(resource: ClickHouseResource, name: str) -> None:
    """`name` and dbt's schemas of it (`<name>_staging`, `_marts`, ...)."""
    with resource.client("test cleanup") as client:
        ours = client.query(
            "SELECT name FROM system.databases"
            " WHERE name = {name:String} OR startsWith(name, {prefix:String})",
            parameters={"name": name, "prefix": f"{name}_"},
        ).result_rows
        for (database_name,) in ours:
            client.command(f"DROP DATABASE IF EXISTS `{database_name}`")


@pytest.fixture(scope="session")
def clickhouse_database(
    signalbox_home: Path,
) -> Callable[[str], AbstractContextManager[ClickHouseResource]]:
    """A factory: the session's chDB directory (chDB opens one data directory per process,
    so every module shares it) in a database of the caller's own. On exit it drops that
    database and dbt's schemas of it (`<database>_staging`, `_marts`, ...)."""

    @contextmanager
    def database(name: str) -> Iterator[ClickHouseResource]:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SIGNALBOX_HOME", str(signalbox_home))
            resource = ClickHouseResource(database=name, lock_timeout_seconds=120)
            yield resource
            drop_databases(resource, name)

    return database


@pytest.fixture(scope="session")
def clickhouse_server(signalbox_home: Path) -> Iterator[EmbeddedClickHouseServer]:
    """A ClickHouse server over HTTP for the session: the embedded engine behind
    ClickHouse's HTTP interface, in a process (and a data directory) of its own."""
    with EmbeddedClickHouseServer(signalbox_home / "clickhouse-server") as server:
        yield server


@pytest.fixture(scope="session")
def clickhouse_server_database(
    clickhouse_server: EmbeddedClickHouseServer,
) -> Callable[[str], AbstractContextManager[ClickHouseResource]]:
    """`clickhouse_database` on the server: a resource on `SIGNALBOX_CLICKHOUSE_URL`'s path
    (no engine lock), in a database of the caller's own, dropped with dbt's on exit."""

    @contextmanager
    def database(name: str) -> Iterator[ClickHouseResource]:
        provision_database(clickhouse_server, name)
        resource = ClickHouseResource(url=clickhouse_server.url_for(name))
        yield resource
        drop_databases(resource, name)

    return database


@pytest.fixture(scope="session")
def postgres(signalbox_home: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(signalbox_home / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url(postgres: EmbeddedPostgres) -> str:
    return postgres.url()


@pytest.fixture(scope="session")
def fresh_database(postgres) -> Callable[[], AbstractContextManager[WarehouseResource]]:
    """`with fresh_database() as warehouse:` a database of its own, dropped afterwards."""

    @contextmanager
    def make() -> Iterator[WarehouseResource]:
        name = f"test_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(postgres.url(database="postgres"))
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield WarehouseResource(url=postgres.url(database=name))
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.close()

    return make


@pytest.fixture(scope="session")
def chat_server() -> Iterator[TelegramSimulator]:
    """One Telegram simulator for the session (bot token CHAT_TOKEN), flood control off: a
    test's sends must not wait on it."""
    with TelegramSimulator(
        token=CHAT_TOKEN, per_chat_per_second=None, group_per_minute=None, global_per_second=None
    ) as server:
        yield server


@pytest.fixture
def chat(chat_server: TelegramSimulator) -> TelegramSimulator:
    """The session's Telegram simulator, emptied and without faults."""
    chat_server.clear()
    chat_server.faults = Faults()
    return chat_server
