"""The warehouse dbt project on a real PostgreSQL: seed, build and docs over a handcrafted
set of Help Scout payloads, then exact figures from the mailbox marts.

The data (times are Europe/Madrid wall clock; CET until 2024-03-31 02:00, CEST after):

mailbox 101 "Atencio al client"
  1001 closed   Tue 03-12 customer 10:00, note 10:05, lineitem 10:06, draft message 10:20,
                message 10:30, customer 11:00, customer 11:10, message 11:40
  1002 active   Wed 03-13 customer 20:00 -> Thu 03-14 message 09:30         (overnight)
  1003 pending  Fri 03-15 customer 14:00 -> Mon 03-18 message 09:15         (Friday closes 15:00)
  1004 closed   Thu 03-28 customer 17:00 -> Tue 04-02 message 10:00         (Good Friday, weekend,
                                                                           DST, Easter Monday)
  1005 archived Wed 03-20 whatsapp 12:00, customer 12:05, no reply         (unknown status/type)
  1006 closed   Tue 03-19 outbound message 09:00, customer 10:00, no reply
mailbox 202 "Factures"
  2001 closed   Sat 03-16 customer 11:00 -> message 12:00                  (weekend)
  2002 closed   Mon 03-18 customer 08:30 -> message 09:10                  (before opening)
  2003 closed   Sun 10-27 customer 02:30 CEST, customer 02:30 CET ->       (DST fall-back)
                Mon 10-28 message 09:45 CET
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.extras
import pytest

from signalbox.platform.embedded.postgres import EmbeddedPostgres

pytestmark = pytest.mark.integration  # starts engines or processes itself

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project" / "warehouse"
MADRID = ZoneInfo("Europe/Madrid")

RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE raw.helpscout_mailboxes (id bigint PRIMARY KEY, payload jsonb NOT NULL,
  payload_md5 text NOT NULL, first_loaded_at timestamptz NOT NULL,
  loaded_at timestamptz NOT NULL);
CREATE TABLE raw.helpscout_conversations (id bigint PRIMARY KEY, mailbox_id bigint NOT NULL,
  payload jsonb NOT NULL, payload_md5 text NOT NULL, first_loaded_at timestamptz NOT NULL,
  loaded_at timestamptz NOT NULL);
"""


# ----------------------------------------------------------------------------- payloads


def madrid(local: str) -> str:
    """'2024-03-12 10:00' in Madrid -> Help Scout's UTC string '2024-03-12T09:00:00Z'.

    A string already in UTC ('...Z') passes through: the DST fall-back hour is ambiguous
    in local time."""
    if local.endswith("Z"):
        return local
    moment = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=MADRID)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def person(kind: str) -> dict[str, Any]:
    if kind == "user":
        return {"id": 7, "type": "user", "first": "Agent", "last": "Smith", "email": "a@x.test"}
    return {"id": 900, "type": "customer", "first": "Joan", "last": "Soci", "email": "j@x.test"}


def thread(thread_id: int, kind: str, local: str, by: str = "customer", **extra: Any) -> dict:
    return {
        "id": thread_id,
        "type": kind,
        "status": "active",
        "state": extra.pop("state", "published"),
        "body": f"<p>thread {thread_id}</p>",
        "source": {"type": "email", "via": by},
        "createdBy": person(by),
        "createdAt": madrid(local),
        **extra,
    }


def conversation(conversation_id: int, mailbox_id: int, status: str, threads: list[dict]):
    created = min(t["createdAt"] for t in threads)
    return {
        "id": conversation_id,
        "number": conversation_id + 10_000,
        "threads": len(threads),
        "type": "email",
        "folderId": 1,
        "status": status,
        "state": "published",
        "subject": f"Conversation {conversation_id}",
        "mailboxId": mailbox_id,
        "assignee": {"id": 7, "type": "user", "first": "Agent", "last": "Smith"},
        "createdBy": person(threads[-1]["createdBy"]["type"]),
        "createdAt": created,
        "closedAt": None,
        "closedBy": 0,
        "userUpdatedAt": max(t["createdAt"] for t in threads),
        "customerWaitingSince": {"time": created, "friendly": "a while ago"},
        "source": {"type": "email", "via": "customer"},
        "tags": [{"id": 1, "color": "#fff", "tag": "factura"}],
        "primaryCustomer": {"id": 900, "type": "customer", "email": "j@x.test"},
        # the API returns threads newest first
        "_embedded": {"threads": sorted(threads, key=lambda t: t["createdAt"], reverse=True)},
    }


