"""User activity: three UTC days of generated user actions landed into ClickHouse (a server
over HTTP) and the dbt-clickhouse activity models built over them in one run, killed with
SIGKILL while a day's rows go into their staging table, while a day is swapped in, between
a day's two tables, between landing and dbt, while dbt creates, fills and swaps the
models' days, after dbt, at moments measured inside dbt's build, and at random, while the
source changes between runs (two generated worlds, one run each in turn). After every
kill each day of each table and model is whole or absent; after the last run the raw
tables hold the final world's rows exactly once and the models equal the figures pandas
computes from them.

"Whole or absent" at rest, i.e. once the server has run what the killed run had sent (the
embedded server runs every statement it has read to its end, whether its client is still
there or not):
- raw: the generator builds a day of a table in `<table>__landing_<day>` and swaps it in
  with one `ALTER TABLE ... REPLACE PARTITION` (the day's parts replaced at once): each
  day of each table is one world's rows for that day, or absent. A kill between a day's
  two tables leaves them at different worlds (messages possibly absent): allowed, as the
  next run lands both again before dbt reads them; a staging table left behind is dropped
  when that day is landed again.
- models: dbt-clickhouse's insert_overwrite builds the window in
  `<model>__dbt_new_data_<invocation>` and swaps its days in with one ALTER TABLE ...
  REPLACE PARTITION; a first build creates the table empty, then inserts into it (the one
  statement that writes a model's table in place). Each day of each model is one world's
  figures for that day, or absent; possibly not the world the raw day holds now (a run
  killed after landing and before dbt leaves the models a world behind until the next
  run), and models of one run may differ (a kill between two models' swaps).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import drill
import pytest
from drill import DrillScore, KillPoint

from signalbox.domains.user_activity.tables import FEED_ACTIONS, MESSAGE_ACTIONS, TABLES
from signalbox.platform.clickhouse import ClickHouseResource

RUNNER = "test_user_activity_drill:materialize"
HERE = "test_user_activity_drill"
DAYS = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]  # Mon..Wed, long over
WINDOW = (DAYS[0].isoformat(), DAYS[-1].isoformat())
WORLD = {"users": 3_000, "feed_events_per_day": 20_000, "messages_per_day": 3_000}
SEEDS = (5, 6)  # the source changes between runs: run i lands world SEEDS[i % 2]
DRILL_DATABASE = "drill_activity"

# The landing's HTTP requests, counted in the child (the same on a fresh database):
# 1-3 open a client, 4-5 CREATE TABLE IF NOT EXISTS; then per table DROP and CREATE the
# staging table, INSERT ... SELECT the day into it, count it, REPLACE PARTITION, DROP it
# (feed 6-11, messages 12-17); 18-19 count the day. Each day opens its own client: day d
# (0-based) is 19 * d further on. The drill checks them on the trace of a whole landing.
SENT = "urllib3.connection:HTTPConnection.getresponse"  # before #n: request n sent, unanswered
ANSWERED = "clickhouse_connect.driver._backend.http_sync:HttpSyncBackend.request"
LANDING_REQUESTS = {
    8: "INSERT INTO `{db}`.`feed_actions__landing_20261102`",
    10: "ALTER TABLE `{db}`.`feed_actions` REPLACE PARTITION '2026-11-02'",
    33: "INSERT INTO `{db}`.`message_actions__landing_20261103`",
    54: "ALTER TABLE `{db}`.`message_actions` REPLACE PARTITION '2026-11-04'",
}
# In order: the first points meet an empty database, the dbt ones first meet no model (a
# first build: CREATE TABLE, then INSERT), and once `dbt_finished` has let one build end,
# every model exists and a build goes through insert_overwrite (new data, then REPLACE).
POINTS = [
    KillPoint(SENT, 8, note="day 1 feed rows going into their staging table, fresh database"),
    KillPoint(SENT, 10, note="day 1 feed REPLACE PARTITION sent, unanswered"),
    KillPoint(ANSWERED, 10, "after", "day 1 feed swapped in, its messages not"),
    KillPoint(SENT, 33, note="day 2 messages going into their staging table"),
    KillPoint(SENT, 54, note="the last day's last swap sent, unanswered"),
    KillPoint("signalbox.domains.user_activity.models:invocation_environ", 1,
              note="every day landed, dbt not started"),
    KillPoint(f"{HERE}:dbt_create_table", 1, note="dbt's first build: the first table created"),
    KillPoint(f"{HERE}:dbt_insert", 2, note="dbt filling the second model"),
    KillPoint(f"{HERE}:dbt_model_finished", 2, note="two models built, the marts next"),
    KillPoint(f"{HERE}:dbt_finished", 1, note="dbt exited, Dagster not told"),
    KillPoint(f"{HERE}:dbt_replaced", 1, note="one model's days swapped in, the others' not"),
    KillPoint(f"{HERE}:dbt_replace_partitions", 4, note="the last model's swap on its way"),
]  # fmt: skip
DBT_SHARES = (0.5,)  # kills timed into dbt's build (measured on the `dbt_finished` run)

# Each model: its relation under the drill database, its day column, and its columns.
MODELS = {
    "int_activity__user_daily": (
        "intermediate",
        "event_date",
        ["event_date", "user_id", "has_own_profile", "os", "gender", "age", "views", "likes"]
        + ["messages_sent", "users_sent", "messages_received", "users_received"],
    ),
    "activity_daily_dimensions": (
        "marts",
        "event_date",
        ["event_date", "dimension", "dimension_value", "views", "likes", "messages_received"]
        + ["messages_sent", "users_received", "users_sent"],
    ),
    "activity_kpis_daily": (
        "marts",
        "event_date",
        ["event_date", "dau_app", "dau_feed", "dau_messenger", "views", "likes", "ctr"]
        + ["messages_sent", "message_receivers", "sent_received_ratio"],
    ),
    "activity_metrics_15min": (
        "marts",
        "bucket_date",
        ["bucket_date", "bucket_start", "bucket_end", "feed_active_users", "views", "likes"]
        + ["ctr", "messenger_active_users", "messages_sent"],
    ),
}
KEYS = {
    "int_activity__user_daily": "event_date, user_id",
    "activity_daily_dimensions": "event_date, dimension, dimension_value",
    "activity_kpis_daily": "event_date",
    "activity_metrics_15min": "bucket_start",
}

# --------------------------------------------------------------------------- the child

_trace_file = None


def _trace(kind: str, **fields) -> None:
    if _trace_file is not None:
        _trace_file.write(json.dumps({"t": time.monotonic(), "kind": kind, **fields}) + "\n")
        _trace_file.flush()


# Moments of dbt's build as the child reads them from dbt's event stream (dbt logs each
# statement as a debug event before it sends it, and its status once answered): no-ops to
# arm a kill on, and lines of the trace. dbt may be a statement further when one is seen.


def dbt_started() -> None:
    _trace("dbt", moment="started")


def dbt_create_table() -> None:
    _trace("dbt", moment="create_table")


def dbt_insert() -> None:
    _trace("dbt", moment="insert")


def dbt_replace_partitions() -> None:
    _trace("dbt", moment="replace_partitions")


def dbt_replaced() -> None:
    _trace("dbt", moment="replaced")


def dbt_model_finished() -> None:
    _trace("dbt", moment="model_finished")


def dbt_finished() -> None:
    _trace("dbt", moment="finished")


_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_swapping: set[str] = set()  # models whose REPLACE PARTITION is unanswered


def _observe(raw: dict) -> None:
    info = raw.get("info", {})
    node = ((raw.get("data") or {}).get("node_info") or {}).get("unique_id", "")
    if not node.startswith("model.") or node.rpartition(".")[2] not in MODELS:
        return
    msg = info.get("msg", "")
    if info.get("name") == "NodeFinished":
        dbt_model_finished()
    elif "SQL status: OK" in msg and node in _swapping:
        _swapping.discard(node)
        dbt_replaced()
    elif "On model." in msg:
        sql = msg.partition("On model.")[2].partition(": ")[2]
        sql = " ".join(_COMMENT.sub(" ", sql).split()).lower()
        if sql.startswith("create table") and "__dbt_new_data_" not in sql:
            dbt_create_table()
        elif sql.startswith("insert into"):
            dbt_insert()
        elif sql.startswith("alter table") and "replace partition" in sql:
            _swapping.add(node)
            dbt_replace_partitions()


def _watch(trace: str) -> None:
    """Trace the run's HTTP requests and dbt's moments (the moments call the hooks above)."""
    global _trace_file
    from clickhouse_connect.driver._backend.http_sync import HttpSyncBackend
    from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation

    _trace_file = open(trace, "a")  # noqa: SIM115 (the child's whole life)
    request, stream, sent = HttpSyncBackend.request, DbtCliInvocation.stream_raw_events, [0]

    @functools.wraps(request)
    def traced_request(self, data, params, *args, **kwargs):
        sent[0] += 1
        body = data.decode(errors="replace") if isinstance(data, bytes) else data or ""
        sql = (params.get("query") or "") + body
        _trace("request", n=sent[0], sql=" ".join(sql.split())[:120])
        return request(self, data, params, *args, **kwargs)

    @functools.wraps(stream)
    def watched(self):
        dbt_started()
        for event in stream(self):
            _observe(event.raw_event)
            yield event
        dbt_finished()

    HttpSyncBackend.request = traced_request
    DbtCliInvocation.stream_raw_events = watched


def materialize(settings: dict) -> bool:
    """The child's run: the days' user actions and the activity dbt models, as the
    `user_activity` job runs them for a backfill of the window (one run, single-run
    backfill policy), on the server at settings["url"]."""
    from signalbox.domains.user_activity.models import activity_dbt_models
    from signalbox.domains.user_activity.raw import activity_user_actions
    from signalbox.platform.dbt import activity_project, dbt_resource
    from signalbox.simulators.user_activity import GeneratedUserActions

    log = os.open(settings["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # dbt's and Dagster's chatter, for a failure's message
    os.dup2(log, 2)
    os.environ["DBT_LOG_LEVEL"] = "debug"  # dbt's statements in its event stream
    # each dbt invocation's target (3 MB) under the test's tmp_path, not dbt_project/; a run
    # over a window re-parses anyway (its --vars differ from the prepared manifest's)
    os.environ["DBT_TARGET_PATH"] = settings["dbt_target"]
    _watch(settings["trace"])
    _trace("start", pid=os.getpid())
    first, last = settings["window"]
    result = dg.materialize(
        [activity_user_actions, activity_dbt_models],
        resources={
            "clickhouse": ClickHouseResource(url=settings["url"]),
            "user_actions": GeneratedUserActions(**WORLD, seed=settings["seed"], anomalies=""),
            "activity_dbt": dbt_resource(activity_project),
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )
    _trace("end", success=result.success)
    return result.success


# --------------------------------------------------------------------------- at rest


def settle(lines: list[dict], port: int, timeout: float = 120.0) -> None:
    """Wait until the killed run's processes are gone and the server has answered every
    request they had sent (its side of such a connection waits in CLOSE_WAIT until then)."""
    group = next((line["pid"] for line in lines if line["kind"] == "start"), None)
    deadline = time.monotonic() + timeout
    while (group is not None and _group_alive(group)) or _close_wait(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the killed run (group {group}) did not settle on port {port}")
        time.sleep(0.02)


def _group_alive(group: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


def _close_wait(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                count += int(local.rpartition(":")[2], 16) == port and state == "08"
    return count


def _norm(value):
    """One spelling per value for comparing ClickHouse's rows with pandas'."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return round(float(value), 9)
    if type(value).__name__.startswith(("int", "uint")):
        return int(value)
    return value


