"""The activity dbt project on embedded chDB (target `chdb`, adapter plugins/dbt-chdb):
build over a handcrafted set of user actions, exact figures from the marts, per-day
replacement on re-runs, and the docs site.

The data (UTC; profile = os / gender / age of the acting user):

2024-03-12
  feed      u1 Android/1/25: view 10:00, view 10:05, like 10:07, view 10:20
            u2 iOS/0/30:     view 10:01, like 10:16
            u3 iOS/1/30:     view 11:00
  messages  u1->u2 10:02, u1->u2 10:03, u2->u1 10:17, u1->u4 10:31,
            u3->u1 11:05 (u3 now Android/1/30: the latest own row wins), u1->u5 11:20
            u4 and u5 only receive: their profile is 'unknown'
2024-03-13
  feed      u4 Android/0/40: view 09:00, like 09:01;  u1 Android/1/25: view 09:10
  messages  u4->u1 09:05
2024-03-14
  feed      u2 iOS/0/30: view 12:00
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import pytest

from signalbox.platform.clickhouse import ClickHouseResource
from signalbox.platform.embedded.clickhouse_http import EmbeddedClickHouseServer, provision_database

pytestmark = pytest.mark.integration  # starts engines or processes itself

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project" / "activity"
DBT = str(Path(sys.executable).parent / "dbt")

SOURCES_DDL = [
    """CREATE TABLE feed_actions (user_id UInt32, post_id UInt32,
       action Enum8('view' = 1, 'like' = 2), time DateTime('UTC'), gender UInt8, age UInt8,
       country LowCardinality(String), city LowCardinality(String),
       os LowCardinality(String), source LowCardinality(String), exp_group UInt8)
       ENGINE = MergeTree PARTITION BY toDate(time) ORDER BY time""",
    """CREATE TABLE message_actions (user_id UInt32, receiver_id UInt32,
       time DateTime('UTC'), source LowCardinality(String), exp_group UInt8, gender UInt8,
       age UInt8, country LowCardinality(String), city LowCardinality(String),
       os LowCardinality(String))
       ENGINE = MergeTree PARTITION BY toDate(time) ORDER BY time""",
]
FEED_COLUMNS = ["user_id", "post_id", "action", "time", "gender", "age", "country", "city"]
FEED_COLUMNS += ["os", "source", "exp_group"]
MESSAGE_COLUMNS = ["user_id", "receiver_id", "time", "source", "exp_group", "gender", "age"]
MESSAGE_COLUMNS += ["country", "city", "os"]

PROFILES = {1: ("Android", 1, 25), 2: ("iOS", 0, 30), 3: ("iOS", 1, 30), 4: ("Android", 0, 40)}


def at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M")


def feed(user: int, post: int, action: str, stamp: str, profile=None) -> list:
    os_name, gender, age = profile or PROFILES[user]
    return [user, post, action, at(stamp), gender, age, "RU", "Moscow", os_name, "ads", 1]


def message(sender: int, receiver: int, stamp: str, profile=None) -> list:
    os_name, gender, age = profile or PROFILES[sender]
    return [sender, receiver, at(stamp), "organic", 2, gender, age, "RU", "Moscow", os_name]


FEED = [
    feed(1, 1, "view", "2024-03-12 10:00"),
    feed(1, 2, "view", "2024-03-12 10:05"),
    feed(1, 2, "like", "2024-03-12 10:07"),
    feed(1, 3, "view", "2024-03-12 10:20"),
    feed(2, 1, "view", "2024-03-12 10:01"),
    feed(2, 1, "like", "2024-03-12 10:16"),
    feed(3, 4, "view", "2024-03-12 11:00"),
    feed(4, 5, "view", "2024-03-13 09:00"),
    feed(4, 5, "like", "2024-03-13 09:01"),
    feed(1, 5, "view", "2024-03-13 09:10"),
    feed(2, 6, "view", "2024-03-14 12:00"),
]
MESSAGES = [
    message(1, 2, "2024-03-12 10:02"),
    message(1, 2, "2024-03-12 10:03"),
    message(2, 1, "2024-03-12 10:17"),
    message(1, 4, "2024-03-12 10:31"),
    message(3, 1, "2024-03-12 11:05", profile=("Android", 1, 30)),
    message(1, 5, "2024-03-12 11:20"),
    message(4, 1, "2024-03-13 09:05"),
]

# (dimension, value): views, likes, messages_received, messages_sent, users_received, users_sent
DIMENSIONS_0312 = {
    ("os", "Android"): (4, 1, 2, 5, 2, 4),  # u1 + u3 (u3's latest own row is Android)
    ("os", "iOS"): (1, 1, 2, 1, 1, 1),  # u2
    ("os", "unknown"): (0, 0, 2, 0, 2, 0),  # u4, u5: receivers only
    ("gender", "1"): (4, 1, 2, 5, 2, 4),
    ("gender", "0"): (1, 1, 2, 1, 1, 1),
    ("gender", "unknown"): (0, 0, 2, 0, 2, 0),
    ("age", "25"): (3, 1, 2, 4, 2, 3),  # u1
    ("age", "30"): (2, 1, 2, 2, 1, 2),  # u2 + u3
    ("age", "unknown"): (0, 0, 2, 0, 2, 0),
}
DIMENSIONS_0313 = {
    ("os", "Android"): (2, 1, 1, 1, 1, 1),
    ("gender", "1"): (1, 0, 1, 0, 1, 0),  # u1
    ("gender", "0"): (1, 1, 0, 1, 0, 1),  # u4, now acting with a profile of its own
    ("age", "25"): (1, 0, 1, 0, 1, 0),
    ("age", "40"): (1, 1, 0, 1, 0, 1),
}
# dau_app, dau_feed, dau_messenger, views, likes, ctr, messages_sent, receivers, ratio
KPIS = {
    "2024-03-12": (3, 3, 3, 5, 2, 0.4, 6, 4, 0.75),
    "2024-03-13": (2, 2, 1, 2, 1, 0.5, 1, 1, 1.0),
    "2024-03-14": (1, 1, 0, 1, 0, 0.0, 0, 0, None),
}
# bucket: feed users, views, likes, ctr, messenger users, messages sent
BUCKETS_0312 = {
    "10:00": (2, 3, 1, 1 / 3, 1, 2),
    "10:15": (2, 1, 1, 1.0, 1, 1),
    "10:30": (0, 0, 0, None, 1, 1),
    "10:45": (0, 0, 0, None, 0, 0),  # no event at all: present, so an outage is a drop
    "11:00": (1, 1, 0, 0.0, 1, 1),
    "11:15": (0, 0, 0, None, 1, 1),
}


@pytest.fixture(scope="module", params=["chdb", "server", "cluster"])
def clickhouse(request) -> Iterator[ClickHouseResource]:
    """Its own SIGNALBOX_HOME with the two source tables loaded, on the embedded engine
    (target `chdb`), on a server over HTTP (target `server`, dbt-clickhouse), or on a
    cluster (`?cluster=signalbox` on the URL: dbt's DDL goes ON CLUSTER). The server is the
    embedded engine behind ClickHouse's HTTP interface in a process of its own; for the
    cluster it stands for a one-node cluster and records every statement it receives."""
    home = Path(tempfile.mkdtemp(prefix="signalbox-activity-dbt-", dir="/tmp"))
    previous = os.environ.get("SIGNALBOX_HOME")
    os.environ["SIGNALBOX_HOME"] = str(home)
    with ExitStack() as stack:
        if request.param in ("server", "cluster"):
            cluster = "signalbox" if request.param == "cluster" else None
            server = stack.enter_context(
                EmbeddedClickHouseServer(
                    home / "server", cluster=cluster, record=home / "statements.jsonl"
                )
            )
            provision_database(server)
            resource = ClickHouseResource(url=server.url)
        else:
            resource = ClickHouseResource()
        with resource.client("test sources") as client:
            for ddl in SOURCES_DDL:
                client.command(ddl)
            client.insert("feed_actions", FEED, column_names=FEED_COLUMNS)
            client.insert("message_actions", MESSAGES, column_names=MESSAGE_COLUMNS)
        yield resource
    if previous is None:
        os.environ.pop("SIGNALBOX_HOME", None)
    else:
        os.environ["SIGNALBOX_HOME"] = previous
    shutil.rmtree(home, ignore_errors=True)


def run_dbt(resource: ClickHouseResource, *args: str) -> subprocess.CompletedProcess:
    """Run dbt as Dagster does: a subprocess, with this process holding only the guard."""
    home = Path(os.environ["SIGNALBOX_HOME"])
    with resource.dbt_lock("test dbt") as env:
        return subprocess.run(
            [DBT, *args, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
            + ["--target-path", str(home / "dbt-target"), "--log-path", str(home / "dbt-logs")],
            cwd=PROJECT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )


def dbt(resource: ClickHouseResource, *args: str) -> float:
    """Run dbt, fail the test with its output if it fails, return its wall time."""
    started = time.monotonic()
    result = run_dbt(resource, *args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return time.monotonic() - started


def window(first: str, last: str) -> str:
    return f"{{min_date: '{first}', max_date: '{last}'}}"


def dimensions(resource, day: str) -> dict:
    rows = resource.query(
        "SELECT dimension, dimension_value, views, likes, messages_received, messages_sent,"
        " users_received, users_sent FROM activity_marts.activity_daily_dimensions"
        " WHERE event_date = {d:Date}",
        {"d": day},
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def kpis(resource) -> dict:
    rows = resource.query(
        "SELECT toString(event_date), dau_app, dau_feed, dau_messenger, views, likes, ctr,"
        " messages_sent, message_receivers, sent_received_ratio"
        " FROM activity_marts.activity_kpis_daily ORDER BY event_date"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def snapshot(resource) -> dict:
    tables = ["activity_marts.activity_daily_dimensions", "activity_marts.activity_kpis_daily"]
    tables += ["activity_marts.activity_metrics_15min"]
    tables += ["activity_intermediate.int_activity__user_daily"]
    return {t: sorted(resource.query(f"SELECT * FROM {t}"), key=repr) for t in tables}


def approx_row(row):
    return tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)


@pytest.fixture(scope="module")
def built(clickhouse) -> dict:
    seconds = dbt(clickhouse, "build", "--vars", window("2024-03-12", "2024-03-14"))
    return {"build_seconds": seconds}


def test_build_gives_the_seed_table_by_each_users_own_profile(clickhouse, built):
    assert dimensions(clickhouse, "2024-03-12") == DIMENSIONS_0312
    assert dimensions(clickhouse, "2024-03-13") == DIMENSIONS_0313
    columns = clickhouse.query(
        "SELECT name FROM system.columns WHERE database = 'activity_marts'"
        " AND table = 'activity_daily_dimensions' ORDER BY position"
    )
    assert [c for (c,) in columns] == [
        "event_date",
        "dimension",
        "dimension_value",
        "views",
        "likes",
        "messages_received",
        "messages_sent",
        "users_received",
        "users_sent",
    ]


def test_build_gives_daily_kpis(clickhouse, built):
    got = kpis(clickhouse)
    assert got.keys() == KPIS.keys()
    for day, expected in KPIS.items():
        assert got[day] == approx_row(expected), day


def test_build_gives_15_minute_buckets_with_gaps_filled(clickhouse, built):
    rows = clickhouse.query(
        "SELECT formatDateTime(bucket_start, '%H:%i'), feed_active_users, views, likes, ctr,"
        " messenger_active_users, messages_sent, bucket_end - bucket_start"
        " FROM activity_marts.activity_metrics_15min WHERE bucket_date = '2024-03-12'"
        " ORDER BY bucket_start"
    )
    # every bucket from midnight to the day's last event, zeros where nothing happened
    assert len(rows) == 46 and rows[0][0] == "00:00" and rows[-1][0] == "11:15"
    assert {r[1:7] for r in rows[:40]} == {(0, 0, 0, None, 0, 0)}
    assert {r[0]: r[1:7] for r in rows[40:]} == {k: approx_row(v) for k, v in BUCKETS_0312.items()}
    assert {r[7] for r in rows} == {900}
    per_day = clickhouse.query(
        "SELECT toString(bucket_date), count(), sum(views), sum(messages_sent) FROM"
        " activity_marts.activity_metrics_15min GROUP BY bucket_date ORDER BY bucket_date"
    )
    assert per_day == [("2024-03-12", 46, 5, 6), ("2024-03-13", 37, 2, 1), ("2024-03-14", 49, 1, 0)]


def test_rerunning_a_day_replaces_exactly_that_day(clickhouse, built):
    before = snapshot(clickhouse)
    dbt(clickhouse, "build", "--vars", window("2024-03-13", "2024-03-13"))
    assert snapshot(clickhouse) == before  # same data in, same rows out: nothing appended

    # 03-13 is re-landed with other actions and 03-14 is emptied; re-run both days
    with clickhouse.client("test re-land") as client:
        for table in ("feed_actions", "message_actions"):
            client.command(f"ALTER TABLE {table} DROP PARTITION '2024-03-13'")
            client.command(f"ALTER TABLE {table} DROP PARTITION '2024-03-14'")
        client.insert(
            "feed_actions",
            [feed(2, 9, "view", "2024-03-13 15:00"), feed(2, 9, "like", "2024-03-13 15:02")],
            column_names=FEED_COLUMNS,
        )
    dbt(clickhouse, "run", "--vars", window("2024-03-13", "2024-03-14"))
    assert dimensions(clickhouse, "2024-03-12") == DIMENSIONS_0312  # outside the window
    assert dimensions(clickhouse, "2024-03-13") == {
        ("os", "iOS"): (1, 1, 0, 0, 0, 0),
        ("gender", "0"): (1, 1, 0, 0, 0, 0),
        ("age", "30"): (1, 1, 0, 0, 0, 0),
    }
    assert kpis(clickhouse) == {
        "2024-03-12": approx_row(KPIS["2024-03-12"]),
        "2024-03-13": approx_row((1, 1, 0, 1, 1, 1.0, 0, 0, None)),
    }
    buckets = clickhouse.query(
        "SELECT toString(bucket_date), count() FROM activity_marts.activity_metrics_15min"
        " GROUP BY bucket_date ORDER BY bucket_date"
    )
    assert buckets == [("2024-03-12", 46), ("2024-03-13", 61)]  # 03-13 now ends at 15:00


def test_bad_window_var_stops_with_the_var_name(clickhouse, built):
    result = run_dbt(clickhouse, "compile", "-s", "activity_kpis_daily", "--vars", "{min_date: x}")
    assert result.returncode != 0
    assert "var min_date must be a date YYYY-MM-DD, got 'x'" in result.stdout


def test_docs_generate(clickhouse, built):
    dbt(clickhouse, "docs", "generate")
    home = Path(os.environ["SIGNALBOX_HOME"])
    catalog = (home / "dbt-target" / "catalog.json").read_text()
    assert "activity_daily_dimensions" in catalog and "dimension_value" in catalog


@pytest.mark.parametrize("clickhouse", ["cluster"], indirect=True)
def test_on_a_cluster_the_models_ddl_goes_on_cluster(clickhouse, built):
    """On a cluster (the profile's `cluster`, from `?cluster=` on the URL) every statement
    that creates, drops, exchanges or alters one of the models' relations carries ON
    CLUSTER, our pre-hook's partition drops included, and runs (the build above passed with
    the same figures as on one server). The exception is dbt-clickhouse's insert_overwrite:
    it replaces a day's partition on the node it talks to, which is why the README asks for
    replicated engines on a cluster (a replicated table copies the replace to its replicas).
    """
    assert clickhouse.server().cluster == "signalbox"
    log = Path(os.environ["SIGNALBOX_HOME"]) / "statements.jsonl"
    statements = [
        " ".join(re.sub(r"^\s*/\*.*?\*/", "", json.loads(line)["sql"], flags=re.S).split())
        for line in log.read_text().splitlines()
    ]  # (dbt's leading comment dropped)
    ddl = [
        sql
        for sql in statements
        if re.match(r"(create|drop|exchange|rename|alter)\b", sql, re.I)
        and re.search(r"activity_(staging|intermediate|marts)", sql)
    ]
    replaces = [sql for sql in ddl if re.search(r"\breplace partition\b", sql, re.I)]
    others = [sql for sql in ddl if sql not in replaces]
    assert len(others) >= 20 and replaces  # databases, views, tables, swaps, comments
    assert [sql[:160] for sql in others if 'ON CLUSTER "signalbox"' not in sql] == []
    assert [sql[:160] for sql in replaces if "ON CLUSTER" in sql] == []
