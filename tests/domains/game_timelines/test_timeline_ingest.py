"""The pure parts of a day's ingest (validation, the table, the stored-day decision, the
messages) and the COPY of awkward text into PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from signalbox.domains.game_timelines.ingest import (
    COLUMNS,
    TIMELINE_SCHEMA,
    DayRows,
    InvalidTimelineRows,
    StoredDay,
    code_counts,
    copy_table,
    decide_stored,
    row_problem,
)
from signalbox.domains.game_timelines.neople import Character, TimelinePage
from signalbox.domains.game_timelines.notify import DayOutcome, compose

DAY = date(2026, 11, 16)
CAIN = Character("cain", "a" * 32, "검은달빛")
SIROCO = Character("siroco", "b" * 32)


def row(code=505, at="2026-11-16 21:14", **data):
    return {"code": code, "name": "아이템 획득(던전 드랍)", "date": at, "data": data or {"k": 1}}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (row(), None),
        (row(code=999), None),  # unknown codes are fine
        ({"code": 505, "date": "2026-11-16 00:00"}, None),  # no name, no data
        ({"name": "x", "date": "2026-11-16 10:00"}, "missing 'code'"),
        ({"code": 505, "name": "x"}, "missing 'date'"),
        ({"name": "x"}, "missing 'code' and 'date'"),
        ({"code": None, "date": "2026-11-16 10:00"}, "missing 'code'"),
        (row(code="505"), "'code' is not an integer: '505'"),
        (row(code=True), "'code' is not an integer: True"),
        (row(at="2026-11-16T10:00"), "'date' is not 'YYYY-MM-DD HH:MM'"),
        (row(at="2026-11-16 24:00"), "'date' is not a real minute"),
        (row(at="2026-11-17 00:00"), "outside the KST day 2026-11-16"),
        ({**row(), "name": 5}, "'name' is not text: 5"),
        ([1, 2], "is not a JSON object but list"),
    ],
)
def test_row_problems_name_the_field(value, problem):
    found = row_problem(value, DAY)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def page(number, rows, name=None):
    return TimelinePage(number, rows, {"characterName": name} if name else {}, None)


def test_day_rows_keep_everything_verbatim_in_a_stable_schema():
    rows = DayRows(DAY)
    rows.add_page(CAIN, page(1, [row(), {**row(code=530), "seasonName": "S7"}], "검은달빛"))
    rows.add_page(CAIN, page(2, [{"code": 210, "date": "2026-11-16 20:00", "data": None}]))
    rows.add_page(SIROCO, page(1, [{"code": 201, "date": "2026-11-16 19:00"}], "붉은여우"))
    table = rows.table()
    assert table.schema.equals(TIMELINE_SCHEMA) and table.column_names == COLUMNS
    got = table.to_pylist()
    assert [(r["character_id"][0], r["seq"], r["code"]) for r in got] == [
        ("a", 0, 505), ("a", 1, 530), ("a", 2, 210), ("b", 0, 201)
    ]  # fmt: skip
    assert got[0]["data"] == '{"k":1}' and got[0]["extra"] is None
    assert got[1]["extra"] == '{"seasonName":"S7"}'  # unexpected keys kept
    assert got[2]["data"] == "null" and got[3]["data"] is None  # null kept apart from absent
    assert {r["character_name"] for r in got} == {"검은달빛", "붉은여우"}
    assert all(r["day"] == DAY for r in got)
    assert (rows.pages, rows.rows) == (3, 4)
    assert code_counts(table)[0] == {"code": 201, "name": None, "rows": 1}


def test_bad_rows_fail_the_day_naming_character_page_and_row():
    rows = DayRows(DAY)
    bad = [{"name": "x", "date": "2026-11-16 10:00"}] * 12
    rows.add_page(CAIN, page(3, [row(), *bad]))
    with pytest.raises(InvalidTimelineRows) as caught:
        rows.table()
    text = str(caught.value)
    assert text.startswith("neople: 12 invalid timeline row(s) on KST day 2026-11-16")
    assert f"cain:{'a' * 32} (검은달빛) page 3 row 2: missing 'code'" in text
    assert "page 3 row 11" in text and "page 3 row 12" not in text and "and 2 more" in text
    assert '{"name":"x","date":"2026-11-16 10:00"}' in text
    assert len(caught.value.problems) == 12


def stored(**changes) -> StoredDay:
    fields = dict(
        day=DAY, row_count=10, object_key="k", object_url="s3://b/k", object_size=100,
        object_etag="e1", source_fingerprint="f", details={},
        loaded_at=datetime(2026, 11, 17, tzinfo=UTC),
    )  # fmt: skip
    return StoredDay(**{**fields, **changes})


class Obj:
    def __init__(self, size=100, etag="e1"):
        self.size, self.etag = size, etag


def test_a_day_is_stored_only_when_both_stores_hold_what_was_loaded():
    assert decide_stored(stored(), "f", 10, Obj()).complete
    cases = {
        "not stored yet": decide_stored(None, "f", 0, None),
        "different character list": decide_stored(stored(), "g", 10, Obj()),
        "Postgres holds 9 rows, 10 were loaded": decide_stored(stored(), "f", 9, Obj()),
        "s3://b/k is missing": decide_stored(stored(), "f", 10, None),
        "was replaced since the load": decide_stored(stored(), "f", 10, Obj(etag="e2")),
    }
    for reason, state in cases.items():
        assert not state.complete and reason in state.reason
    # only Postgres is short: the intact file can refill it without the API
    assert [reason for reason, state in cases.items() if state.restorable] == [
        "Postgres holds 9 rows, 10 were loaded"
    ]
    assert not decide_stored(stored(), "f", 9, None).restorable


def test_copy_keeps_awkward_text_exact(warehouse):
    texts = ['quote " and ""', "comma, and\nnew line\r\n", "back\\slash \\N", "tab\there",
             "", "한글 ✅ 𝄞", None]  # fmt: skip
    table = pa.table({"id": pa.array(range(len(texts)), pa.int32()), "t": pa.array(texts)})
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE awkward (id integer, t text)")
        copy_table(cur, "awkward", table)
    stored_rows = warehouse.query("SELECT id, t FROM awkward ORDER BY id")
    assert [t for _, t in stored_rows] == texts  # '' stays '', None stays NULL


def test_messages_carry_counts_keys_and_errors():
    url = "s3://signalbox/neople_timeline/date=2026-11-16/part-0.parquet"
    loaded = DayOutcome(DAY, "loaded", 1234, 7, 8, 12, url, 45678, 0)
    single = compose([loaded])
    assert (
        single.subject == "signalbox: Neople timelines 2026-11-16 (KST): loaded 1,234 rows (1 day)"
    )
    assert url in single.text and "1,234 rows, 7/8 characters" in single.text
    assert f"<code>{url}</code>" in single.chat and "<br>" not in single.chat
    skipped = DayOutcome(date(2026, 11, 15), "skipped", 99, 3, 8, None, "s3://x", 10)
    ranged = compose([skipped, loaded])
    assert (
        "2026-11-15..2026-11-16" in ranged.subject and "1 day(s) were already stored" in ranged.text
    )
    failed = compose(
        [loaded, DayOutcome(date(2026, 11, 17), "failed", error="DNF980 <boom> " * 200)]
    )
    assert "FAILED on 2026-11-17" in failed.subject
    # a reload from the parquet file is not announced as loaded from the API
    restored = DayOutcome(date(2026, 11, 14), "restored", 50, 2, 8, None, "s3://y", 10)
    assert compose([restored]).subject.endswith(
        "2026-11-14 (KST): reloaded 50 rows from the object store (1 day)"
    )
    assert compose([restored, loaded]).subject.endswith(
        "loaded 1,234 rows (1 day), reloaded 50 rows from the object store (1 day)"
    )
    # every day never tried is named, in the subject too
    untried = [DayOutcome(date(2026, 11, d), "not tried") for d in (18, 19, 20, 22)]
    stopped = compose([loaded, DayOutcome(date(2026, 11, 17), "failed", error="x"), *untried])
    assert stopped.subject.endswith(
        "FAILED on 2026-11-17, not tried 2026-11-18..2026-11-20, 2026-11-22"
    )
    assert "Not tried: 2026-11-18..2026-11-20, 2026-11-22; re-run the range." in stopped.text
    assert "2026-11-22</b> not tried" in stopped.chat
    assert "DNF980 &lt;boom&gt;" in failed.chat and len(failed.chat) < 2500  # cut for the chat
    assert failed.text.count("DNF980 <boom>") == 200  # the e-mail has it all
    assert "previous data (if any) is intact" in failed.text
