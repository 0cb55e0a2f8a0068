"""Production as an operator runs it.

The artefact: deploy/build-wheel.sh builds the wheel, it is installed with
deploy/constraints.txt into a fresh virtualenv outside the checkout, and the code location
loads there from the packaged dbt projects in the production profile, or refuses to,
naming what is missing.

The deployment: from that virtualenv, a code server, `dagster-daemon` and
`dagster-webserver` on deploy/dagster.yaml, with Dagster's storage and the warehouse in two
PostgreSQL servers of their own, ClickHouse over HTTP, and every API, the chat, the mail
and the broker reached by URL (the local stand-ins, started here). Under the daemon: a
sensor and a schedule fire, a backfill runs through the backfill daemon one ClickHouse run
at a time, and a run whose daemon and code server were killed mid-run is failed by run
monitoring and completed by its retry."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import requests
from production_env import FAKE_PRODUCTION

from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.embedded.clickhouse_http import (
    EmbeddedClickHouseServer,
    provision_database,
)
from signalbox.platform.embedded.ports import free_port, wait_for_port
from signalbox.platform.embedded.postgres import EmbeddedPostgres
from signalbox.platform.settings import PROJECT_ROOT
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.user_activity import GeneratedUserActions
from signalbox.stack import local_stack

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


# --------------------------------------------------------------------------- the deployment

REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "signalbox"}
ACTIVITY_DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


@dataclass
class Deployment:
    home: Path
    venv: Path
    env: dict[str, str]
    grpc_port: int
    web_port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        with open(self.home / f"{name}.log", "a") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                [str(self.venv / "bin" / args[0]), *args[1:]],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes its run workers too
            )

    def start_code_server(self) -> None:
        self.start(
            "code-server", "dagster", "api", "grpc", "--module-name", "signalbox.definitions",
            "--host", "127.0.0.1", "--port", str(self.grpc_port),
        )  # fmt: skip
        wait_for_port(self.grpc_port, timeout=180)

    def start_daemon(self) -> None:
        self.start("daemon", "dagster-daemon", "run", "-w", str(self.home / "workspace.yaml"))

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text()[-3000:]

    def graphql(self, query: str, **variables) -> dict:
        answer = requests.post(
            f"http://127.0.0.1:{self.web_port}/graphql",
            json={"query": query, "variables": variables},
            timeout=60,
        ).json()
        assert "errors" not in answer, answer
        return answer["data"]


@pytest.fixture(scope="module")
def deployment(venv: Path, tmp_path_factory) -> Iterator[Deployment]:
    # the PostgreSQL servers run as nobody: every parent must be enterable
    home = Path(tempfile.mkdtemp(prefix="signalbox-deployment-", dir="/tmp"))
    home.chmod(0o755)
    saved = dict(os.environ)
    with ExitStack() as stack:
        dagster_pg = EmbeddedPostgres(home / "dagster-postgres")
        warehouse_pg = EmbeddedPostgres(home / "warehouse-postgres")
        for server in (dagster_pg, warehouse_pg):
            server.start()
            stack.callback(server.stop)
        clickhouse = stack.enter_context(EmbeddedClickHouseServer(home / "clickhouse-server"))
        provision_database(clickhouse)
        url = urlsplit(dagster_pg.url())
        os.environ.update(
            SIGNALBOX_HOME=str(home / "local"),
            DAGSTER_HOME=str(home / "dagster"),
            DAGSTER_PG_HOST=url.hostname,
            DAGSTER_PG_PORT=str(url.port),
            DAGSTER_PG_USER=url.username,
            DAGSTER_PG_PASSWORD=url.password,
            DAGSTER_PG_DB=url.path.lstrip("/"),
            SIGNALBOX_WAREHOUSE_URL=warehouse_pg.url(),
            SIGNALBOX_CLICKHOUSE_URL=clickhouse.url,
            SIGNALBOX_S3_BUCKET="signalbox-production-test",
            SIGNALBOX_KAFKA_EMBEDDED_STORAGE="memory",
            SIGNALBOX_COMPLAINTS_SENSOR_INTERVAL_SECONDS="5",
            CFPB_BACKFILL_DAYS="3",
        )
        (home / "dagster").mkdir()
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
        # the APIs, chat, mail, object store and broker: the local stand-ins, by URL
        stack.enter_context(local_stack(demo_backfill_days=5))
        # the product's tables on the ClickHouse server, as production finds them
        source = ClickHouseResource(url=clickhouse.url)
        for day in ACTIVITY_DAYS:
            GeneratedUserActions().land(source, date.fromisoformat(day))
        deployed = Deployment(
            home=home,
            venv=venv,
            env={
                **os.environ,
                "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
                "SIGNALBOX_ENV": "production",
            },
            grpc_port=free_port(),
            web_port=free_port(),
        )
        (home / "workspace.yaml").write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {deployed.grpc_port}\n      location_name: signalbox\n"
        )
        stack.callback(deployed.stop)
        deployed.start_code_server()
        seed_running_schedule(deployed, "mailbox_hourly_schedule", started_ago=3700)
        deployed.start_daemon()
        deployed.start(
            "webserver", "dagster-webserver", "-h", "127.0.0.1", "-p", str(deployed.web_port),
            "-w", str(home / "workspace.yaml"),
        )  # fmt: skip
        wait_for_port(deployed.web_port, timeout=180)
        try:
            yield deployed
        finally:
            for name in ("code-server", "daemon", "webserver"):
                print(f"--- {name}\n{deployed.log(name)}")
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(home, ignore_errors=True)


def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])


def seed_running_schedule(deployed: Deployment, name: str, started_ago: float) -> None:
    """Switch a schedule on as if that happened `started_ago` seconds ago, before the daemon
    starts: its first tick is then already due, and the daemon catches it up at once."""
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with (
        instance() as dagster,
        WorkspaceProcessContext(
            dagster, WorkspaceFileTarget([str(deployed.home / "workspace.yaml")])
        ) as workspace,
    ):
        location = workspace.create_request_context().get_code_location("signalbox")
        schedule = location.get_repository("__repository__").get_schedule(name)
        dagster.add_instigator_state(
            InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.RUNNING,
                ScheduleInstigatorData(schedule.cron_schedule, time.time() - started_ago),
            )
        )


def wait_for_runs(predicate, count: int = 1, timeout: float = 300) -> list[dg.DagsterRun]:
    """Finished runs (any status) matching `predicate`, at least `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        with instance() as dagster:
            matching = [r for r in dagster.get_runs() if predicate(r)]
        finished = [r for r in matching if r.is_finished]
        if len(finished) >= count:
            return finished
        if time.monotonic() > deadline:
            seen = [(r.job_name, r.status.value, dict(r.tags)) for r in matching]
            raise AssertionError(f"fewer than {count} finished runs after {timeout:.0f} s: {seen}")
        time.sleep(3)


def test_the_webserver_serves_the_installed_code_location(deployment: Deployment):
    data = deployment.graphql(
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name"
        " location { name } } } } assetNodes { id } }"
    )
    assert data["repositoriesOrError"]["nodes"] == [
        {"name": "__repository__", "location": {"name": "signalbox"}}
    ]
    assert len(data["assetNodes"]) > 30


def test_a_sensor_fires_under_the_daemon(deployment: Deployment):
    """The complaints poller (running by default) finds the CFPB API's complaints and its
    run lands them and builds their models."""
    runs = wait_for_runs(lambda r: r.tags.get("dagster/sensor_name") == "cfpb_new_complaints")
    # (the simulator's world grows: a later poll may request another run; all must succeed)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), deployment.log("daemon")
    assert all(r.tags["signalbox/engine"] == "postgres" for r in runs)
    warehouse = WarehouseResource(url=os.environ["SIGNALBOX_WAREHOUSE_URL"])
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM raw.cfpb_complaints")
        assert cur.fetchone()[0] > 0


def test_a_schedule_fires_under_the_daemon(deployment: Deployment):
    """The mailbox's hourly schedule, switched on an hour ago: the daemon runs its due tick."""
    runs = wait_for_runs(lambda r: r.tags.get("dagster/schedule_name") == "mailbox_hourly_schedule")
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), deployment.log("daemon")
    warehouse = WarehouseResource(url=os.environ["SIGNALBOX_WAREHOUSE_URL"])
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM raw.helpscout_conversations")
        assert cur.fetchone()[0] > 0


def test_a_backfill_runs_through_the_backfill_daemon(deployment: Deployment):
    """Three days of user activity: the activity assets backfill as one run over the range
    (BackfillPolicy.single_run), landed from the ClickHouse server and modelled there."""
    launched = deployment.graphql(
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams:
        $params) { __typename ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message } } }""",
        params={
            "selector": {
                "partitionSetName": "user_activity_partition_set",
                "repositorySelector": REPOSITORY,
            },
            "partitionNames": ACTIVITY_DAYS,
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]
    (run,) = wait_for_runs(lambda r: r.tags.get("dagster/backfill") == backfill, timeout=600)
    assert run.status == dg.DagsterRunStatus.SUCCESS, deployment.log("code-server")
    assert run.tags["dagster/asset_partition_range_start"] == ACTIVITY_DAYS[0]
    assert run.tags["dagster/asset_partition_range_end"] == ACTIVITY_DAYS[-1]
    deadline = time.monotonic() + 180  # the daemon marks it done on a later iteration
    while (status := backfill_status(deployment, backfill)) != "COMPLETED_SUCCESS":
        assert time.monotonic() < deadline, status
        time.sleep(3)
    marts = ClickHouseResource(url=os.environ["SIGNALBOX_CLICKHOUSE_URL"]).query(
        "SELECT toString(event_date) FROM activity_marts.activity_kpis_daily ORDER BY 1"
    )
    assert [day for (day,) in marts] == ACTIVITY_DAYS


def backfill_status(deployment: Deployment, backfill: str) -> str:
    answer = deployment.graphql(
        "query($id: String!) { partitionBackfillOrError(backfillId: $id) {"
        " ... on PartitionBackfill { status } } }",
        id=backfill,
    )
    return answer["partitionBackfillOrError"]["status"]


def test_the_queue_runs_one_clickhouse_run_at_a_time(deployment: Deployment):
    """Three ClickHouse runs requested at once (the run queue allows four runs in all):
    deploy/dagster.yaml's limit on signalbox/engine=clickhouse runs them one after another."""
    launch = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
    ids = set()
    for _ in range(3):
        answer = deployment.graphql(
            launch, params={"selector": {**REPOSITORY, "jobName": "activity_iqr_checks"}}
        )["launchRun"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        ids.add(answer["run"]["runId"])
    runs = wait_for_runs(lambda r: r.run_id in ids, count=3)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.tags["signalbox/engine"] == "clickhouse" for r in runs)
    # no two ClickHouse runs, these or any the schedules added, ever overlapped
    with instance() as dagster:
        records = dagster.get_run_records(dg.RunsFilter(tags={"signalbox/engine": "clickhouse"}))
    spans = sorted((r.start_time, r.end_time) for r in records if r.start_time and r.end_time)
    assert len(spans) >= 3
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_a_run_orphaned_by_a_crash_is_failed_by_monitoring_and_retried(deployment: Deployment):
    """Daemon and code server (with the run's process) killed mid-run, as a crashed VM or
    container would: restarted, run monitoring finds the run no longer running, fails it,
    and run retries start it again, to success."""
    yesterday = (datetime.now(ZoneInfo("Asia/Seoul")).date() - timedelta(days=1)).isoformat()
    launched = deployment.graphql(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        params={
            "selector": {**REPOSITORY, "jobName": "game_timelines_daily"},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": yesterday}]},
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 180
    with instance() as dagster:
        while dagster.get_run_by_id(run_id).status != dg.DagsterRunStatus.STARTED:
            assert time.monotonic() < deadline, deployment.log("daemon")
            time.sleep(0.5)
    deployment.kill("daemon")
    deployment.kill("code-server")
    deployment.start_code_server()
    deployment.start_daemon()
    (retry,) = wait_for_runs(lambda r: r.tags.get("dagster/parent_run_id") == run_id, timeout=400)
    with instance() as dagster:
        orphan = dagster.get_run_by_id(run_id)
        said = [event.message for event in dagster.all_logs(run_id)]
    assert orphan.status == dg.DagsterRunStatus.FAILURE
    assert any("no longer runs it" in (message or "") for message in said), said[-5:]
    assert retry.status == dg.DagsterRunStatus.SUCCESS, deployment.log("code-server")