MAILBOXES = [
    {"id": 101, "name": "Atencio al client", "slug": "a1", "email": "info@x.test",
     "createdAt": "2019-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z",
     "_links": {"folders": {"href": "..."}}, "brandNewField": {"nested": [1, 2]}},
    {"id": 202, "name": "Factures", "slug": "b2", "email": "factures@x.test",
     "createdAt": "2019-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z"},
]  # fmt: skip

CONVERSATIONS = [
    conversation(1001, 101, "closed", [
        thread(11, "customer", "2024-03-12 10:00"),
        thread(12, "note", "2024-03-12 10:05", by="user"),
        thread(13, "lineitem", "2024-03-12 10:06", by="user", action={"type": "assigned"}),
        thread(14, "message", "2024-03-12 10:20", by="user", state="draft"),
        thread(15, "message", "2024-03-12 10:30", by="user"),
        thread(16, "customer", "2024-03-12 11:00"),
        thread(17, "customer", "2024-03-12 11:10"),
        thread(18, "message", "2024-03-12 11:40", by="user"),
    ]),
    conversation(1002, 101, "active", [
        thread(21, "customer", "2024-03-13 20:00"),
        thread(22, "message", "2024-03-14 09:30", by="user"),
    ]),
    conversation(1003, 101, "pending", [
        thread(31, "customer", "2024-03-15 14:00"),
        thread(32, "message", "2024-03-18 09:15", by="user"),
    ]),
    conversation(1004, 101, "closed", [
        thread(41, "customer", "2024-03-28 17:00"),
        thread(43, "lineitem", "2024-03-29 08:00", by="user"),
        thread(42, "message", "2024-04-02 10:00", by="user"),
    ]),
    conversation(1005, 101, "archived", [
        thread(51, "whatsapp", "2024-03-20 12:00", futureField=True),
        thread(52, "customer", "2024-03-20 12:05"),
    ]),
    conversation(1006, 101, "closed", [
        thread(61, "message", "2024-03-19 09:00", by="user"),
        thread(62, "customer", "2024-03-19 10:00"),
    ]),
    conversation(2001, 202, "closed", [
        thread(71, "customer", "2024-03-16 11:00"),
        thread(72, "message", "2024-03-16 12:00", by="user"),
    ]),
    conversation(2002, 202, "closed", [
        thread(81, "customer", "2024-03-18 08:30"),
        thread(82, "message", "2024-03-18 09:10", by="user"),
    ]),
    conversation(2003, 202, "closed", [
        thread(91, "customer", "2024-10-27T00:30:00Z"),  # 02:30 CEST
        thread(92, "customer", "2024-10-27T01:30:00Z"),  # 02:30 CET, an hour later
        thread(93, "message", "2024-10-28 09:45", by="user"),
    ]),
]  # fmt: skip
CONVERSATIONS[4]["snooze"] = {"unknown": "field"}  # unknown fields never fail


