"""The tickets domain: the stream's external assets, their checks and schedule, and the
stream's settings. The processor itself runs beside Dagster (`signalbox tickets process`)."""

import dagster as dg

from signalbox.domains.tickets import checks, models, raw, recompute, schedules
from signalbox.domains.tickets.settings import TicketStreamResource

defs = dg.Definitions.merge(
    dg.load_definitions_from_modules([raw, models, checks, schedules, recompute]),
    dg.Definitions(resources={"ticket_stream": TicketStreamResource.from_env()}),
)
