"""The IQR alert sensor: pure decisions (dedupe, cooldown, recovery, partitions), the
message and chart, and the sensor on a real Dagster instance sending to the Telegram
simulator (ticks, restarts, send failures, and a real check run feeding it)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg2.extras
import pytest
from chat_support import CHAT_TOKEN
from PIL import Image

from signalbox.checks.iqr import (
    INSIDE,
    NOT_JUDGED,
    IqrCheckSpec,
    IqrPoint,
    IqrRule,
    evaluate,
    iqr_check_keys,
    iqr_checks,
    outcome_metadata,
)
from signalbox.platform.telegram import TelegramResource
from signalbox.sensors.iqr_alerts import (
    AlertSettings,
    AlertState,
    CheckReading,
    Episode,
    build_iqr_alert_sensor,
    decide,
    notice_chart,
    read_latest,
    render_notice,
    send_alerts,
)
from signalbox.simulators.server import Faults
from signalbox.simulators.telegram import TelegramSimulator, parse_html

TOKEN = CHAT_TOKEN
CHAT = "-1001234567890"
ACTIVITY = dg.AssetKey(["marts", "activity_metrics_15min"])
MAILBOX = dg.AssetKey(["marts", "mailbox_emails_hourly"])
BUCKET = timedelta(minutes=15)
T0 = datetime(2024, 3, 12, 7, 0, tzinfo=UTC)  # 10:00 in Moscow; bucket 4 is 11:00
COOLDOWN = timedelta(minutes=60)
SETTINGS = AlertSettings(
    timezone="Europe/Moscow",
    dashboard_url="https://dash.example/d/{asset}?check={check}",
    cooldown=COOLDOWN,
)


# --------------------------------------------------------------------------- readings


def bucket(i: int) -> datetime:
    return T0 + i * BUCKET


def points(
    i: int,
    value: float | None,
    *,
    partition: str = "",
    band: tuple[float, float] = (90.0, 110.0),
    judged: bool = True,
    history: int = 8,
) -> list[IqrPoint]:
    """A metric's last `history` buckets up to bucket `i`, as the SQL would return them:
    steady mid-band, then `value` at bucket i."""
    lower, upper = band
    base = (lower + upper) / 2
    out = []
    for k in range(i - history + 1, i + 1):
        v = value if k == i else base
        outside = (lower - v if v < lower else v - upper if v > upper else 0.0) if judged else None
        out.append(
            IqrPoint(
                partition=partition,
                bucket_start=bucket(k),
                is_latest=k == i,
                value=v,
                q25=(base + lower) / 2 if judged else None,
                q75=(base + upper) / 2 if judged else None,
                lower=lower if judged else None,
                upper=upper if judged else None,
                distance_outside=outside,
                deviation_pct=(v - base) / base * 100 if k == i else 0.0,
                window_count=5 if judged else 2,
                breach=bool(outside),
            )
        )
    return out


def evaluation(
    metric: str,
    i: int,
    value: float | None = None,
    *,
    asset=ACTIVITY,
    partitions=None,
    kind: str = "count",
    **kw,
) -> dg.AssetCheckEvaluation:
    """The evaluation an IQR check records: metadata from the same code the checks use.
    `partitions` maps partition -> value for a partitioned check (mailbox_id)."""
    if partitions is None:
        pts, column = points(i, value, **kw), None
    else:
        pts = [p for part, v in partitions.items() for p in points(i, v, partition=part, **kw)]
        column = "mailbox_id"
    outcome = evaluate(metric, pts)
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=f"iqr_{metric}",
        passed=outcome.passed,
        metadata=outcome_metadata(
            outcome, rule=IqrRule(), bucket=BUCKET, partition_column=column, kind=kind
        ),
        severity=dg.AssetCheckSeverity.WARN,
    )


def reading(*args, **kw) -> CheckReading:
    parsed = CheckReading.from_evaluation(evaluation(*args, **kw))
    assert parsed is not None
    return parsed


def at(i: int, minutes: float = 16) -> datetime:
    """A moment soon after bucket i closed."""
    return bucket(i) + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- decisions


def test_a_counts_lower_bound_shows_as_zero_a_ratios_as_computed():
    """The band's maths may go below 0; a count is shown from 0 in the text and chart."""
    count = reading("messages_sent", 4, 40.0, band=(-12.0, 30.0))
    notice = decide(AlertState(), [count], at(4), COOLDOWN).notices[0]
    plain, _ = parse_html(render_notice(notice, SETTINGS))
    assert "messages_sent = 40: expected 0 … 30, 10 above the band" in plain
    ratio = CheckReading.from_evaluation(
        evaluation("ctr", 4, 0.5, band=(-0.01, 0.05), kind="ratio")
    )
    notice = decide(AlertState(), [ratio], at(4), COOLDOWN).notices[0]
    plain, _ = parse_html(render_notice(notice, SETTINGS))
    assert "expected -1.00% … 5.00%" in plain


