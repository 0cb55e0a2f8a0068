"""What the on-call chat's sensors share: a tick that sends what is due and keeps what it
sent in the sensor cursor, and launches no runs."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from signalbox.platform.telegram import TelegramResource

# (instance, telegram, cursor, logger) -> (the cursor after what was sent, a summary)
ChatTick = Callable[[dg.DagsterInstance, Any, str | None, Any], tuple[str, str]]


def chat_sensor(
    tick: ChatTick,
    *,
    name: str,
    description: str,
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    """A sensor (resource `telegram`) whose every evaluation is one `tick`: the cursor
    advances by what was sent, and the tick's summary is the skip reason shown in the UI."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext, telegram: TelegramResource):
        cursor, summary = tick(context.instance, telegram, context.cursor, context.log)
        context.update_cursor(cursor)
        return dg.SkipReason(summary)

    return _sensor
