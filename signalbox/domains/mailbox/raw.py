"""Raw Help Scout assets: mailboxes and conversations (with threads), verbatim JSONB."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from signalbox.domains.mailbox import GROUP
from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.domains.mailbox.ingest import (
    CONVERSATIONS,
    MAILBOXES,
    crawl_conversations,
    load_mailboxes,
    stored_mailbox_ids,
)
from signalbox.platform.warehouse import WarehouseResource

RAW_MAILBOXES = dg.AssetKey(["raw", "helpscout_mailboxes"])
RAW_CONVERSATIONS = dg.AssetKey(["raw", "helpscout_conversations"])

# the crawl runs hourly (schedules.py): one missed run warns, two fail
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=75)
)


@dg.asset(
    key=RAW_MAILBOXES,
    group_name=GROUP,
    kinds={"python", "postgres"},
    freshness_policy=FRESHNESS,
    description="Help Scout mailboxes, one row per mailbox, payload kept verbatim (JSONB).",
)
def helpscout_mailboxes(
    context: dg.AssetExecutionContext,
    helpscout: HelpScoutResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    import pandas as pd

    client = helpscout.client(logger=context.log)
    fetched, counts = load_mailboxes(client, warehouse)
    total = warehouse.scalar(f"SELECT count(*) FROM {MAILBOXES.name}")
    names = warehouse.query(f"SELECT id, payload->>'name' FROM {MAILBOXES.name} ORDER BY id")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "fetched": fetched,
            "new": counts.inserted,
            "updated": counts.updated,
            "mailboxes": dg.MetadataValue.md(
                pd.DataFrame(names, columns=["id", "name"]).to_markdown(index=False)
            ),
        }
    )


@dg.asset(
    key=RAW_CONVERSATIONS,
    deps=[RAW_MAILBOXES],
    group_name=GROUP,
    kinds={"python", "postgres"},
    freshness_policy=FRESHNESS,
    description=(
        "Help Scout conversations with their threads (`embed=threads`), one row per "
        "conversation, replaced when its payload changes. Incremental: each run asks only "
        "for conversations modified since the start of the last complete crawl."
    ),
)
def helpscout_conversations(
    context: dg.AssetExecutionContext,
    helpscout: HelpScoutResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    import pandas as pd

    client = helpscout.client(logger=context.log)
    progress = _Progress(context)
    result = crawl_conversations(
        client,
        warehouse,
        mailbox_ids=stored_mailbox_ids(warehouse),
        backfill_start=helpscout.backfill_start_at(),
        overlap=timedelta(minutes=helpscout.overlap_minutes),
        on_page=progress,
    )
    total = warehouse.scalar(f"SELECT count(*) FROM {CONVERSATIONS.name}")
    stats = client.http.stats
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "window_since": dg.MetadataValue.timestamp(result.since),
            "high_water_mark": dg.MetadataValue.timestamp(result.mark),
            "api_total_elements": result.total_elements,
            "pages_fetched": result.pages,
            "received": result.received,
            "new": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "http_requests": stats.requests,
            "http_retries": stats.retries,
            "http_429": stats.rate_limited,
            "preview": dg.MetadataValue.md(
                pd.DataFrame(result.preview).to_markdown(index=False) if result.preview else "-"
            ),
        }
    )


class _Progress:
    """Logs crawl progress about every 10% of pages (and the first page)."""

    def __init__(self, context: dg.AssetExecutionContext):
        self.context = context
        self.started = datetime.now(UTC)
        self.last_logged = -1

    def __call__(self, page: int, total_pages: int) -> None:
        step = max(1, total_pages // 10)
        if page == 1 or page == total_pages or page // step != self.last_logged:
            self.last_logged = page // step
            elapsed = (datetime.now(UTC) - self.started).total_seconds()
            self.context.log.info(
                f"helpscout conversations: page {page}/{total_pages} ({elapsed:.0f}s)"
            )
