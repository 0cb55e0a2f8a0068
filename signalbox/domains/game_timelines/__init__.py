"""Game timelines (Neople Dungeon&Fighter): daily KST partitions of character timelines
-> parquet in the object store and `raw.neople_timeline_events` -> dbt staging and marts,
with e-mail and chat notices after each run."""

GROUP = "game_timelines"
PRODUCTION_VARIABLES = {
    "NEOPLE_API_KEY": "Neople Open API key",
    "NEOPLE_CHARACTERS": "the characters to follow, serverId:characterId,...",
}