def test_a_breach_alerts_once_across_ticks():
    state = AlertState()
    first = decide(state, [reading("views", 4, 20.0)], at(4), COOLDOWN)
    assert [n.kind for n in first.notices] == ["alert"]
    item = first.notices[0].items[0]
    assert item.breach.value == 20.0 and item.breach.lower == 90.0
    assert item.breach.distance_outside == 70.0 and item.breach.deviation_pct == -80.0
    again = decide(first.state, [reading("views", 4, 20.0)], at(4, 17), COOLDOWN)
    assert again.notices == [] and again.state == first.state
    # a newer bucket still outside, within the cooldown: nothing
    later = decide(first.state, [reading("views", 5, 25.0)], at(5), COOLDOWN)
    assert later.notices == []


def test_breaches_of_one_bucket_share_a_message():
    readings = [
        reading("views", 4, 20.0),
        reading("likes", 4, 300.0),
        reading("ctr", 4, 100.0),
        reading("messages_sent", 3, 5.0),
    ]
    decision = decide(AlertState(), readings, at(4), COOLDOWN)
    assert [(n.kind, n.bucket_start, len(n.items)) for n in decision.notices] == [
        ("alert", bucket(3), 1),
        ("alert", bucket(4), 2),
    ]
    assert len(decision.state.episodes) == 3


def test_cooldown_allows_a_reminder_for_a_newer_bucket_only():
    first = decide(AlertState(), [reading("views", 4, 20.0)], at(4), COOLDOWN)
    # after the cooldown but the same bucket (the check did not run again): nothing
    assert decide(first.state, [reading("views", 4, 20.0)], at(4, 90), COOLDOWN).notices == []
    late = decide(first.state, [reading("views", 9, 22.0)], at(9), COOLDOWN)
    assert [n.kind for n in late.notices] == ["alert"]
    item = late.notices[0].items[0]
    assert item.reminder and item.episode.alerts == 2
    assert item.episode.first_bucket == int(bucket(4).timestamp())
    assert item.episode.last_bucket == int(bucket(9).timestamp())
    # the reminder restarts the cooldown
    assert decide(late.state, [reading("views", 10, 22.0)], at(10), COOLDOWN).notices == []


def test_recovery_closes_the_episode_and_stale_breaches_stay_closed():
    first = decide(AlertState(), [reading("views", 4, 20.0)], at(4), COOLDOWN)
    not_judged = decide(first.state, [reading("views", 5, 20.0, judged=False)], at(5), COOLDOWN)
    assert not_judged.notices == [] and not_judged.state == first.state
    back = decide(first.state, [reading("views", 6, 101.0)], at(6), COOLDOWN)
    assert [n.kind for n in back.notices] == ["recovery"]
    assert back.state.episodes == {} and list(back.state.closed.values()) == [
        int(bucket(6).timestamp())
    ]
    assert decide(back.state, [reading("views", 6, 101.0)], at(6, 30), COOLDOWN).notices == []
    # a breach reading not newer than the recovery (e.g. re-read) does not reopen it
    assert decide(back.state, [reading("views", 6, 20.0)], at(6), COOLDOWN).notices == []
    anew = decide(back.state, [reading("views", 7, 20.0)], at(7), COOLDOWN)
    assert [n.kind for n in anew.notices] == ["alert"] and not anew.notices[0].items[0].reminder


