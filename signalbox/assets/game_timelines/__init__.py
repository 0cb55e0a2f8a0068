"""Game timelines (Neople Dungeon&Fighter): daily KST partitions of character timelines
-> parquet in the object store and `raw.neople_timeline_events` -> dbt staging and marts,
with e-mail and chat notices per run."""

from signalbox.assets.game_timelines.neople import NeopleResource
from signalbox.assets.game_timelines.raw import GROUP, NEOPLE_DAILY, RAW_TIMELINE_EVENTS

__all__ = ["GROUP", "NEOPLE_DAILY", "RAW_TIMELINE_EVENTS", "NeopleResource"]
