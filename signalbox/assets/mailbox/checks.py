"""Checks on the raw Help Scout assets: reconciliation with the API, and freshness."""

from datetime import timedelta

import dagster as dg
import pandas as pd

from signalbox.assets.mailbox.helpscout import HelpScoutResource
from signalbox.assets.mailbox.ingest import CONVERSATIONS, stored_mailbox_ids
from signalbox.assets.mailbox.raw import RAW_CONVERSATIONS, RAW_MAILBOXES
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


# fails when an hourly crawl has not landed for two hours
helpscout_freshness_checks = dg.build_last_update_freshness_checks(
    assets=[RAW_MAILBOXES, RAW_CONVERSATIONS], lower_bound_delta=timedelta(hours=2)
)
helpscout_freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=helpscout_freshness_checks, name="helpscout_freshness_sensor"
)
