"""The stream's assets. The processor writes them outside any Dagster run, so they are
external assets (specs), and each batch it commits is reported to the Dagster instance as
a runless materialization with its offsets, counts and lag: the lineage raw/kafka_tickets
-> raw/tickets_routed -> raw/tickets_aggregates -> dbt models, with a history per batch."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from signalbox.domains.tickets import GROUP, store
from signalbox.domains.tickets.process import BatchResult

KAFKA_TICKETS = dg.AssetKey(["raw", "kafka_tickets"])
TICKETS_ROUTED = dg.AssetKey(["raw", "tickets_routed"])
TICKETS_AGGREGATES = dg.AssetKey(["raw", "tickets_aggregates"])
TICKETS_DEAD_LETTERS = dg.AssetKey(["raw", "tickets_dead_letters"])

# customers write tickets around the clock and the processor batches every second: an
# hour with no batch means the producers or the processor stopped
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=1), warn_window=timedelta(minutes=15)
)

kafka_tickets = dg.AssetSpec(
    KAFKA_TICKETS,
    group_name=GROUP,
    kinds={"kafka"},
    description=(
        "The tickets topic (SIGNALBOX_TICKETS_TOPIC): one JSON ticket per message, keyed by "
        "ticket id, written by `signalbox tickets produce` or any producer."
    ),
)
tickets_routed = dg.AssetSpec(
    TICKETS_ROUTED,
    group_name=GROUP,
    deps=[KAFKA_TICKETS],
    kinds={"python", "postgres", "s3"},
    freshness_policy=FRESHNESS,
    description=(
        "Every valid ticket once, with the team it was routed to (routing.yaml): "
        f"`{store.ROUTED_TABLE}` and JSON lines at `{store.ROUTED_DATASET}/date=D/batch=B.jsonl`. "
        "Written by `signalbox tickets process`; one materialization per batch."
    ),
    metadata={"dagster/table_name": store.ROUTED_TABLE},
)
tickets_aggregates = dg.AssetSpec(
    TICKETS_AGGREGATES,
    group_name=GROUP,
    deps=[TICKETS_ROUTED],
    kinds={"python", "postgres", "s3"},
    description=(
        "Tickets per time window, request type, team and priority: "
        f"`{store.AGGREGATES_TABLE}` and `{store.AGGREGATES_DATASET}/date=D/batch=B.json`."
    ),
    metadata={"dagster/table_name": store.AGGREGATES_TABLE},
)
tickets_dead_letters = dg.AssetSpec(
    TICKETS_DEAD_LETTERS,
    group_name=GROUP,
    deps=[KAFKA_TICKETS],
    kinds={"kafka", "postgres"},
    description=(
        "Messages that are not valid tickets, with the reason and the original bytes: "
        f"`{store.DEAD_LETTERS_TABLE}` and the dead-letter topic."
    ),
    metadata={"dagster/table_name": store.DEAD_LETTERS_TABLE},
)


def batch_events(result: BatchResult, topic: str) -> list[dg.AssetMaterialization]:
    """The materializations that report one committed batch."""
    offsets = ", ".join(f"p{p}: {a}..{b}" for p, (a, b) in result.offsets.items())
    common: dict[str, object] = {
        "batch": ", ".join(result.batch_ids),
        "topic": topic,
        "offsets": offsets,
        "messages": result.messages,
        "seconds": round(result.seconds, 3),
    }
    if result.lag is not None:
        common["lag"] = result.lag
    events = [
        dg.AssetMaterialization(
            TICKETS_ROUTED,
            metadata={
                **common,
                "routed": result.routed,
                "new_tickets": result.new_tickets,
                "redelivered": result.routed - result.new_tickets,
                "default_team": result.default_team,
                "files": dg.MetadataValue.md("\n".join(f"- `{f}`" for f in result.files) or "-"),
            },
        ),
        dg.AssetMaterialization(TICKETS_AGGREGATES, metadata={**common, "tickets": result.routed}),
    ]
    if result.dead_letters:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.reasons.items()))
        events.append(
            dg.AssetMaterialization(
                TICKETS_DEAD_LETTERS,
                metadata={**common, "dead_letters": result.dead_letters, "reasons": reasons},
            )
        )
    return events


def dagster_reporter(instance: dg.DagsterInstance, topic: str):
    """`report(result)` for the processor: the batch's materializations, runless."""

    def report(result: BatchResult) -> None:
        for event in batch_events(result, topic):
            instance.report_runless_asset_event(event)

    return report
