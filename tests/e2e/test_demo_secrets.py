"""The demo while it runs: no credential anywhere a person or a log reader can look, and no
socket listening beyond loopback.

Every stand-in makes a credential of its own per start (the Help Scout client secret, the
Neople key, the bot token, the S3 secret key) and the embedded PostgreSQL a password: each
is distinct, and each is looked for, as text, in the CLI's output, the UI's GraphQL answers
(every run's events and their metadata, the assets' materializations), every file under
SIGNALBOX_HOME (Dagster's storage and compute logs, the engines' data, the mail), and dbt's
logs and target/ folders. The only files allowed to hold them are the two kept for that,
readable by their owner only."""

from __future__ import annotations

import ipaddress
import json

import psutil
import pytest
import requests
from leaks import files_holding

from signalbox.platform.settings import DBT_ROOT

CREDENTIALS = (
    "HELPSCOUT_CLIENT_SECRET",
    "NEOPLE_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
)
SECRET_STORES = ("local-stack.json", "postgres.password")  # mode 0600, by design
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status runConfigYaml
    tags { key value } } } } }"""
EVENTS = """query Events($runId: ID!) { logsForRun(runId: $runId, limit: 20000) {
    __typename ... on EventConnection { events { __typename
        ... on MessageEvent { message level }
        ... on MaterializationEvent { metadataEntries { ...entry } }
        ... on ObservationEvent { metadataEntries { ...entry } }
        ... on ExecutionStepFailureEvent { error { ...failure } }
        ... on RunFailureEvent { error { ...failure } }
        ... on EngineEvent { metadataEntries { ...entry } error { ...failure } } } }
    ... on PythonError { message } } }
fragment failure on PythonError { message stack causes { message stack } }
fragment entry on MetadataEntry { label description
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
    ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path }
    ... on JsonMetadataEntry { jsonString } }"""
ASSETS = """{ assetsOrError { ... on AssetConnection { nodes { key { path }
    assetMaterializations(limit: 50) { runId metadataEntries { label description
        ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
        ... on UrlMetadataEntry { url } ... on JsonMetadataEntry { jsonString } } } } } } }"""


def sockets_of(processes: list[psutil.Process]) -> list[tuple[psutil.Process, object]]:
    """Every inet socket of the processes still alive (a run's worker may just have ended)."""
    found = []
    for process in processes:
        try:
            found += [(process, sock) for sock in process.net_connections(kind="inet")]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def non_loopback_listeners(sockets: list[tuple[psutil.Process, object]]) -> list[str]:
    """Sockets bound to an address other than loopback, listening or bound for UDP."""
    found = []
    for process, sock in sockets:
        listening = sock.status == psutil.CONN_LISTEN or (sock.type == 2 and not sock.raddr)
        if listening and not ipaddress.ip_address(sock.laddr.ip).is_loopback:
            found.append(f"{process.pid} on {sock.laddr.ip}:{sock.laddr.port}")
    return found


@pytest.mark.slow
def test_no_secret_leaks_and_nothing_listens_beyond_loopback(demo_with_ui, processes_of):
    demo, port = demo_with_ui()
    home = demo.home
    exported = json.loads((home / "local-stack.json").read_text())["variables"]
    secrets = {name: exported[name] for name in CREDENTIALS}
    secrets["warehouse password"] = (home / "postgres.password").read_text().strip()
    assert len(set(secrets.values())) == len(secrets), "every credential is its own"
    assert all(len(value) >= 16 for value in secrets.values())
    for store in SECRET_STORES:
        assert (home / store).stat().st_mode & 0o777 == 0o600

    # every socket the demo's processes opened listens on loopback only
    sockets = sockets_of(processes_of(str(home)))
    assert non_loopback_listeners(sockets) == []
    # UI, engines, simulators listen: the check looked at something
    assert sum(1 for _, sock in sockets if sock.status == psutil.CONN_LISTEN) >= 8

    # the UI's answers: runs (config, tags), every event of every run, the assets' metadata
    graphql = f"http://127.0.0.1:{port}/graphql"

    def ask(query: str, **variables) -> str:
        answer = requests.post(graphql, json={"query": query, "variables": variables}, timeout=60)
        answer.raise_for_status()
        return answer.text

    runs_text = ask(RUNS)
    runs = json.loads(runs_text)["data"]["runsOrError"]["results"]
    assert len(runs) >= 5
    answers = [runs_text, ask(ASSETS)] + [ask(EVENTS, runId=run["runId"]) for run in runs]
    assert sum(a.count('"__typename"') for a in answers) > 100  # events were returned
    leaks = [name for name, value in secrets.items() for a in answers if value in a]

    # files: SIGNALBOX_HOME (Dagster's storage and logs, the engines' data, mail), dbt's
    # logs and target/ of both projects, and what the CLI printed
    leaks += files_holding(home, secrets, skip=SECRET_STORES)
    for project in ("warehouse", "activity"):
        for folder in ("logs", "target"):
            if (DBT_ROOT / project / folder).is_dir():
                leaks += files_holding(DBT_ROOT / project / folder, secrets)
    output = demo.log.read_text()
    leaks += [f"{name} in the CLI's output" for name, value in secrets.items() if value in output]
    assert leaks == []
