"""The stream writes continuously; its dbt marts are rebuilt every hour, five minutes past."""

import dagster as dg

from signalbox.domains.tickets.models import tickets_dbt_models
from signalbox.platform.settings import engine_tags

tickets_models_job = dg.define_asset_job(
    "tickets_models",
    selection=dg.AssetSelection.assets(tickets_dbt_models),
    description="The tickets dbt models and their tests, over what the processor wrote.",
    tags=engine_tags("postgres"),
)
tickets_models_hourly = dg.ScheduleDefinition(
    name="tickets_models_hourly",
    job=tickets_models_job,
    cron_schedule="5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
