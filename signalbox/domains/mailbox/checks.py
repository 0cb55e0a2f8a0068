"""Mailbox checks: the raw crawl against the API, and hourly arrival spikes (freshness is
the raw assets' own `FreshnessPolicy`, raw.py)."""

from datetime import timedelta

import dagster as dg

from signalbox.checks.iqr import IqrCheckSpec, IqrRule, iqr_checks
from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.domains.mailbox.ingest import CONVERSATIONS, stored_mailbox_ids
from signalbox.domains.mailbox.models import MAILBOX_EMAILS_HOURLY
from signalbox.domains.mailbox.raw import RAW_CONVERSATIONS
from signalbox.platform.warehouse import WarehouseResource


@dg.asset_check(
    asset=RAW_CONVERSATIONS,
    description=(
        "Per mailbox, the stored conversation count equals the API's totalElements for the "
        "backfill window (modifiedSince = backfill start, status=all)."
    ),
)
def helpscout_conversations_match_api(
    helpscout: HelpScoutResource, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    import pandas as pd

    client = helpscout.client()
    since = helpscout.backfill_start_at()
    stored = dict(
        warehouse.query(f"SELECT mailbox_id, count(*) FROM {CONVERSATIONS.name} GROUP BY 1")
    )
    rows = []
    for mailbox_id in stored_mailbox_ids(warehouse):
        api = client.count_conversations(mailbox_id, since)
        have = stored.get(mailbox_id, 0)
        rows.append({"mailbox_id": mailbox_id, "stored": have, "api": api, "missing": api - have})
    table = pd.DataFrame(rows, columns=["mailbox_id", "stored", "api", "missing"])
    return dg.AssetCheckResult(
        passed=bool((table["missing"] == 0).all()),
        metadata={
            "stored": int(table["stored"].sum()),
            "api_total_elements": int(table["api"].sum()),
            "by_mailbox": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )


# Hourly arrivals are small counts with a strong daily curve: over the previous 24 hours
# (one daily cycle) the morning ramp stays inside the band while a burst after a market
# event (2-3x the peak) leaves it; only spikes page. Measured false-spike rates: notes/iqr.md.
MAILBOX_IQR = IqrCheckSpec(
    asset=MAILBOX_EMAILS_HOURLY,
    engine="postgres",
    table=".".join(MAILBOX_EMAILS_HOURLY.path),  # dagster-dbt keys are [schema, model]
    time_column="hour_start",
    metrics=("emails_received",),
    bucket=timedelta(hours=1),
    rule=IqrRule(a=3.0, n=24, direction="spike", smooth_bounds=False),
    partition_column="mailbox_id",
    description="Support-load spikes per mailbox (customer emails received per hour).",
)

mailbox_iqr_checks = iqr_checks(MAILBOX_IQR)
