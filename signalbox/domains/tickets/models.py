"""The tickets part of the dbt warehouse project (its `meta.dagster.group`) as assets:
staging over the processor's tables, marts per team and hour, backlog, time to route."""

from signalbox.domains.tickets import GROUP
from signalbox.platform.dbt import warehouse_models

tickets_dbt_models = warehouse_models(GROUP)