def load_raw(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(RAW_DDL)
            for mailbox in MAILBOXES:
                cur.execute(
                    "INSERT INTO raw.helpscout_mailboxes VALUES "
                    "(%s, %s::jsonb, md5(%s::jsonb::text), now(), now())",
                    (mailbox["id"], json.dumps(mailbox), json.dumps(mailbox)),
                )
            for conv in CONVERSATIONS:
                cur.execute(
                    "INSERT INTO raw.helpscout_conversations VALUES "
                    "(%s, %s, %s::jsonb, md5(%s::jsonb::text), now(), now())",
                    (conv["id"], conv["mailboxId"], json.dumps(conv), json.dumps(conv)),
                )
    finally:
        conn.close()


# ----------------------------------------------------------------------------- dbt run


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    found = str(beside) if beside.exists() else shutil.which("dbt")
    if not found:
        pytest.skip("dbt is not installed")
    return found


@dataclass
class Built:
    url: str
    target_path: Path
    run_results: dict[str, dict]  # unique_id -> result of `dbt build`
    seconds: dict[str, float]

    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    # as root the server runs as `nobody`, who must be able to enter every parent
    dbt = dbt_executable()
    workdir = Path(tempfile.mkdtemp(prefix="signalbox-dbt-", dir="/tmp"))
    workdir.chmod(0o755)
    server = EmbeddedPostgres(workdir / "postgres")
    try:
        url = server.start()
        load_raw(url)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(urlsplit(url).port),
            "PGUSER": "postgres",
            "PGPASSWORD": server.password(),
            "PGDATABASE": "signalbox",
            # a session time zone that is neither UTC nor Madrid: no figure may depend on it
            "PGTZ": "America/New_York",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        target_path = workdir / "target"
        common = [
            "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT),
            "--target-path", str(target_path),
            "--log-path", str(workdir / "logs"),
        ]  # fmt: skip
        # the mailbox domain only: other domains' sources have no raw tables in this test
        mailbox = [
            "--select",
            "path:seeds/mailbox path:models/staging/helpscout path:models/intermediate/mailbox"
            " path:models/marts/mailbox",
        ]
        seconds: dict[str, float] = {}
        for command in (["seed", *mailbox], ["build", *mailbox], ["docs", "generate"]):
            started = time.monotonic()
            result = subprocess.run(
                [dbt, *command, *common], env=env, capture_output=True, text=True, timeout=300
            )
            seconds[" ".join(command)] = time.monotonic() - started
            assert result.returncode == 0, (
                f"dbt {' '.join(command)} failed:\n{result.stdout[-8000:]}"
            )
            if command[0] == "build":
                results = json.loads((target_path / "run_results.json").read_text())
                run_results = {r["unique_id"]: r for r in results["results"]}
        print("dbt timings (s):", {k: round(v, 1) for k, v in seconds.items()})
        yield Built(url, target_path, run_results, seconds)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def num(value: Any) -> float | None:
    return None if value is None else float(value)


# ----------------------------------------------------------------------------- tests


def test_build_passes_and_unknown_enums_only_warn(built: Built):
    statuses = {uid: r["status"] for uid, r in built.run_results.items()}
    assert not {uid: s for uid, s in statuses.items() if s not in ("success", "pass", "warn")}
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    warned = {
        (
            manifest["nodes"][uid]["test_metadata"]["name"],
            manifest["nodes"][uid]["attached_node"].rsplit(".", 1)[1],
            manifest["nodes"][uid]["column_name"],
            built.run_results[uid]["failures"],
        )
        for uid, status in statuses.items()
        if status == "warn"
    }
    assert warned == {
        ("accepted_values", "stg_helpscout__conversations", "status", 1),  # 'archived'
        ("accepted_values", "stg_helpscout__threads", "thread_type", 1),  # 'whatsapp'
    }
    # every model built, and the singular business-rule tests ran and passed
    assert sum(uid.startswith("model.") for uid in statuses) == 12
    singular = [uid for uid in statuses if uid.startswith("test.") and ".assert_" in uid]
    assert len(singular) == 4 and all(statuses[uid] == "pass" for uid in singular)
    # rows with unknown values are kept
    kept = built.rows(
        "SELECT count(*) AS n FROM staging.stg_helpscout__threads WHERE thread_type = 'whatsapp'"
    )
    assert kept[0]["n"] == 1


def test_first_response_times_calendar_and_business(built: Built):
    rows = built.rows(
        "SELECT conversation_id, mailbox_id, status, is_replied, customer_messages, user_replies,"
        " first_response_minutes, first_response_business_minutes"
        " FROM marts.fct_helpscout__conversations ORDER BY conversation_id"
    )
    got = {
        r["conversation_id"]: (
            r["is_replied"],
            num(r["first_response_minutes"]),
            num(r["first_response_business_minutes"]),
        )
        for r in rows
    }
    assert got == {
        1001: (True, 30.0, 30.0),  # draft at 10:20 and note/lineitem are not replies
        1002: (True, 810.0, 30.0),  # 20:00 -> 09:30 next morning
        1003: (True, 4035.0, 75.0),  # Fri 14:00-15:00 + Mon 09:00-09:15
        1004: (True, 6720.0, 120.0),  # Thu 17-18h + Tue 09-10h CEST; Fri/Mon are holidays
        1005: (False, None, None),
        1006: (False, None, None),  # the outbound message precedes the customer's
        2001: (True, 60.0, 0.0),  # Saturday
        2002: (True, 40.0, 10.0),  # 08:30 -> 09:10, opens 09:00
        2003: (True, 1935.0, 45.0),  # Sun 00:30Z -> Mon 08:45Z; Monday opens 08:00Z (CET)
    }
    by_id = {r["conversation_id"]: r for r in rows}
    assert (by_id[1001]["customer_messages"], by_id[1001]["user_replies"]) == (3, 2)
    assert (by_id[1005]["status"], by_id[1005]["customer_messages"]) == ("archived", 1)


def test_every_answered_customer_message_is_a_response(built: Built):
    rows = built.rows(
        "SELECT customer_thread_id, reply_thread_id, is_first_response, response_minutes,"
        " response_business_minutes, replied_date_local FROM marts.fct_helpscout__responses"
    )
    got = {
        r["customer_thread_id"]: (
            r["reply_thread_id"],
            r["is_first_response"],
            num(r["response_minutes"]),
            num(r["response_business_minutes"]),
        )
        for r in rows
    }
    assert got == {
        11: (15, True, 30.0, 30.0),
        16: (18, False, 40.0, 40.0),
        17: (18, False, 30.0, 30.0),
        21: (22, True, 810.0, 30.0),
        31: (32, True, 4035.0, 75.0),
        41: (42, True, 6720.0, 120.0),
        71: (72, True, 60.0, 0.0),
        81: (82, True, 40.0, 10.0),
        91: (93, True, 1935.0, 45.0),
        92: (93, False, 1875.0, 45.0),
    }
    replied = {r["customer_thread_id"]: str(r["replied_date_local"]) for r in rows}
    assert replied[21] == "2024-03-14" and replied[41] == "2024-04-02"


def test_business_calendar_is_local_and_dst_aware(built: Built):
    rows = built.rows(
        "SELECT calendar_date::text AS day, is_business_day, business_minutes,"
        " lower(business_hours) AT TIME ZONE 'UTC' AS opens_utc,"
        " upper(business_hours) AT TIME ZONE 'UTC' AS closes_utc"
        " FROM intermediate.int_business_calendar"
        " WHERE calendar_date IN ('2024-03-15', '2024-03-29', '2024-03-31', '2024-04-02')"
        " ORDER BY calendar_date"
    )
    got = {
        r["day"]: (
            r["is_business_day"],
            num(r["business_minutes"]),
            r["opens_utc"] and r["opens_utc"].strftime("%H:%M"),
            r["closes_utc"] and r["closes_utc"].strftime("%H:%M"),
        )
        for r in rows
    }
    assert got == {
        "2024-03-15": (True, 360.0, "08:00", "14:00"),  # Friday 09-15 CET
        "2024-03-29": (False, 0.0, None, None),  # Good Friday
        "2024-03-31": (False, 0.0, None, None),  # Sunday (and DST change)
        "2024-04-02": (True, 540.0, "07:00", "16:00"),  # 09-18 CEST
    }
    span = built.rows(
        "SELECT min(calendar_date)::text AS first, max(calendar_date)::text AS last"
        " FROM intermediate.int_business_calendar"
    )[0]
    assert (span["first"], span["last"]) == ("2024-02-10", "2024-11-28")  # data +- 31 days


def test_daily_counts_are_local_and_dense(built: Built):
    rows = built.rows(
        "SELECT mailbox_id, mailbox_name, day::text AS day, emails_received, emails_answered,"
        " conversations_created FROM marts.mailbox_emails_daily ORDER BY mailbox_id, day"
    )
    days_101 = [r for r in rows if r["mailbox_id"] == 101]
    assert (len(days_101), days_101[0]["day"], days_101[-1]["day"]) == (
        22,
        "2024-03-12",
        "2024-04-02",
    )
    active = {
        (r["mailbox_id"], r["day"]): (
            r["emails_received"],
            r["emails_answered"],
            r["conversations_created"],
        )
        for r in rows
        if r["emails_received"] or r["emails_answered"] or r["conversations_created"]
    }
    assert active == {
        (101, "2024-03-12"): (3, 2, 1),
        (101, "2024-03-13"): (1, 0, 1),  # 20:00 local is still the 13th (19:00Z)
        (101, "2024-03-14"): (0, 1, 0),
        (101, "2024-03-15"): (1, 0, 1),
        (101, "2024-03-18"): (0, 1, 0),
        (101, "2024-03-19"): (1, 1, 1),
        (101, "2024-03-20"): (1, 0, 1),  # the whatsapp thread is not an email
        (101, "2024-03-28"): (1, 0, 1),
        (101, "2024-04-02"): (0, 1, 0),
        (202, "2024-03-16"): (1, 1, 1),
        (202, "2024-03-18"): (1, 1, 1),
        (202, "2024-10-27"): (2, 0, 1),
        (202, "2024-10-28"): (0, 1, 0),
    }
    days_202 = [r["day"] for r in rows if r["mailbox_id"] == 202]
    assert (len(days_202), days_202[0], days_202[-1]) == (227, "2024-03-16", "2024-10-28")
    assert {r["mailbox_name"] for r in rows} == {"Atencio al client", "Factures"}


def test_hourly_counts_are_dense_local_and_real_hours(built: Built):
    rows = built.rows(
        "SELECT mailbox_id, hour_start AT TIME ZONE 'UTC' AS hour_utc, day::text AS day,"
        " hour_of_day, day_of_week, emails_received, emails_answered, conversations_created"
        " FROM marts.mailbox_emails_hourly ORDER BY mailbox_id, hour_start"
    )
    per_mailbox = {m: [r for r in rows if r["mailbox_id"] == m] for m in (101, 202)}
    # 2024-03-12 09:00Z .. 2024-04-02 08:00Z and 2024-03-16 10:00Z .. 2024-10-28 08:00Z
    assert len(per_mailbox[101]) == 504
    assert len(per_mailbox[202]) == 5423
    assert per_mailbox[202][0]["hour_utc"] == datetime(2024, 3, 16, 10)
    assert (per_mailbox[202][0]["hour_of_day"], per_mailbox[202][0]["day_of_week"]) == (11, 6)
    assert sum(r["emails_received"] for r in per_mailbox[202]) == 4
    spring_forward = [r for r in per_mailbox[101] if r["day"] == "2024-03-31"]
    assert len(spring_forward) == 23 and 2 not in {r["hour_of_day"] for r in spring_forward}
    fall_back = [r for r in per_mailbox[202] if r["day"] == "2024-10-27"]
    assert len(fall_back) == 25
    assert [
        (r["hour_utc"].hour, r["emails_received"]) for r in fall_back if r["hour_of_day"] == 2
    ] == [
        (0, 1),
        (1, 1),
    ]
    busy = {
        (r["day"], r["hour_of_day"]): (
            r["emails_received"],
            r["emails_answered"],
            r["conversations_created"],
        )
        for r in per_mailbox[101]
        if r["emails_received"] or r["emails_answered"] or r["conversations_created"]
    }
    assert busy == {
        ("2024-03-12", 10): (1, 1, 1),
        ("2024-03-12", 11): (2, 1, 0),
        ("2024-03-13", 20): (1, 0, 1),
        ("2024-03-14", 9): (0, 1, 0),
        ("2024-03-15", 14): (1, 0, 1),
        ("2024-03-18", 9): (0, 1, 0),
        ("2024-03-19", 9): (0, 1, 1),
        ("2024-03-19", 10): (1, 0, 0),
        ("2024-03-20", 12): (1, 0, 1),
        ("2024-03-28", 17): (1, 0, 1),
        ("2024-04-02", 10): (0, 1, 0),
    }


def test_response_times_daily(built: Built):
    rows = built.rows(
        "SELECT mailbox_id, day::text AS day, replies, responses, first_responses,"
        " avg_first_response_minutes, median_first_response_minutes,"
        " avg_first_response_business_minutes, median_first_response_business_minutes,"
        " avg_response_minutes, avg_response_business_minutes"
        " FROM marts.mailbox_response_times_daily ORDER BY mailbox_id, day"
    )
    got = {
        (r["mailbox_id"], r["day"]): (
            r["replies"],
            r["responses"],
            r["first_responses"],
            r["avg_first_response_minutes"],
            r["median_first_response_minutes"],
            r["avg_first_response_business_minutes"],
            r["median_first_response_business_minutes"],
            r["avg_response_minutes"],
            r["avg_response_business_minutes"],
        )
        for r in rows
    }
    d = Decimal
    assert got == {
        (101, "2024-03-12"): (2, 3, 1, d(30), d(30), d(30), d(30), d("33.33"), d("33.33")),
        (101, "2024-03-14"): (1, 1, 1, d(810), d(810), d(30), d(30), d(810), d(30)),
        (101, "2024-03-18"): (1, 1, 1, d(4035), d(4035), d(75), d(75), d(4035), d(75)),
        (101, "2024-04-02"): (1, 1, 1, d(6720), d(6720), d(120), d(120), d(6720), d(120)),
        (202, "2024-03-16"): (1, 1, 1, d(60), d(60), d(0), d(0), d(60), d(0)),
        (202, "2024-03-18"): (1, 1, 1, d(40), d(40), d(10), d(10), d(40), d(10)),
        # both customer messages answered by one reply: (1935 + 1875) / 2
        (202, "2024-10-28"): (1, 2, 1, d(1935), d(1935), d(45), d(45), d(1905), d(45)),
    }


# an event between April and October for mailbox 202: complete windows without any arrival
QUIET_WINDOWS = (7, 0, 0.0, 7, 0, 0.0, None, True)


def test_event_impact_windows(built: Built):
    rows = built.rows(
        "SELECT mailbox_id, event_date::text AS event_date, event_kind, window_days,"
        " days_observed_before, days_observed_after, is_window_complete, arrivals_before,"
        " arrivals_after, avg_daily_arrivals_before, avg_daily_arrivals_after, uplift_ratio"
        " FROM marts.mailbox_event_impact ORDER BY mailbox_id, event_date"
    )
    got = {
        (r["mailbox_id"], r["event_date"], r["event_kind"]): (
            r["days_observed_before"],
            r["arrivals_before"],
            num(r["avg_daily_arrivals_before"]),
            r["days_observed_after"],
            r["arrivals_after"],
            num(r["avg_daily_arrivals_after"]),
            num(r["uplift_ratio"]),
            r["is_window_complete"],
        )
        for r in rows
    }
    assert got == {
        # before 03-07..03-13 (data from 03-12): 3 + 1; after 03-14..03-20: 03-15, 03-19, 03-20
        (101, "2024-03-14", "campaign"): (2, 4, 2.0, 7, 3, 0.4286, 0.2143, False),
        # before 03-12..03-18: 3 + 1 + 1; after 03-19..03-25: 1 + 1
        (101, "2024-03-19", "newsletter"): (7, 5, 0.7143, 7, 2, 0.2857, 0.4, True),
        (101, "2024-04-02", "market"): (7, 1, 0.1429, 1, 0, 0.0, 0.0, False),
        (101, "2024-04-04", "invoice"): (6, 1, 0.1667, 0, 0, None, None, False),
        # mailbox 202 has data from 03-16 to 10-28
        (202, "2024-03-14", "campaign"): (0, 0, None, 5, 2, 0.4, None, False),
        (202, "2024-03-19", "newsletter"): (3, 2, 0.6667, 7, 0, 0.0, 0.0, False),
        (202, "2024-11-04", "invoice"): (1, 0, 0.0, 0, 0, None, None, False),
    } | {key: QUIET_WINDOWS for key in got if key[0] == 202 and "04" <= key[1][5:7] <= "10"}
    # events from 2024-03-10 to 2024-11-04 have a window touching 202's data: 19 of them
    assert sum(key[0] == 202 for key in got) == 19
    assert {r["window_days"] for r in rows} == {7}


def test_docs_catalog_and_lineage_metadata(built: Built):
    catalog = json.loads((built.target_path / "catalog.json").read_text())
    documented = {node["metadata"]["name"] for node in catalog["nodes"].values()}
    assert {"fct_helpscout__conversations", "mailbox_emails_hourly", "market_events"} <= documented
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    keys = {
        source["name"]: source["config"]["meta"]["dagster"]["asset_key"]
        for source in manifest["sources"].values()
        if source["source_name"] == "helpscout"
    }
    assert keys == {
        "mailboxes": ["raw", "helpscout_mailboxes"],
        "conversations": ["raw", "helpscout_conversations"],
    }
    undocumented = [
        f"{node['name']}.{column}"
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
        for column, spec in node["columns"].items()
        if not spec.get("description")
    ]
    assert undocumented == []
    # every model column in the database is described in YAML
    for node in catalog["nodes"].values():
        if node["unique_id"].startswith("model."):
            described = manifest["nodes"][node["unique_id"]]["columns"]
            assert set(node["columns"]) <= set(described), node["unique_id"]
