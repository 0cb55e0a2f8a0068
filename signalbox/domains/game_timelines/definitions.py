"""The game-timelines domain: Neople API -> parquet + raw rows per KST day -> dbt marts."""

import dagster as dg

from signalbox.domains.game_timelines import checks, models, raw, schedules, sensors
from signalbox.domains.game_timelines.neople import NeopleResource

defs = dg.Definitions.merge(
    dg.load_definitions_from_modules([raw, models, checks, schedules, sensors]),
    dg.Definitions(resources={"neople": NeopleResource.from_env()}),
)
