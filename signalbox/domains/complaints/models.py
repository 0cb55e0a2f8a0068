"""The complaints part of the dbt warehouse project (its `meta.dagster.group`) as assets."""

from signalbox.domains.complaints import GROUP
from signalbox.platform.dbt import model_key, warehouse_models

complaints_dbt_models = warehouse_models(GROUP)
COMPLAINTS_DAILY_MART = model_key(
    complaints_dbt_models, "complaints_daily_by_state_product_company"
)
