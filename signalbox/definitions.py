"""The Dagster code location: every domain's assets, checks, schedules and sensors.

Definitions are gathered from the modules of `signalbox.assets`, `signalbox.checks` and
`signalbox.sensors`
(nothing is listed by hand); resources come from the environment.
"""

import warnings

import dagster as dg

import signalbox.assets
import signalbox.checks
import signalbox.sensors
from signalbox.platform.resources import build_resources

# gathering definitions from modules is a Dagster "preview" API; say so once, here
warnings.filterwarnings("ignore", message=".*load_definitions_from", category=dg.PreviewWarning)

defs = dg.Definitions.merge(
    dg.load_definitions_from_package_module(signalbox.assets),
    dg.load_definitions_from_package_module(signalbox.checks),
    dg.load_definitions_from_package_module(signalbox.sensors),
    # Steps mostly wait on databases and APIs; one process per run avoids re-importing the
    # code for every step (seconds each on two cores).
    dg.Definitions(resources=build_resources(), executor=dg.in_process_executor),
)