def stored(clickhouse: ClickHouseResource, database: str) -> tuple[dict, dict, list[str]]:
    """What `database` (and dbt's schemas of it) holds, read through one client: raw days
    {(table, day): (rows, hash of the rows)}, model days {(model, day): sorted rows}, and
    the staging and new-data tables killed runs left behind."""
    raw, models = {}, {}
    with clickhouse.client("drill: at rest") as client:
        tables = client.query(
            "SELECT database, name FROM system.tables"
            " WHERE database = {db:String} OR startsWith(database, {prefix:String})",
            parameters={"db": database, "prefix": f"{database}_"},
        ).result_rows
        for table in TABLES:
            if (database, table) not in tables:
                continue
            for day, rows, digest in client.query(
                f"SELECT toDate(time) AS day, count(), sum(cityHash64(*))"
                f" FROM `{database}`.`{table}` GROUP BY day"
            ).result_rows:
                raw[(table, day)] = (rows, digest)
        for model, (layer, day_column, columns) in MODELS.items():
            schema = f"{database}_{layer}"
            if (schema, model) not in tables:
                continue
            for row in client.query(
                f"SELECT {', '.join(columns)} FROM `{schema}`.`{model}`"
            ).result_rows:
                day = row[columns.index(day_column)]
                models.setdefault((model, day), []).append(tuple(map(_norm, row)))
    left = sorted(f"{d}.{n}" for d, n in tables if "__landing_" in n or "__dbt_" in n)
    return raw, {key: sorted(rows, key=repr) for key, rows in models.items()}, left


