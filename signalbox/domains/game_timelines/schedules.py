"""The daily game-timelines run: yesterday's KST day, then the game-timelines dbt models."""

import dagster as dg

from signalbox.domains.game_timelines import GROUP
from signalbox.domains.game_timelines.raw import NEOPLE_DAILY, RAW_TIMELINE_EVENTS
from signalbox.platform.settings import engine_tags

# the raw day and every model of the domain (dbt's staging and marts carry the same group);
# the dbt models are unpartitioned and rebuilt whole after the day lands
game_timelines_job = dg.define_asset_job(
    "game_timelines_daily",
    selection=dg.AssetSelection.assets(RAW_TIMELINE_EVENTS) | dg.AssetSelection.groups(GROUP),
    partitions_def=NEOPLE_DAILY,
    description="One KST day of Neople timelines, then the game-timelines dbt models.",
    tags=engine_tags("postgres"),
)

# 00:30 KST: the day just ended in Korea (the partition's timezone) is the one it runs
game_timelines_daily_schedule = dg.build_schedule_from_partitioned_job(
    game_timelines_job, hour_of_day=0, minute_of_hour=30
)
