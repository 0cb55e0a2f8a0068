"""Silent sources: every raw asset declares a FreshnessPolicy; the freshness alert sensor
judges it on the data's time and posts one "No data" and, later, one "Data again" to the
Telegram simulator (pure decisions, a Dagster instance, and user actions that stop
arriving in chDB, landed by the real asset)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from chat_support import CHAT_TOKEN

from signalbox.platform.telegram import TelegramResource
from signalbox.sensors.freshness_alerts import (
    FRESH,
    LAST_UPDATED,
    STALE,
    UNKNOWN,
    Expectation,
    Notice,
    Reading,
    SilenceState,
    build_freshness_alert_sensor,
    decide,
    duration,
    freshness_expectations,
    judge,
    render_notice,
    send_freshness_alerts,
)
from signalbox.sensors.iqr_alerts import AlertSettings
from signalbox.simulators.server import Faults
from signalbox.simulators.telegram import TelegramSimulator

FEED = dg.AssetKey(["raw", "activity_feed_actions"])
TIMELINES = dg.AssetKey(["raw", "neople_timeline_events"])
HALF_HOUR = Expectation(FEED, dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)))
KST_3AM = Expectation(
    TIMELINES,
    dg.FreshnessPolicy.cron(
        deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=3), timezone="Asia/Seoul"
    ),
)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 15:00 in Moscow, 21:00 in Seoul
SETTINGS = AlertSettings(timezone="Europe/Moscow", dashboard_url="https://dash.example/{asset}")


# --------------------------------------------------------------------------- pure parts


def test_every_domains_raw_assets_declare_a_freshness_policy():
    raw_modules = [
        f"signalbox.domains.{domain}.raw"
        for domain in ("user_activity", "mailbox", "game_timelines", "complaints")
    ]
    assets = dg.load_assets_from_modules([importlib.import_module(m) for m in raw_modules])
    keys = {spec.key for item in assets for spec in item.specs}
    raw = {key for key in keys if key.path[0] == "raw"}
    assert len(raw) == 6
    assert {e.asset_key for e in freshness_expectations(assets)} == raw


def test_a_time_window_counts_back_from_now():
    fresh = judge(HALF_HOUR, NOW - timedelta(minutes=29), NOW)
    assert fresh.state == FRESH and fresh.due_after == NOW - timedelta(minutes=30)
    assert judge(HALF_HOUR, NOW - timedelta(minutes=30), NOW).state == FRESH
    assert judge(HALF_HOUR, NOW - timedelta(minutes=31), NOW).state == STALE
    assert judge(HALF_HOUR, None, NOW).state == UNKNOWN  # never landed is not silence
    assert fresh.expected == "new data at least every 30 min"


def test_a_cron_deadline_looks_at_the_window_before_its_latest_tick():
    # the window for today is 00:00-03:00 KST = 15:00-18:00 UTC yesterday
    opens = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert judge(KST_3AM, opens + timedelta(minutes=30), NOW).state == FRESH
    late = judge(KST_3AM, opens - timedelta(minutes=1), NOW)
    assert late.state == STALE and late.due_after == opens
    assert "00:00 and 03:00 Asia/Seoul" in late.expected
    # before today's 03:00 KST, yesterday's window is the one judged
    early = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 02:00 KST
    assert judge(KST_3AM, opens - timedelta(hours=2), early).state == FRESH


def reading(state: str, minutes_ago: float | None) -> Reading:
    update = None if minutes_ago is None else NOW - timedelta(minutes=minutes_ago)
    return Reading(FEED, state, update, NOW - timedelta(minutes=30), "new data every 30 min")


def test_silence_is_announced_once_and_its_end_once():
    (notice,) = decide(SilenceState(), [reading(STALE, 95)])
    assert notice.kind == "silent" and notice.readings[0].asset_key == FEED
    state = SilenceState({FEED.to_user_string(): (NOW - timedelta(minutes=95)).timestamp()})
    assert decide(state, [reading(STALE, 95)]) == []  # still silent: said already
    assert decide(state, [reading(UNKNOWN, None)]) == []
    (back,) = decide(state, [reading(FRESH, 1)])
    assert back.kind == "back" and back.since == dict(state.silent)
    # newer data that is still late ends this silence too (the next one is its own)
    (late,) = decide(state, [reading(STALE, 40)])
    assert late.kind == "back"


def test_cursor_round_trips_and_a_bad_one_starts_over():
    state = SilenceState({"raw/activity_feed_actions": 1_700_000_000.0})
    assert SilenceState.from_cursor(state.to_cursor()) == state
    assert SilenceState.from_cursor("not json") == SilenceState()
    assert SilenceState.from_cursor('{"v": 99}') == SilenceState()


def test_messages_name_the_source_its_newest_data_and_the_expectation():
    silent = Notice("silent", (reading(STALE, 125),))
    text = render_notice(silent, SETTINGS, NOW)
    assert text.startswith("🔇 <b>No data</b> · 24.11.2026 15:00 MSK")
    assert '<a href="https://dash.example/raw/activity_feed_actions">' in text
    assert "newest data 24.11 12:55 (2 h 5 min ago); expected new data every 30 min" in text
    since = (NOW - timedelta(minutes=125)).timestamp()
    back = Notice("back", (reading(FRESH, 0),), {FEED.to_user_string(): since})
    text = render_notice(back, SETTINGS, NOW)
    assert text.startswith("✅ <b>Data again</b>")
    assert "new data 24.11 15:00, 2 h 5 min after the previous" in text
    assert [duration(timedelta(minutes=m)) for m in (0, 45, 60, 61, 1500, 2880)] == [
        "0 min",
        "45 min",
        "1 h",
        "1 h 1 min",
        "1 d 1 h",
        "2 d",
    ]


# --------------------------------------------------------------------------- the sensor


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def telegram(simulator: TelegramSimulator) -> TelegramResource:
    return TelegramResource(
        bot_token=CHAT_TOKEN,
        chat_id="-1001234567890",
        base_url=simulator.url,
        max_attempts=1,
        read_timeout_seconds=5,
    )


def land(instance: dg.DagsterInstance, key: dg.AssetKey, newest: datetime | None) -> None:
    """A materialization as a landing run reports it (with the newest event's time)."""
    metadata = {} if newest is None else {LAST_UPDATED: dg.MetadataValue.timestamp(newest)}
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))


