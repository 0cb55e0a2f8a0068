"""The mailbox part of the dbt warehouse project (its `meta.dagster.group`) as assets."""

from signalbox.domains.mailbox import GROUP
from signalbox.platform.dbt import model_key, warehouse_models

mailbox_dbt_models = warehouse_models(GROUP)
MAILBOX_EMAILS_HOURLY = model_key(mailbox_dbt_models, "mailbox_emails_hourly")
