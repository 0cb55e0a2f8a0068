"""Raw Neople timelines: one partition per KST day, as parquet in the object store and as
rows in `raw.neople_timeline_events`.

Partitions are KST days because the API's dates are KST minutes and a game day (resets,
evenings) is a Korean day: partition `2024-03-05` is `2024-03-05 00:00`..`23:59` KST, one
request window per character, and a day's file and rows never straddle two requests.
Backfills run as one run over the whole range (`BackfillPolicy.single_run`, so
`dagster asset materialize --partition-range A...B` works too); days already stored are
skipped unless the run config says `refetch: true`.
"""

import time
from datetime import date, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from signalbox.domains.game_timelines import GROUP, notify
from signalbox.domains.game_timelines.ingest import (
    COLUMN_NOTES,
    RAW_TABLE,
    TIMELINE_SCHEMA,
    character_fingerprint,
    code_counts,
    fetch_day,
    load_day,
    preview_rows,
    restore_day,
    stored_state,
)
from signalbox.domains.game_timelines.neople import Character, NeopleClient, NeopleResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.settings import start_date
from signalbox.platform.warehouse import WarehouseResource

RAW_TIMELINE_EVENTS = dg.AssetKey(["raw", "neople_timeline_events"])
TIMEZONE = "Asia/Seoul"
# The API's first day of timelines (2017-09-21 00:00 KST): days before it can only fail.
API_FIRST_DAY = date(2017, 9, 21)
# First KST day of timelines (NEOPLE_TIMELINE_START_DATE, YYYY-MM-DD). Only complete days
# are partitions: today's appears once it has ended in Korea.
TIMELINE_START_DATE = start_date("NEOPLE_TIMELINE_START_DATE", "2026-11-01", API_FIRST_DAY)
NEOPLE_DAILY = dg.DailyPartitionsDefinition(start_date=TIMELINE_START_DATE, timezone=TIMEZONE)

_ARROW_TO_SQL = {"date32[day]": "date", "string": "text", "int32": "integer"}
_SQL_TYPES = {"data": "jsonb", "extra": "jsonb"}


class TimelineRunConfig(dg.Config):
    refetch: bool = Field(
        default=False,
        description="Fetch and replace days already stored (default: skip them).",
    )


def _column_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                f.name,
                _SQL_TYPES.get(f.name, _ARROW_TO_SQL.get(str(f.type), str(f.type))),
                description=COLUMN_NOTES[f.name],
            )
            for f in TIMELINE_SCHEMA
        ]
        + [dg.TableColumn("loaded_at", "timestamptz", description="When the day was loaded.")]
    )