def tick(sensor, instance, simulator, cursor: str | None) -> tuple[str | None, str]:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"telegram": telegram(simulator)}
    ) as context:
        result = sensor.evaluate_tick(context)
        return result.cursor, result.skip_message


def test_the_sensor_reads_data_time_and_survives_restarts_and_failed_sends(instance, chat):
    clock = {"now": datetime.now(UTC)}
    sensor = build_freshness_alert_sensor([HALF_HOUR], clock=lambda: clock["now"])
    cursor, message = tick(sensor, instance, chat, None)
    assert message == "no source went silent or came back" and chat.messages == []
    # a landing run just now, but the newest event is two hours old: silent
    land(instance, FEED, clock["now"] - timedelta(hours=2))
    chat.faults = Faults(error_rate=1.0, error_status=502)
    cursor, message = tick(sensor, instance, chat, cursor)
    assert "1 left for the next tick" in message and chat.messages == []
    chat.faults = Faults()
    cursor, message = tick(sensor, instance, chat, cursor)
    assert message == "sent silent: raw/activity_feed_actions"
    (alert,) = chat.messages
    assert alert.plain.startswith("🔇 No data") and "(2 h ago)" in alert.plain
    restarted = build_freshness_alert_sensor([HALF_HOUR], clock=lambda: clock["now"])
    for _ in range(2):
        cursor, _ = tick(restarted, instance, chat, cursor)
    assert len(chat.messages) == 1
    # the source is back: the next landing's newest event is a minute old
    clock["now"] += timedelta(minutes=15)
    land(instance, FEED, clock["now"] - timedelta(minutes=1))
    cursor, message = tick(sensor, instance, chat, cursor)
    assert message == "sent back: raw/activity_feed_actions"
    assert chat.messages[-1].plain.startswith("✅ Data again")
    cursor, _ = tick(sensor, instance, chat, cursor)
    assert len(chat.messages) == 2
    # a materialization without the key counts at its own time (the real clock's now)
    land(instance, FEED, None)
    clock["now"] = datetime.now(UTC) + timedelta(minutes=10)
    cursor, message = tick(sensor, instance, chat, cursor)
    assert message == "no source went silent or came back"
    clock["now"] += timedelta(minutes=30)
    _, message = tick(sensor, instance, chat, cursor)
    assert message == "sent silent: raw/activity_feed_actions"


