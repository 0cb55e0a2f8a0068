"""The raw Neople timelines asset through Dagster, on the simulator, moto's S3, the embedded
PostgreSQL, the SMTP sink and the Telegram simulator: backfills, idempotent re-runs,
skip-if-stored, every fault, and the notifications."""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import date

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from game_timelines_support import DAYS, MAIL_TO, announce, expected_rows, materialize

from signalbox.domains.game_timelines.ingest import DATASET, RAW_TABLE
from signalbox.domains.game_timelines.raw import RAW_TIMELINE_EVENTS
from signalbox.simulators.neople import DEFAULT_API_KEY
from signalbox.simulators.neople_world import UNEXPECTED_DATA_KEY, UNKNOWN_CODES


def timeline_requests(sim) -> int:
    return sum(1 for r in sim.requests if r.path.endswith("/timeline"))


def day_rows(warehouse, day: date) -> list[tuple]:
    """The day's rows without the load time: what must be equal across re-runs."""
    return warehouse.query(
        f"SELECT server_id, character_id, character_name, seq, code, name, date, data::text,"
        f" extra::text FROM {RAW_TABLE} WHERE day = %s ORDER BY character_id, seq",
        (day,),
    )


def parquet_table(store, day: date) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get_bytes(store.partition_key(DATASET, day))))


def step_error(result: dg.ExecuteInJobResult) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    return f"{error.cls_name}: {error.message}" + "".join(
        f"\n  caused by {c.cls_name}: {c.message}" for c in _causes(error)
    )


def _causes(error):
    while error.cause is not None:
        error = error.cause
        yield error


def metadata(result: dg.ExecuteInJobResult, day: date) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.partition == day.isoformat()
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


# --------------------------------------------------------------------------- backfill


def test_three_day_backfill_rerun_skip_and_refetch(
    resources, neople_sim, warehouse, store, sink, chat, world
):
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        result = materialize(resources, day, instance=instance)
        assert result.success, step_error(result)
        expected = expected_rows(world, day)
        total = sum(len(rows) for rows in expected.values())
        assert total > 50
        # Postgres holds exactly the API's rows, in the API's order per character
        stored = day_rows(warehouse, day)
        assert len(stored) == total
        by_character = Counter(row[1] for row in stored)
        assert by_character == Counter({c: len(r) for c, r in expected.items() if r})
        first = next(c for c, rows in expected.items() if rows)
        mine = [row for row in stored if row[1] == first]
        assert [(r[4], r[6]) for r in mine] == [(e["code"], e["date"]) for e in expected[first]]
        # one parquet file per day, same rows
        table = parquet_table(store, day)
        assert table.num_rows == total
        assert table.column_names == [
            "day", "server_id", "character_id", "character_name", "seq", "code", "name",
            "date", "data", "extra",
        ]  # fmt: skip
        meta = metadata(result, day)
        assert meta["dagster/row_count"] == total
        assert meta["status"] == "loaded"
        assert meta["object_url"] == store.url(f"neople_timeline/date={day}/part-0.parquet")
        assert meta["characters_configured"] == len(world.specs)
        assert meta["pages"] >= len(world.specs)
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "neople_timeline_parquet_matches_postgres": True,
            "neople_timeline_rows_for_active_characters": True,
            "neople_timeline_codes_known": True,
        }

    # notifications: one e-mail and one chat message per day, with counts and the key
    mails = sink.wait_for(3)
    assert len(mails) == 3 and all(m.to == [MAIL_TO] for m in mails)
    for mail, message, day in zip(mails, chat.messages, DAYS, strict=True):
        rows = sum(len(r) for r in expected_rows(world, day).values())
        url = store.url(f"neople_timeline/date={day}/part-0.parquet")
        assert f"{day}" in mail.subject and f"loaded {rows:,} rows" in mail.subject
        assert url in mail.text and f"{rows:,} rows" in mail.text
        assert url in message.plain and f"{rows:,} rows" in message.plain

    # re-running a day without refetch skips it: no request, no notification
    neople_sim.reset_log()
    sink.reset()
    chat.clear()
    before_rows = day_rows(warehouse, DAYS[1])
    before_parquet = parquet_table(store, DAYS[1])
    before_etag = store.head(store.partition_key(DATASET, DAYS[1])).etag
    result = materialize(resources, DAYS[1], instance=instance)
    assert result.success, step_error(result)
    assert timeline_requests(neople_sim) == 0
    assert metadata(result, DAYS[1])["status"] == "skipped: already stored"
    assert metadata(result, DAYS[1])["dagster/row_count"] == len(before_rows)
    assert sink.messages == [] and chat.messages == []

    # refetch replaces the day with the same rows and the same parquet contents
    result = materialize(resources, DAYS[1], refetch=True, instance=instance)
    assert result.success, step_error(result)
    assert timeline_requests(neople_sim) >= len(world.specs)
    meta = metadata(result, DAYS[1])
    assert meta["replaced_rows"] == len(before_rows) == meta["dagster/row_count"]
    assert day_rows(warehouse, DAYS[1]) == before_rows
    assert parquet_table(store, DAYS[1]).equals(before_parquet)
    assert store.head(store.partition_key(DATASET, DAYS[1])).etag == before_etag  # same bytes
    assert warehouse.scalar(f"SELECT count(*) FROM {RAW_TABLE}") == sum(
        len(day_rows(warehouse, d)) for d in DAYS
    )
    assert len(sink.wait_for(1)) == 1

    # a day Postgres lost while its file is intact is reloaded from the file, not the API
    neople_sim.reset_log()
    warehouse.query(f"DELETE FROM {RAW_TABLE} WHERE day = %s AND seq < 3 RETURNING 1", (DAYS[2],))
    before = len(day_rows(warehouse, DAYS[2]))
    result = materialize(resources, DAYS[2], instance=instance)
    assert result.success, step_error(result)
    meta = metadata(result, DAYS[2])
    assert meta["status"].startswith("restored from the object store")
    assert meta["replaced_rows"] == before < meta["dagster/row_count"]
    assert len(day_rows(warehouse, DAYS[2])) == meta["dagster/row_count"]
    assert timeline_requests(neople_sim) == 0

    # a day whose file went missing is not "stored": it is fetched again
    store.delete(store.partition_key(DATASET, DAYS[0]))
    neople_sim.reset_log()
    result = materialize(resources, DAYS[0], instance=instance)
    assert result.success and metadata(result, DAYS[0])["status"] == "loaded"
    assert timeline_requests(neople_sim) >= len(world.specs)


