{#- One row per timeline event, classified by the code and rarity seeds (unknown codes kept
    as category `unknown`). -#}
with events as (

    select * from {{ ref('stg_neople__timeline_events') }}

),

codes as (

    select * from {{ ref('neople_timeline_codes') }}

),

rarities as (

    select * from {{ ref('neople_item_rarities') }}

)

select
    events.event_id,
    events.partition_date as activity_date,
    events.occurred_at,
    events.occurred_at_kst,
    events.server_id,
    events.character_id,
    events.character_name,
    events.position_in_day,
    events.timeline_code,
    events.timeline_code_name,
    coalesce(codes.event_category, 'unknown') as event_category,
    codes.code is not null as is_known_code,
    coalesce(codes.is_drop, false) as is_drop,
    events.item_id,
    events.item_name,
    events.item_rarity,
    rarities.rarity_key,
    rarities.rarity_rank,
    case
        when codes.event_category = 'dungeon_clear' then events.dungeon_name
        when codes.event_category = 'raid_clear' then events.raid_name
    end as cleared_content_name,
    events.dungeon_name,
    events.raid_name,
    events.mode_name,
    events.is_hard,
    events.is_success,
    events.level_before,
    events.level_after,
    events.event_data

from events
left join codes
    on codes.code = events.timeline_code
left join rarities
    on rarities.rarity_name = events.item_rarity
