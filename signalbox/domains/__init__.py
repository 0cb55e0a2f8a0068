"""One package per domain: its source resource, raw assets, dbt-model assets, checks,
schedules and sensors, gathered by its `definitions.py` (see signalbox.definitions)."""