def test_ranged_backfill_is_one_run_with_per_day_metadata(
    resources, warehouse, store, sink, chat, world
):
    result = materialize(resources, days=(date(2026, 11, 10), date(2026, 11, 12)))
    assert result.success, step_error(result)
    events = result.get_asset_materialization_events()
    assert sorted(e.materialization.partition for e in events) == [
        "2026-11-10", "2026-11-11", "2026-11-12"
    ]  # fmt: skip
    for event in events:
        day = date.fromisoformat(event.materialization.partition)
        rows = sum(len(r) for r in expected_rows(world, day).values())
        assert event.materialization.metadata["dagster/row_count"].value == rows
        assert len(day_rows(warehouse, day)) == rows
    # one summary notification for the run, naming every day and key
    (mail,) = sink.wait_for(1)
    assert "2026-11-10..2026-11-12" in mail.subject
    for day in ("2026-11-10", "2026-11-11", "2026-11-12"):
        assert store.url(f"neople_timeline/date={day}/part-0.parquet") in mail.text
    assert len(chat.messages) == 1
    assert {c.check_name for c in result.get_asset_check_evaluations() if c.passed} == {
        "neople_timeline_parquet_matches_postgres",
        "neople_timeline_rows_for_active_characters",
        "neople_timeline_codes_known",
    }


def test_characters_configured_by_name(make_resources, warehouse, world):
    specs = world.specs[:2]
    names = ",".join(f"{s.server_id}:{s.character_name}" for s in specs)
    result = materialize(make_resources(characters=names), DAYS[0])
    assert result.success, step_error(result)
    stored = {row[0] for row in warehouse.query(f"SELECT DISTINCT character_id FROM {RAW_TABLE}")}
    expected = {c for c, rows in expected_rows(world, DAYS[0]).items() if rows}
    assert stored == expected & {s.character_id for s in specs}

    result = materialize(make_resources(characters="cain:없는캐릭터"), DAYS[0], notify=False)
    assert not result.success
    assert "no character named '없는캐릭터' on server 'cain'" in step_error(result)


# --------------------------------------------------------------------------- faults


