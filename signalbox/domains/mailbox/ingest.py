"""Incremental crawl of Help Scout conversations into the raw JSON table.

Conversation objects carry no `modifiedAt` (API 2.0), so the high-water mark is the
server time at the start of the last *complete* crawl. The next crawl asks for
`modifiedSince = mark - overlap`; pages are stored in transactions of whole pages
(about `batch_rows` rows), and the mark only advances after the last page is stored, so
a failure mid-crawl repeats work but never skips a change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from signalbox.domains.mailbox.helpscout import HelpScoutClient
from signalbox.platform.warehouse import (
    RawJsonTable,
    WarehouseResource,
    read_watermark,
    write_watermark,
)

MAILBOXES = RawJsonTable("raw.helpscout_mailboxes")
CONVERSATIONS = RawJsonTable("raw.helpscout_conversations", columns={"mailbox_id": "bigint"})
WATERMARK = "helpscout.conversations"

log = logging.getLogger(__name__)


@dataclass
class CrawlResult:
    since: datetime | None
    mark: datetime
    pages: int = 0
    received: int = 0
    inserted: int = 0
    updated: int = 0
    total_elements: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted - self.updated


def crawl_window(mark: datetime | None, backfill_start: datetime, overlap: timedelta) -> datetime:
    """Where the next crawl starts: the last mark minus an overlap, or the backfill start."""
    return backfill_start if mark is None else max(backfill_start, mark - overlap)


def load_mailboxes(client: HelpScoutClient, warehouse: WarehouseResource) -> tuple[int, Any]:
    mailboxes = client.mailboxes()
    with warehouse.connect() as conn, conn.cursor() as cur:
        MAILBOXES.create(cur)
        counts = MAILBOXES.upsert(cur, [(m["id"], m) for m in mailboxes])
    return len(mailboxes), counts


def stored_mailbox_ids(warehouse: WarehouseResource) -> list[int]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        MAILBOXES.create(cur)
        cur.execute(f"SELECT id FROM {MAILBOXES.name} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def crawl_conversations(
    client: HelpScoutClient,
    warehouse: WarehouseResource,
    *,
    mailbox_ids: list[int],
    backfill_start: datetime,
    overlap: timedelta = timedelta(minutes=10),
    on_page: Callable[[int, int], None] | None = None,
    batch_rows: int = 500,
) -> CrawlResult:
    """Fetch every conversation changed since the mark and upsert it, page by page."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        CONVERSATIONS.create(cur)
        mark = read_watermark(cur, WATERMARK)
    since = crawl_window(mark, backfill_start, overlap)
    result: CrawlResult | None = None
    if not mailbox_ids:
        raise ValueError(
            "no Help Scout mailboxes stored: materialize raw/helpscout_mailboxes first"
        )

    buffer: list[tuple[int, int, dict[str, Any]]] = []

    def flush(conn) -> None:
        with conn.cursor() as cur:
            counts = CONVERSATIONS.upsert(cur, buffer)
        conn.commit()  # a batch of whole pages, one transaction
        buffer.clear()
        result.received += counts.received
        result.inserted += counts.inserted
        result.updated += counts.updated

    with warehouse.connect() as conn:
        for page in client.conversation_pages(mailbox_ids, since):
            if result is None:
                # the server's clock at the first page: later changes are >= this mark
                started = page.server_time or datetime.now(UTC)
                result = CrawlResult(since=since, mark=started, total_elements=page.total_elements)
            buffer.extend((c["id"], c["mailboxId"], c) for c in page.conversations)
            if len(buffer) >= batch_rows:
                flush(conn)
            result.pages += 1
            if len(result.preview) < 10:
                result.preview.extend(_preview(c) for c in page.conversations[:10])
            if on_page:
                on_page(page.number, page.total_pages)
        assert result is not None  # the API always answers page 1
        if buffer:
            flush(conn)
        with conn.cursor() as cur:
            write_watermark(
                cur,
                WATERMARK,
                result.mark,
                {"since": since.isoformat(), "pages": result.pages, "received": result.received},
            )
        conn.commit()
    return result


def _preview(conversation: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": conversation.get("id"),
        "mailbox": conversation.get("mailboxId"),
        "status": conversation.get("status"),
        "createdAt": conversation.get("createdAt"),
        "threads": conversation.get("threads"),
        "subject": (conversation.get("subject") or "")[:60],
    }
