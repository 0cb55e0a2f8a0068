"""The complaints domain: CFPB search API -> raw JSONB -> dbt marts -> CSV export, polled."""

import dagster as dg

from signalbox.domains.complaints import checks, export, models, raw, sensors
from signalbox.domains.complaints.cfpb import CfpbResource

defs = dg.Definitions.merge(
    dg.load_definitions_from_modules([raw, models, checks, export, sensors]),
    dg.Definitions(resources={"cfpb": CfpbResource.from_env()}),
)
