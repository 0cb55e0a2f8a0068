"""The hourly mailbox run: crawl what changed, then rebuild the mailbox models."""

import dagster as dg

from signalbox.domains.mailbox import GROUP
from signalbox.domains.mailbox.raw import RAW_CONVERSATIONS, RAW_MAILBOXES
from signalbox.platform.settings import engine_tags

mailbox_job = dg.define_asset_job(
    "mailbox_hourly",
    selection=dg.AssetSelection.assets(RAW_MAILBOXES, RAW_CONVERSATIONS).downstream()
    | dg.AssetSelection.groups(GROUP),
    description="Incremental Help Scout crawl and the mailbox dbt models.",
    tags=engine_tags("postgres"),
)

mailbox_hourly_schedule = dg.ScheduleDefinition(
    job=mailbox_job, cron_schedule="5 * * * *", execution_timezone="UTC"
)