def test_unknown_codes_and_keys_are_kept_verbatim(resources, neople_sim, warehouse, world):
    neople_sim.faults.unknown_codes = True
    result = materialize(resources, DAYS[2])
    assert result.success, step_error(result)
    expected = expected_rows(world, DAYS[2], unknown_codes=True)
    assert len(day_rows(warehouse, DAYS[2])) == sum(len(r) for r in expected.values())
    unknown = {code for code, _ in UNKNOWN_CODES}
    stored_codes = Counter(
        row[0]
        for row in warehouse.query(
            f"SELECT code FROM {RAW_TABLE} WHERE code = ANY(%s)", (list(unknown),)
        )
    )
    wanted = Counter(r["code"] for rows in expected.values() for r in rows if r["code"] in unknown)
    assert stored_codes == wanted and sum(wanted.values()) > 0
    extra_keys = warehouse.scalar(
        f"SELECT count(*) FROM {RAW_TABLE} WHERE data ? %s", (UNEXPECTED_DATA_KEY,)
    )
    assert extra_keys == sum(
        1
        for rows in expected.values()
        for r in rows
        if UNEXPECTED_DATA_KEY in (r.get("data") or {})
    )
    assert extra_keys > 0
    codes = metadata(result, DAYS[2])["rows_by_code"]
    assert "530" in codes or "950" in codes
    # the codes check warns, listing each unknown code by value with its name and rows
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "neople_timeline_codes_known"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    check_meta = {k: v.value for k, v in check.metadata.items()}
    assert check_meta["unknown_codes"] == ", ".join(str(c) for c, _ in wanted.most_common())
    assert check_meta["unknown_code_rows"] == sum(wanted.values())
    for code, name in UNKNOWN_CODES:
        if wanted[code]:
            assert f"| {code} | {name} |" in re.sub(" +", " ", check_meta["by_code"])


def test_legion_clears_are_a_known_code():
    from signalbox.domains.game_timelines.checks import known_codes

    codes = known_codes()
    assert codes[209] == "레기온 클리어" and codes[201] == "레이드"


def test_missing_fields_fail_the_day_and_keep_its_previous_version(
    resources, neople_sim, warehouse, store, sink, chat
):
    day = DAYS[0]
    assert materialize(resources, day).success
    before = day_rows(warehouse, day)
    key = store.partition_key(DATASET, day)
    etag = store.head(key).etag
    sink.reset()
    chat.clear()

    neople_sim.faults.missing_fields = True
    result = materialize(resources, day, refetch=True)
    assert not result.success
    error = step_error(result)
    assert "InvalidTimelineRows" in error
    assert f"KST day {day}" in error and "the day was not stored" in error
    assert "page 1 row" in error and ("missing 'date'" in error or "missing 'code'" in error)
    assert "cain:" in error or "siroco:" in error or "prey:" in error  # names the character
    # nothing replaced: same rows, same object
    assert day_rows(warehouse, day) == before
    assert store.head(key).etag == etag
    # the failure was announced, with the error
    (mail,) = sink.wait_for(1)
    assert "FAILED" in mail.subject and "invalid timeline row" in mail.text
    assert "previous data (if any) is intact" in mail.text
    assert "FAILED" in chat.messages[0].plain


def test_truncated_pages_are_retried_then_fail_clearly(resources, neople_sim, warehouse, store):
    day = DAYS[1]
    neople_sim.faults.truncate_next = 2
    result = materialize(resources, day)
    assert result.success, step_error(result)
    assert metadata(result, day)["http_retries"] >= 2
    before = day_rows(warehouse, day)

    neople_sim.faults.truncate_next = 1000
    result = materialize(resources, day, refetch=True, notify=False)
    assert not result.success
    error = step_error(result)
    assert "NeopleTimelineError" in error and f"KST day {day}" in error
    assert "malformed JSON" in error and "after 3 attempts" in error
    assert DEFAULT_API_KEY not in error
    assert day_rows(warehouse, day) == before


def test_rate_limit_429_is_honoured(resources, neople_sim, warehouse, world):
    neople_sim.faults.fail_next = [429]  # API002 with Retry-After: 1
    result = materialize(resources, DAYS[0], notify=False)
    assert result.success, step_error(result)
    meta = metadata(result, DAYS[0])
    assert meta["http_429"] == 1
    assert meta["dagster/row_count"] == sum(len(r) for r in expected_rows(world, DAYS[0]).values())
    answered = [r.status for r in neople_sim.requests]
    assert answered[0] == 429 and answered[1] == 200