def test_user_actions_that_stop_arriving_send_one_no_data_and_later_one_data_again(
    instance, chat, clickhouse_database
):
    """The real landing asset on chDB: the generated source stops three hours ago (both
    tables), today is landed on schedule all the same, and the sensor says so once; when
    events flow again, the next landing ends the silence with one message."""
    from signalbox.domains.user_activity.raw import activity_user_actions
    from signalbox.simulators.user_activity import GeneratedUserActions

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    today, stop = now.date(), now - timedelta(hours=3)
    stopped = f"{stop:%Y-%m-%dT%H:%M}/{today + timedelta(days=1)}T00:00"
    # enough events that even the nightly trough has some every few minutes: the test asks
    # for an event in the last five minutes, whatever the hour it runs at
    small = {"users": 5_000, "feed_events_per_day": 60_000, "messages_per_day": 20_000}
    expectations = freshness_expectations([activity_user_actions])
    assert [e.asset_key.path[-1] for e in expectations] == [
        "activity_feed_actions",
        "activity_message_actions",
    ]

    with clickhouse_database("freshness_test") as clickhouse:

        def land_today(anomalies: str) -> dict:
            source = GeneratedUserActions(**small, anomalies=anomalies)
            source.land(clickhouse, today - timedelta(days=1))  # the source's history
            result = dg.materialize(
                [activity_user_actions],
                partition_key=today.isoformat(),
                resources={"clickhouse": clickhouse, "user_actions": source},
                instance=instance,
            )
            assert result.success
            return {
                e.asset_key.path[-1]: e.materialization.metadata[LAST_UPDATED].value
                for e in result.get_asset_materialization_events()
            }

        newest = land_today(f"feed_events x0 {stopped}; messages x0 {stopped}")
        for stamp in newest.values():
            assert stop - timedelta(minutes=10) < datetime.fromtimestamp(stamp, UTC) < stop
        tick_at = now + timedelta(minutes=1)
        first = send_freshness_alerts(
            instance, telegram(chat), None, expectations=expectations, now=tick_at
        )
        (alert,) = chat.messages
        assert alert.plain.startswith("🔇 No data")
        assert "raw/activity_feed_actions" in alert.plain
        assert "raw/activity_message_actions" in alert.plain
        assert "expected new data at least every 30 min" in alert.plain
        again = send_freshness_alerts(
            instance, telegram(chat), first.cursor, expectations=expectations, now=tick_at
        )
        assert again.sent == [] and len(chat.messages) == 1

        newest = land_today("")
        recent = now - timedelta(minutes=5)
        assert all(datetime.fromtimestamp(s, UTC) > recent for s in newest.values())
        later = tick_at + timedelta(minutes=15)
        back = send_freshness_alerts(
            instance, telegram(chat), again.cursor, expectations=expectations, now=later
        )
        assert [n.kind for n in back.sent] == ["back"] and len(chat.messages) == 2
        assert chat.messages[-1].plain.startswith("✅ Data again")
        done = send_freshness_alerts(
            instance, telegram(chat), back.cursor, expectations=expectations, now=later
        )
        assert done.sent == [] and len(chat.messages) == 2
