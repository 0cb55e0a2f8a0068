{#-
    One row per Neople timeline row: renamed, the KST minute cast, and the `data` keys the
    marts use extracted (the whole object stays in `event_data`). Until the first day is
    loaded the raw table does not exist yet: the model is then empty instead of failing the
    warehouse project's `dbt build`, which every domain shares.
-#}
{%- set raw = source('neople', 'timeline_events') -%}
{%- set loaded = not execute
    or adapter.get_relation(raw.database, raw.schema, raw.identifier) is not none -%}
{%- set booleans = {'hard': 'is_hard', 'single': 'is_single', 'matching': 'is_matching',
                    'mistGear': 'is_mist_gear', 'result': 'is_success', 'safe': 'is_safe'} -%}

with source as (

    {%- if loaded %}

    select * from {{ raw }}

    {%- else %}

    select
        null::date as day, null::text as server_id, null::text as character_id,
        null::text as character_name, null::integer as seq, null::integer as code,
        null::text as name, null::text as "date", null::jsonb as data, null::jsonb as extra,
        null::timestamptz as loaded_at
    where false

    {%- endif %}

),

renamed as (

    select
        md5(character_id || '|' || day::text || '|' || seq::text) as event_id,
        day as partition_date,
        server_id,
        character_id,
        character_name,
        seq as position_in_day,
        code as timeline_code,
        name as timeline_code_name,
        -- KST has no daylight saving time: the wall clock and the instant map one to one
        "date"::timestamp as occurred_at_kst,
        "date"::timestamp at time zone 'Asia/Seoul' as occurred_at,
        data ->> 'itemId' as item_id,
        data ->> 'itemName' as item_name,
        data ->> 'itemRarity' as item_rarity,
        data ->> 'dungeonName' as dungeon_name,
        data ->> 'raidName' as raid_name,
        data ->> 'raidPartyName' as raid_party_name,
        data ->> 'regionName' as region_name,
        data ->> 'channelName' as channel_name,
        {{ json_bigint("data -> 'channelNo'") }} as channel_no,
        data ->> 'modeName' as mode_name,
        {%- for key, column in booleans.items() %}
        case
            when jsonb_typeof(data -> '{{ key }}') = 'boolean' then (data -> '{{ key }}')::boolean
        end as {{ column }},
        {%- endfor %}
        {{ json_bigint("data -> 'before'") }} as level_before,
        {{ json_bigint("data -> 'after'") }} as level_after,
        data ->> 'cardItemName' as card_item_name,
        data as event_data,
        extra as extra_fields,
        loaded_at

    from source

)

select * from renamed
