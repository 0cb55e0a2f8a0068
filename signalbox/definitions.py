"""The Dagster code location: every domain's assets, checks, schedules and sensors."""

import dagster as dg

defs = dg.Definitions()