def at_rest(clickhouse: ClickHouseResource, truths: dict) -> dict:
    """What each day of each table and model holds: a world's seed, "absent", or
    "PARTIAL" (neither a whole world's day nor nothing)."""
    state = {}
    raw, models, _ = stored(clickhouse, DRILL_DATABASE)
    for key in {*raw, *((table, day) for table in TABLES for day in DAYS)}:
        seeds = [seed for seed, truth in truths.items() if truth["raw"].get(key) == raw.get(key)]
        state[key] = "absent" if key not in raw else seeds[0] if seeds else "PARTIAL"
    for key in {*models, *((model, day) for model in MODELS for day in DAYS)}:
        have = models.get(key)
        seeds = [seed for seed, truth in truths.items() if truth["models"].get(key) == have]
        state[key] = "absent" if have is None else seeds[0] if seeds else "PARTIAL"
    return state


# --------------------------------------------------------------------------- the truth


def _domain_truth():
    """The domain tests' own expected figures (pandas, from the raw rows):
    tests/domains/user_activity/test_user_actions.py, its `expected_daily_dimensions` and
    `own_profiles`."""
    path = Path(__file__).parents[1] / "domains" / "user_activity" / "test_user_actions.py"
    spec = importlib.util.spec_from_file_location("user_activity_expected_figures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def world_truth(clickhouse: ClickHouseResource, database: str, seed: int) -> dict:
    """A world's days as the generator makes them, landed into `database` by the
    generator itself, and every model's figures for them computed in pandas."""
    import pandas as pd

    from signalbox.simulators.user_activity import GeneratedUserActions, WorldSettings, plan_day

    source = GeneratedUserActions(**WORLD, seed=seed, anomalies="")
    for day in DAYS:
        landed = source.land(clickhouse, day)
        plan = plan_day(WorldSettings(**WORLD, seed=seed), day)
        assert (landed.feed.rows, landed.messages.rows) == (plan.feed_events, plan.messages)
    domain = _domain_truth()
    truth = {"raw": stored(clickhouse, database)[0], "models": {}}
    feed = pd.DataFrame(
        clickhouse.query(
            "SELECT toDate(time), user_id, toString(action), time, os, gender, age"
            f" FROM `{database}`.`{FEED_ACTIONS}`"
        ),
        columns=["day", "user_id", "action", "time", "os", "gender", "age"],
    )
    messages = pd.DataFrame(
        clickhouse.query(
            "SELECT toDate(time), user_id, receiver_id, time, os, gender, age"
            f" FROM `{database}`.`{MESSAGE_ACTIONS}`"
        ),
        columns=["day", "user_id", "receiver_id", "time", "os", "gender", "age"],
    )
    known = None  # each user's latest profile from the days before (the user dimension)
    for day in DAYS:
        day_feed = feed[feed.day == day].drop(columns="day")
        day_messages = messages[messages.day == day].drop(columns="day")
        figures = day_figures(day, day_feed, day_messages, domain, known)
        today = domain.own_profiles(day_feed, day_messages)
        known = today if known is None else today.combine_first(known)
        for model, rows in figures.items():
            truth["models"][(model, day)] = sorted((tuple(map(_norm, r)) for r in rows), key=repr)
    return truth


def day_figures(day: date, feed, messages, domain, known) -> dict[str, list[tuple]]:
    """Every model's rows of one day from its raw rows (the seed's definitions, as the
    domain tests state them)."""
    import pandas as pd

    views = feed[feed.action == "view"].groupby("user_id").size().rename("views")
    likes = feed[feed.action == "like"].groupby("user_id").size().rename("likes")
    sent = messages.groupby("user_id").agg(
        messages_sent=("receiver_id", "size"), users_sent=("receiver_id", "nunique")
    )
    received = (
        messages.groupby("receiver_id")
        .agg(messages_received=("user_id", "size"), users_received=("user_id", "nunique"))
        .rename_axis("user_id")
    )
    profiles = domain.own_profiles(feed, messages)
    users = pd.concat([views, likes, sent, received, profiles], axis=1)
    counts = ["views", "likes", "messages_sent", "users_sent", "messages_received"]
    counts += ["users_received"]
    users[counts] = users[counts].fillna(0).astype(int)
    users["has_own_profile"] = users.os.notna()
    users[["os", "gender", "age"]] = users[["os", "gender", "age"]].fillna("unknown")
    columns = ["has_own_profile", "os", "gender", "age", *counts]
    user_daily = [(day, *row) for row in users[columns].itertuples(name=None)]
    dimensions = [
        (day, dimension, value, *figures)
        for (dimension, value), figures in domain.expected_daily_dimensions(
            feed, messages, known
        ).items()
    ]
    on_feed = users.views + users.likes > 0
    dau_messenger = int((users.messages_sent > 0).sum())
    receivers = int((users.messages_received > 0).sum())
    total_views, total_likes = int(users.views.sum()), int(users.likes.sum())
    kpis = [
        (
            day,
            int((on_feed | (users.messages_sent > 0)).sum()),
            int(on_feed.sum()),
            dau_messenger,
            total_views,
            total_likes,
            total_likes / total_views if total_views else None,
            int(users.messages_sent.sum()),
            receivers,
            dau_messenger / receivers if receivers else None,
        )
    ]
    return {
        "int_activity__user_daily": user_daily,
        "activity_daily_dimensions": dimensions,
        "activity_kpis_daily": kpis,
        "activity_metrics_15min": buckets(day, feed, messages),
    }


def buckets(day: date, feed, messages) -> list[tuple]:
    """15-minute buckets from midnight to the day's last event's bucket, zeros included."""
    feed = feed.assign(bucket=feed.time.dt.floor("15min"))
    messages = messages.assign(bucket=messages.time.dt.floor("15min"))
    by_feed = feed.groupby("bucket").agg(
        users=("user_id", "nunique"),
        views=("action", lambda a: int((a == "view").sum())),
        likes=("action", lambda a: int((a == "like").sum())),
    )
    by_messages = messages.groupby("bucket").agg(
        users=("user_id", "nunique"), sent=("time", "size")
    )
    last = max([*by_feed.index, *by_messages.index])
    midnight = datetime(day.year, day.month, day.day)
    rows, start = [], midnight
    while start <= last.to_pydatetime().replace(tzinfo=None):
        stamp = _bucket_key(start, by_feed.index)
        f = by_feed.loc[stamp] if stamp is not None else None
        stamp_m = _bucket_key(start, by_messages.index)
        m = by_messages.loc[stamp_m] if stamp_m is not None else None
        views = int(f.views) if f is not None else 0
        likes = int(f.likes) if f is not None else 0
        rows.append(
            (
                day,
                start,
                start + timedelta(minutes=15),
                int(f.users) if f is not None else 0,
                views,
                likes,
                likes / views if views else None,
                int(m.users) if m is not None else 0,
                int(m.sent) if m is not None else 0,
            )
        )
        start += timedelta(minutes=15)
    return rows


def _bucket_key(start: datetime, index):
    for stamp in index:
        if stamp.to_pydatetime().replace(tzinfo=None) == start:
            return stamp
    return None


# --------------------------------------------------------------------------- the drill


@pytest.fixture
def databases(clickhouse_server_database):
    """The drill's database and one per world (its truth, landed by the generator)."""
    with contextlib.ExitStack() as stack:
        drilled = stack.enter_context(clickhouse_server_database(DRILL_DATABASE))
        worlds = {
            seed: (f"truth_activity_{seed}", stack.enter_context(
                clickhouse_server_database(f"truth_activity_{seed}")
            ))
            for seed in SEEDS
        }  # fmt: skip
        yield drilled, worlds


def _trace_lines(trace: Path) -> list[dict]:
    return [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []


def last_seen(trace: list[dict]) -> str:
    """Where a run was when it died: its last request or dbt moment."""
    lines = [line for line in trace if line["kind"] in ("request", "dbt")]
    if not lines:
        return "before its first request"
    line = lines[-1]
    return f"dbt {line['moment']}" if line["kind"] == "dbt" else line["sql"][:70]


def test_user_activity_survives_sigkill_anywhere(clickhouse_server, databases, tmp_path):
    drilled, worlds = databases
    truths = {seed: world_truth(resource, name, seed) for seed, (name, resource) in worlds.items()}
    score = DrillScore("user_activity")
    log, partial = tmp_path / "runs.log", []

    def run(number: int, **kill) -> tuple[drill.Outcome, list[dict]]:
        trace = tmp_path / f"trace-{number}.jsonl"
        settings = {
            "url": drilled.url,
            "seed": SEEDS[number % 2],
            "window": WINDOW,
            "trace": str(trace),
            "log": str(log),
            "dbt_target": str(tmp_path / "dbt-target"),
        }
        started = time.monotonic()  # CLOCK_MONOTONIC: the child's clock too
        outcome = drill.run(RUNNER, settings, **kill)
        lines = _trace_lines(trace)
        settle(lines, clickhouse_server.port)
        score.runs += 1
        score.seconds += outcome.seconds
        return outcome, [{**line, "t": line["t"] - started} for line in lines]

    def check(number: int, label: str) -> None:
        state = at_rest(drilled, truths)
        found = sorted(f"{name} {day}" for (name, day), held in state.items() if held == "PARTIAL")
        score.partial_partitions += len(found)
        partial.extend(f"{label}: {where}" for where in found)
        print(f"run {number} ({label}): " + "; ".join(
            f"{name} " + " ".join(str(state[(name, day)]) for day in DAYS)
            for name in [*TABLES, *MODELS]
        ))  # fmt: skip

    number, timing = 0, None
    for point in POINTS:
        outcome, trace = run(number, kill=point)
        assert outcome.killed, f"the run was never killed {point}: {outcome}"
        if point.target.endswith(":invocation_environ"):  # the requests POINTS counts
            requests = {line["n"]: line["sql"] for line in trace if line["kind"] == "request"}
            for n, sql in LANDING_REQUESTS.items():
                assert requests.get(n, "").startswith(sql.format(db=DRILL_DATABASE)), (n, requests)
        if point.target.endswith(":dbt_finished"):
            timing = trace
        score.kill_points += 1
        score.points.append(str(point))
        check(number, str(point))
        number += 1

    # kills timed into dbt's build, measured on the run that let dbt finish: from its
    # first INSERT to its last REPLACE PARTITION
    moments = [
        line["t"] for line in timing if line.get("moment") in ("insert", "replace_partitions")
    ]
    for share in DBT_SHARES:
        delay = round(moments[0] + share * (moments[-1] - moments[0]), 3)
        outcome, trace = run(number, kill_after=delay)
        assert outcome.killed, f"the run was not killed after {delay}s: {outcome}"
        score.kill_points += 1
        score.points.append(f"after {delay}s (dbt's build) [died at: {last_seen(trace)}]")
        check(number, f"after {delay}s")
        number += 1
    longest = max(line["t"] for line in timing)
    for delay in drill.random_delays(seed=3, count=2, longest=longest):
        outcome, trace = run(number, kill_after=delay)
        if outcome.killed:
            score.random_kills += 1
            score.points.append(f"random after {delay}s [died at: {last_seen(trace)}]")
        else:
            assert outcome.succeeded, outcome.error or log.read_text()[-4000:]
        check(number, f"random after {delay}s")
        number += 1

    # a run that is not killed ends the drill: every day is the final world's, once
    final, _ = run(number)
    assert final.succeeded, final.error or log.read_text()[-4000:]
    seed = SEEDS[number % 2]
    truth, (name, _) = truths[seed], worlds[seed]
    lost, duplicates, unexpected = raw_difference(drilled, DRILL_DATABASE, name)
    _, models, left = stored(drilled, DRILL_DATABASE)
    for key, want in truth["models"].items():
        have = Counter(models.get(key, []))
        lost += sum((Counter(want) - have).values())
        unexpected += [f"{key[0]} {key[1]}: {row}" for row in have - Counter(want)]
    unexpected += [f"{model} {day}" for model, day in models if (model, day) not in truth["models"]]
    for model, (layer, _, _) in MODELS.items():
        duplicates += drilled.scalar(
            f"SELECT count() - uniqExact({KEYS[model]}) FROM `{DRILL_DATABASE}_{layer}`.`{model}`"
        )
    score.rows_lost, score.duplicates = lost, duplicates
    print("kills:", *score.points, sep="\n  ")
    print(f"tables left by killed runs: {left}")
    drill.record(score)
    assert (score.rows_lost, score.duplicates, score.partial_partitions) == (0, 0, 0)
    assert partial == []
    assert unexpected == []
    assert [name for name in left if "__landing_" in name] == []


def raw_difference(clickhouse: ClickHouseResource, database: str, truth: str):
    """(rows lost, rows duplicated, rows the world never had) of the raw tables, as
    multisets of whole rows against the world's own database."""
    lost = duplicates = 0
    unexpected: list[str] = []
    for table in TABLES:
        ((missing, doubled, foreign),) = clickhouse.query(
            "SELECT sumIf(w.c - h.c, w.c > h.c), sumIf(h.c - w.c, h.c > w.c AND w.c > 0),"
            " sumIf(h.c, w.c = 0)"
            f" FROM (SELECT cityHash64(*) AS row, count() AS c FROM `{truth}`.`{table}`"
            " GROUP BY row) AS w"
            " FULL OUTER JOIN (SELECT cityHash64(*) AS row, count() AS c"
            f" FROM `{database}`.`{table}` GROUP BY row) AS h USING (row)"
            " SETTINGS join_use_nulls = 0"
        )
        lost, duplicates = lost + int(missing), duplicates + int(doubled)
        if foreign:
            unexpected.append(f"{table}: {foreign} rows of no day of this world")
    return lost, duplicates, unexpected
