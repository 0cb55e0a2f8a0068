"""The game timelines part of the dbt warehouse project (its `meta.dagster.group`) as assets."""

from signalbox.domains.game_timelines import GROUP
from signalbox.platform.dbt import warehouse_models

game_timelines_dbt_models = warehouse_models(GROUP)
