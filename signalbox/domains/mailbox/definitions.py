"""The mailbox domain: Help Scout -> raw JSONB -> dbt marts -> checks, every hour."""

import dagster as dg

from signalbox.domains.mailbox import checks, models, raw, schedules
from signalbox.domains.mailbox.helpscout import HelpScoutResource

defs = dg.Definitions.merge(
    dg.load_definitions_from_modules([raw, models, checks, schedules]),
    dg.Definitions(resources={"helpscout": HelpScoutResource.from_env()}),
)