def test_maintenance_is_retried_then_fails_clearly(resources, neople_sim, warehouse, sink):
    neople_sim.faults.fail_next = [503, 503]  # DNF980 twice, then the API is back
    result = materialize(resources, DAYS[0], notify=False)
    assert result.success, step_error(result)
    assert metadata(result, DAYS[0])["http_retries"] == 2
    before = day_rows(warehouse, DAYS[0])

    neople_sim.faults.maintenance = True
    sink.reset()
    result = materialize(resources, DAYS[0], refetch=True)
    assert not result.success
    error = step_error(result)
    assert "DNF980 SYSTEM_INSPECT" in error and "maintenance" in error
    assert "HTTP 503 after 3 attempts" in error
    assert day_rows(warehouse, DAYS[0]) == before
    (mail,) = sink.wait_for(1)
    assert "DNF980" in mail.text


def test_timeouts_are_retried_then_fail_clearly(make_resources, neople_sim):
    neople_sim.faults.slow_seconds = 0.6
    result = materialize(make_resources(read_timeout_seconds=0.2, max_attempts=2), DAYS[0])
    assert not result.success
    error = step_error(result)
    assert "ApiTimeoutError" in error or "ReadTimeout" in error
    assert f"KST day {DAYS[0]}" in error and "after 2 attempts" in error


def test_bad_api_key_is_fatal_at_once_and_never_shown(make_resources, neople_sim):
    result = materialize(make_resources(api_key="not-the-right-key"), DAYS[0], notify=False)
    assert not result.success
    error = step_error(result)
    assert "API003 INVALID_APIKEY" in error and "check NEOPLE_API_KEY" in error
    assert "not-the-right-key" not in error
    assert timeline_requests(neople_sim) == 1  # a 401 is not retried


# --------------------------------------------------------------------------- notifications


def test_a_failed_notification_does_not_fail_the_load(resources, warehouse, sink, chat, world):
    sink.fail_permanently()
    chat.faults.fail_next = [400]
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(resources, DAYS[0], notify=False, instance=instance)
    assert result.success, step_error(result)
    notes = announce(result, instance, resources)
    assert "email: failed" in notes and "telegram: failed" in notes
    assert len(day_rows(warehouse, DAYS[0])) == sum(
        len(r) for r in expected_rows(world, DAYS[0]).values()
    )


def test_a_failed_notification_does_not_hide_the_error(resources, neople_sim, sink, chat):
    neople_sim.faults.maintenance = True
    sink.fail_permanently()
    chat.faults.fail_next = [500]
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(resources, DAYS[0], notify=False, instance=instance)
    assert not result.success
    assert "DNF980" in step_error(result)
    notes = announce(result, instance, resources)
    assert "email: failed" in notes and "telegram: failed" in notes


def test_a_range_that_fails_keeps_and_records_the_days_before(
    resources, neople_sim, warehouse, world, sink
):
    # the third day's pages come back without dates: days one and two are stored
    neople_sim.faults.missing_fields = False
    instance = dg.DagsterInstance.ephemeral()
    first, failing, last = date(2026, 11, 2), date(2026, 11, 4), date(2026, 11, 5)
    original = neople_sim.dispatch

    def dispatch(request):
        if "2026-11-04" in (request.arg("startDate") or ""):
            neople_sim.faults.missing_fields = True
        return original(request)

    neople_sim.dispatch = dispatch
    sink.reset()
    result = materialize(resources, days=(first, last), instance=instance)
    assert not result.success
    assert "KST day 2026-11-04" in step_error(result)
    # the days stored before the failure are recorded as materialized, the failed one not
    assert instance.get_materialized_partitions(RAW_TIMELINE_EVENTS) == {
        "2026-11-02",
        "2026-11-03",
    }
    for day in (date(2026, 11, 2), date(2026, 11, 3)):
        expected = sum(len(r) for r in expected_rows(world, day).values())
        assert len(day_rows(warehouse, day)) == expected
    assert day_rows(warehouse, failing) == []
    # the notice names the stored days, the failed one and the one never tried
    (mail,) = sink.wait_for(1)
    assert "FAILED on 2026-11-04" in mail.subject
    assert "2026-11-02" in mail.text and "2026-11-03" in mail.text
    assert "2026-11-05  not tried" in mail.text and "Not tried: 2026-11-05;" in mail.text
    assert mail.subject.endswith("FAILED on 2026-11-04, not tried 2026-11-05")