def test_partitions_have_episodes_of_their_own():
    two = reading(
        "emails_received", 4, asset=MAILBOX, partitions={"1": 300.0, "2": 250.0, "3": 100.0}
    )
    first = decide(AlertState(), [two], at(4), COOLDOWN)
    assert [i.breach.partition for i in first.notices[0].items] == ["1", "2"]
    assert len(first.state.episodes) == 2
    only_two = reading("emails_received", 5, asset=MAILBOX, partitions={"1": 100.0, "2": 260.0})
    later = decide(first.state, [only_two], at(5), COOLDOWN)
    assert [(n.kind, [i.episode.partition for i in n.items]) for n in later.notices] == [
        ("recovery", ["1"])
    ]
    assert [e.partition for e in later.state.episodes.values()] == ["2"]
    calm = reading("emails_received", 6, asset=MAILBOX, partitions={"1": 100.0, "2": 100.0})
    assert calm.status == INSIDE
    assert [n.kind for n in decide(later.state, [calm], at(6), COOLDOWN).notices] == ["recovery"]


def test_cursor_round_trip_and_bad_cursors():
    state = decide(AlertState(), [reading("views", 4, 20.0)], at(4), COOLDOWN).state
    state = replace(state, closed={"marts/x:iqr_y|": 1710000000})
    assert AlertState.from_cursor(state.to_cursor()) == state
    assert AlertState.from_cursor(None) == AlertState()
    assert AlertState.from_cursor("not json") == AlertState()
    assert AlertState.from_cursor(json.dumps({"v": 99, "episodes": {}})) == AlertState()
    pruned = state.pruned(datetime(2024, 4, 1, tzinfo=UTC))
    assert pruned.closed == {} and pruned.episodes == state.episodes


def test_readings_of_other_checks_are_ignored():
    other = dg.AssetCheckEvaluation(asset_key=ACTIVITY, check_name="freshness", passed=False)
    assert CheckReading.from_evaluation(other) is None
    assert reading("views", 4, 100.0, judged=False).status == NOT_JUDGED


# --------------------------------------------------------------------------- messages


def test_alert_message_has_everything_on_call_needs():
    readings = [reading("views", 4, 20.0), reading("ctr", 4, 0.5, band=(0.03, 0.05))]
    notice = decide(AlertState(), readings, at(4), COOLDOWN).notices[0]
    text = render_notice(notice, SETTINGS)
    plain, _ = parse_html(text)  # Telegram's HTML rules: the simulator's parser
    assert "Anomaly" in plain and "12.03.2024 11:00–11:15 MSK" in plain  # Moscow time
    assert "views = 20: expected 90 … 110, 70 below the band; -80.0% vs the previous bucket" in (
        plain
    )
    assert "ctr = 50.00%: expected 3.00% … 5.00%" in plain and "above the band" in plain
    assert 'href="https://dash.example/d/marts/activity_metrics_15min?check=iqr_' in text
    assert "a=3, n=5, direction=both" in plain
    png = notice_chart(notice, SETTINGS)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.size[0] >= 800 and image.size[1] > 400


def test_recovery_and_reminder_messages():
    first = decide(AlertState(), [reading("views", 4, 20.0)], at(4), COOLDOWN)
    late = decide(first.state, [reading("views", 9, 22.0)], at(9), COOLDOWN)
    plain, _ = parse_html(render_notice(late.notices[0], SETTINGS))
    assert "still outside since 12.03 11:00 (reminder 1)" in plain
    back = decide(late.state, [reading("views", 10, 100.0)], at(10), COOLDOWN).notices[0]
    plain, _ = parse_html(render_notice(back, SETTINGS))
    assert "Back inside the band" in plain and "12.03.2024 12:30–12:45 MSK" in plain
    assert "views = 100, band 90 … 110 (outside since 12.03 11:00)" in plain
    assert notice_chart(back, SETTINGS) is None


