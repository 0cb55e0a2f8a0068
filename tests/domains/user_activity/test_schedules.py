"""The 15-minute schedule asks for today's UTC partition, once per quarter hour."""

from datetime import UTC, datetime

import dagster as dg


def test_fifteen_minute_ticks_request_todays_partition(code_location):
    from signalbox.domains.user_activity.schedules import (
        user_activity_every_15_minutes,
        user_activity_job,
    )

    at = datetime(2026, 11, 25, 0, 16, tzinfo=UTC)
    requests = list(
        user_activity_every_15_minutes.evaluate_tick(
            dg.build_schedule_context(
                scheduled_execution_time=at, repository_def=code_location.get_repository_def()
            )
        ).run_requests
    )
    assert [(r.partition_key, r.run_key) for r in requests] == [("2026-11-25", "2026-11-25@00:16")]
    assert user_activity_every_15_minutes.cron_schedule == "1-59/15 * * * *"
    assert user_activity_job.partitions_def is not None