@dg.asset(
    key=RAW_TIMELINE_EVENTS,
    group_name=GROUP,
    kinds={"python", "s3", "postgres"},
    partitions_def=NEOPLE_DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Dungeon&Fighter character timelines (Neople Open API), one partition per KST day: "
        "every configured character's rows (all `next` pages), kept verbatim, written as "
        "`neople_timeline/date=YYYY-MM-DD/part-0.parquet` in the object store and as the "
        "day's rows of `raw.neople_timeline_events`, replaced whole on re-runs. Days already "
        "stored are skipped unless `refetch: true`. The notification sensors e-mail and post "
        "to the chat when a run loads days or fails."
    ),
    # the scheduled run for a KST day starts at 00:30 KST the next day: late after 03:00 KST
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=3), timezone=TIMEZONE
    ),
    metadata={
        "dagster/table_name": RAW_TABLE,
        "dagster/column_schema": _column_schema(),
        "partition_timezone": TIMEZONE,
    },
)
def neople_timeline_events(
    context: dg.AssetExecutionContext,
    config: TimelineRunConfig,
    neople: NeopleResource,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    days = [date.fromisoformat(key) for key in context.partition_keys]
    outcomes: list[notify.DayOutcome] = []
    landed: dict[date, dict[str, Any]] = {}  # metadata of the days stored by this run
    client: NeopleClient | None = None
    try:
        client = neople.client(logger=context.log)
        characters = client.resolve(neople.character_refs())
        fingerprint = character_fingerprint(characters)
        for current in days:
            metadata = _run_day(
                context, config, client, characters, fingerprint, current, warehouse, object_store
            )
            outcome = notify.DayOutcome.from_metadata(current, metadata)
            outcomes.append(outcome)
            context.add_asset_metadata(metadata, partition_key=current.isoformat())
            if outcome.status in ("loaded", "restored"):
                landed[current] = metadata
    except Exception:
        # the days this run stored before the failure are stored: record them as such
        for day, metadata in landed.items():
            context.log_event(
                dg.AssetMaterialization(
                    RAW_TIMELINE_EVENTS, partition=day.isoformat(), metadata=metadata
                )
            )
        raise
    finally:
        if client is not None:
            client.http.close()

    loaded = [o for o in outcomes if o.status in ("loaded", "restored")]
    stats = client.http.stats
    return dg.MaterializeResult(
        metadata={
            "days_loaded": len(loaded),
            "days_skipped": len(outcomes) - len(loaded),
            "rows_loaded": sum(o.rows or 0 for o in loaded),
            "characters": len(characters),
            "http_requests": stats.requests,
            "http_retries": stats.retries,
            "http_429": stats.rate_limited,
        }
    )


def _run_day(
    context: dg.AssetExecutionContext,
    config: TimelineRunConfig,
    client: NeopleClient,
    characters: list[Character],
    fingerprint: str,
    day: date,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> dict[str, Any]:
    """Skip the day if it is stored (and no refetch), else fetch it and replace it; the
    day's metadata (what the notices are written from, too)."""
    state = stored_state(warehouse, object_store, day, fingerprint)
    if state.complete and not config.refetch:
        stored = state.stored
        assert stored is not None
        context.log.info(f"neople {day}: skipped, already stored ({state.reason})")
        with_rows = sum(1 for c in stored.details.get("characters", []) if c.get("rows"))
        return {
            "status": "skipped: already stored",
            "dagster/row_count": stored.row_count,
            "characters": with_rows,
            "characters_configured": len(characters),
            "object_url": stored.object_url,
            "parquet_bytes": stored.object_size,
            "stored_at": dg.MetadataValue.timestamp(stored.loaded_at),
        }

    if state.restorable and not config.refetch:
        return _restore(context, state, day, len(characters), warehouse, object_store)

    why = "refetch requested" if state.complete else state.reason
    context.log.info(f"neople {day}: fetching {len(characters)} characters ({why})")
    started = time.monotonic()
    before = (client.http.stats.requests, client.http.stats.retries, client.http.stats.rate_limited)

    def on_page(character: Character, page) -> None:
        context.log.debug(f"neople {day}: {character.label} page {page.number}: {len(page.rows)}")

    rows = fetch_day(client, characters, day, on_page=on_page)
    table = rows.table()  # raises InvalidTimelineRows naming the rows: nothing written yet
    per_character = [
        {
            "server_id": c.character.server_id,
            "character_id": c.character.character_id,
            "character_name": c.name,
            "rows": c.rows,
            "pages": c.pages,
        }
        for c in rows.characters.values()
    ]
    codes = code_counts(table)
    loaded = load_day(
        warehouse,
        object_store,
        table,
        day=day,
        fingerprint=fingerprint,
        details={"characters": per_character, "pages": rows.pages, "codes": codes},
    )
    seconds = time.monotonic() - started
    stats = client.http.stats
    with_rows = sum(1 for c in per_character if c["rows"])
    context.log.info(
        f"neople {day}: stored {loaded.rows:,} rows of {with_rows}/{len(characters)} characters "
        f"({rows.pages} pages, replaced {loaded.replaced_rows:,} rows) in {seconds:.1f}s: "
        f"{loaded.stored.url}"
    )
    return {
        "status": "loaded",
        "dagster/row_count": loaded.rows,
        "window": f"{day} 00:00..23:59 KST",
        "characters": with_rows,
        "characters_configured": len(characters),
        "pages": rows.pages,
        "replaced_rows": loaded.replaced_rows,
        "object_key": loaded.stored.key,
        "object_url": loaded.stored.url,
        "parquet_bytes": loaded.stored.size,
        "http_requests": stats.requests - before[0],
        "http_retries": stats.retries - before[1],
        "http_429": stats.rate_limited - before[2],
        "seconds": round(seconds, 2),
        "rows_by_code": _markdown(codes, "no rows this day"),
        "rows_by_character": _markdown(per_character, "no characters"),
        "preview": _markdown(preview_rows(table), "no rows this day"),
    }


def _restore(context, state, day, characters, warehouse, object_store):
    """Postgres lost (some of) the day but its parquet file is intact: reload from it."""
    stored = state.stored
    context.log.info(f"neople {day}: reloading Postgres from the object store ({state.reason})")
    loaded = restore_day(warehouse, object_store, stored)
    with_rows = sum(1 for c in stored.details.get("characters", []) if c.get("rows"))
    return {
        "status": "restored from the object store (the API was not called)",
        "dagster/row_count": loaded.rows,
        "characters": with_rows,
        "characters_configured": characters,
        "replaced_rows": loaded.replaced_rows,
        "object_key": loaded.stored.key,
        "object_url": loaded.stored.url,
        "parquet_bytes": loaded.stored.size,
    }


def _markdown(rows: list[dict[str, Any]], empty: str) -> dg.MetadataValue:
    import pandas as pd

    if not rows:
        return dg.MetadataValue.md(f"_{empty}_")
    return dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False))