def test_settings_from_the_environment():
    env = {
        "SIGNALBOX_REPORT_TIMEZONE": "Asia/Yekaterinburg",
        "SIGNALBOX_DASHBOARD_URL": "https://superset.example/dashboard/7",
        "SIGNALBOX_ALERT_COOLDOWN_MINUTES": "15",
    }
    settings = AlertSettings.from_env(env)
    assert settings.timezone == "Asia/Yekaterinburg" and settings.cooldown == timedelta(minutes=15)
    link = settings.link(ACTIVITY, "iqr_views")
    assert link.startswith("https://superset.example/dashboard/7/superset/dashboard/user-activity/")
    assert AlertSettings.from_env({}).timezone == "Europe/Moscow"
    with pytest.raises(ValueError, match="SIGNALBOX_ALERT_TIMEZONE"):
        AlertSettings.from_env({"SIGNALBOX_ALERT_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ValueError, match="SIGNALBOX_ALERT_COOLDOWN_MINUTES"):
        AlertSettings.from_env({"SIGNALBOX_ALERT_COOLDOWN_MINUTES": "soon"})


# --------------------------------------------------------------------------- the sensor


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def telegram_resource(simulator: TelegramSimulator) -> TelegramResource:
    return TelegramResource(
        bot_token=TOKEN,
        chat_id=CHAT,
        base_url=simulator.url,
        max_attempts=2,
        backoff_base_seconds=0.01,
        read_timeout_seconds=5,
    )


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


CHECK_KEYS = [dg.AssetCheckKey(ACTIVITY, f"iqr_{m}") for m in ("views", "likes", "ctr")]
CHECK_KEYS.append(dg.AssetCheckKey(MAILBOX, "iqr_emails_received"))


def tick(sensor, instance, simulator, cursor: str | None) -> tuple[str | None, str]:
    """One tick the way the daemon evaluates it (resources bound by the definitions)."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"telegram": telegram_resource(simulator)}
    ) as context:
        result = sensor.evaluate_tick(context)
        return result.cursor, result.skip_message


def sent(simulator: TelegramSimulator) -> list[str]:
    """Everything the chat received, oldest first (photo captions and messages)."""
    items = [(p.message_id, "photo: " + p.plain) for p in simulator.photos]
    items += [(m.message_id, m.plain) for m in simulator.messages]
    return [text for _, text in sorted(items)]


def test_sensor_on_an_instance_dedupes_reminds_recovers_and_survives_restarts(instance, chat):
    clock = Clock(at(4))
    sensor = build_iqr_alert_sensor(CHECK_KEYS, settings=SETTINGS, clock=clock)
    cursor, message = tick(sensor, instance, chat, None)
    assert sent(chat) == [] and message == "no new breach or recovery"

    instance.report_runless_asset_event(evaluation("views", 4, 20.0))
    instance.report_runless_asset_event(evaluation("likes", 4, 250.0))
    instance.report_runless_asset_event(evaluation("ctr", 4, 100.0))
    cursor, message = tick(sensor, instance, chat, cursor)
    assert message == "1 message(s) sent"
    [alert] = sent(chat)
    assert alert.startswith("photo: 🚨 Anomaly · 12.03.2024 11:00–11:15 MSK")
    assert "likes = 250" in alert and "views = 20" in alert and "ctr" not in alert
    assert chat.photos[0].width >= 800  # the chart of both series

    for _ in range(2):  # the next ticks, and a restart (a new sensor, the stored cursor)
        cursor, _ = tick(sensor, instance, chat, cursor)
    restarted = build_iqr_alert_sensor(CHECK_KEYS, settings=SETTINGS, clock=clock)
    cursor, message = tick(restarted, instance, chat, cursor)
    assert len(sent(chat)) == 1 and message == "no new breach or recovery"

    clock.now = at(6)  # still outside, within the cooldown
    instance.report_runless_asset_event(evaluation("views", 6, 21.0))
    cursor, _ = tick(sensor, instance, chat, cursor)
    assert len(sent(chat)) == 1
    clock.now = at(9)  # after the cooldown
    instance.report_runless_asset_event(evaluation("views", 9, 22.0))
    instance.report_runless_asset_event(evaluation("likes", 9, 100.0))
    cursor, _ = tick(sensor, instance, chat, cursor)
    reminder, recovery = sent(chat)[1:]
    assert "views = 22" in reminder and "still outside since 12.03 11:00 (reminder 1)" in reminder
    assert recovery.startswith("✅ Back inside the band") and "likes = 100" in recovery
    clock.now = at(10)
    instance.report_runless_asset_event(evaluation("views", 10, 100.0))
    cursor, _ = tick(sensor, instance, chat, cursor)
    assert "views = 100" in sent(chat)[-1] and AlertState.from_cursor(cursor).episodes == {}
    cursor, _ = tick(restarted, instance, chat, cursor)
    assert len(sent(chat)) == 4


def test_a_failed_send_keeps_the_cursor_and_is_retried(instance, chat):
    clock = Clock(at(4))
    sensor = build_iqr_alert_sensor(CHECK_KEYS, settings=SETTINGS, clock=clock)
    instance.report_runless_asset_event(evaluation("views", 4, 20.0))
    chat.faults = Faults(error_rate=1.0, error_status=502)
    cursor, message = tick(sensor, instance, chat, None)
    assert message == "0 message(s) sent, 1 left for the next tick"
    assert sent(chat) == [] and AlertState.from_cursor(cursor) == AlertState()
    assert chat.count("/bot") >= 2  # the resource retried before giving up
    chat.faults = Faults()
    cursor, message = tick(sensor, instance, chat, cursor)
    assert message == "1 message(s) sent" and len(sent(chat)) == 1
    cursor, _ = tick(sensor, instance, chat, cursor)
    assert len(sent(chat)) == 1


def test_one_tick_without_the_daemon(instance, chat):
    """`send_alerts` is the sensor's body, for a demo that runs once without a daemon."""
    instance.report_runless_asset_event(evaluation("views", 4, 20.0))
    resource = telegram_resource(chat)
    tick = send_alerts(
        instance, resource, None, check_keys=CHECK_KEYS, settings=SETTINGS, now=at(4)
    )
    assert tick.summary == "1 message(s) sent" and len(chat.photos) == 1
    again = send_alerts(
        instance, resource, tick.cursor, check_keys=CHECK_KEYS, settings=SETTINGS, now=at(5)
    )
    assert again.summary == "no new breach or recovery" and again.cursor == tick.cursor


def test_the_code_location_sensor_watches_every_domains_iqr_checks(instance, code_location):
    defs = code_location
    sensor = defs.resolve_sensor_def("iqr_alert_sensor")
    assert sensor.minimum_interval_seconds == 60
    assert sensor.required_resource_keys == {"telegram"}
    watched = set(iqr_check_keys(defs.asset_checks or []))
    in_graph = {k for k in defs.resolve_asset_graph().asset_check_keys if k.name.startswith("iqr_")}
    assert watched == in_graph and len(watched) == 7  # six activity metrics, one mailbox
    assert read_latest(instance, CHECK_KEYS) == []


# --------------------------------------------------------------------------- end to end


def test_a_real_check_run_reaches_the_chat(instance, chat, fresh_database):
    """The mailbox IQR check runs on PostgreSQL and records its evaluation in the
    instance; the sensor turns it into an alert with a chart, never touching the engine."""
    latest = datetime(2024, 3, 14, 9, tzinfo=UTC)
    rows = []
    for h in range(48, -2, -1):
        hour = latest - timedelta(hours=h)
        count = 40 if h == 0 else 4 + round(2 * math.sin(hour.hour / 24 * 2 * math.pi))
        rows.append((7, hour, count))
    spec = IqrCheckSpec(
        asset=MAILBOX,
        engine="postgres",
        table="marts.mailbox_emails_hourly",
        time_column="hour_start",
        metrics=("emails_received",),
        bucket=timedelta(hours=1),
        rule=IqrRule(n=24, direction="spike"),
        partition_column="mailbox_id",
        clock=lambda: latest + timedelta(hours=1, minutes=5),
    )

    @dg.asset(key=MAILBOX)
    def stand_in() -> None:
        return None

    with fresh_database() as warehouse:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE SCHEMA marts; CREATE TABLE marts.mailbox_emails_hourly"
                " (mailbox_id bigint, hour_start timestamptz, emails_received bigint)"
            )
            psycopg2.extras.execute_values(
                cur, "INSERT INTO marts.mailbox_emails_hourly VALUES %s", rows
            )
        result = dg.materialize(
            [stand_in, *iqr_checks(spec)], resources={"warehouse": warehouse}, instance=instance
        )
    assert result.success
    sensor = build_iqr_alert_sensor(
        CHECK_KEYS, settings=SETTINGS, clock=lambda: latest + timedelta(hours=1, minutes=6)
    )
    cursor, message = tick(sensor, instance, chat, None)
    assert message == "1 message(s) sent"
    [photo] = chat.photos
    assert "emails_received (mailbox_id 7) = 40" in photo.plain
    assert "14.03.2024 12:00–13:00 MSK" in photo.plain and photo.width >= 800
    [(key, episode)] = AlertState.from_cursor(cursor).episodes.items()
    assert key == "marts/mailbox_emails_hourly:iqr_emails_received|7"
    assert episode == Episode(
        key.split("|")[0], "7", int(latest.timestamp()), int(latest.timestamp()),
        episode.alerted_at,
    )  # fmt: skip
