{#- One row per character and KST day with at least one event: drops by rarity, clears,
    upgrades and how long the character played. -#}
{%- set rarity_keys = ['common', 'uncommon', 'rare', 'unique', 'legendary', 'epic', 'primeval'] -%}

select
    activity_date,
    server_id,
    character_id,
    -- the name the character had that day (names can change; ids do not)
    max(character_name) as character_name,
    count(*) as events,
    count(*) filter (where event_category = 'item_acquisition') as items_acquired,
    count(*) filter (where is_drop) as drops,
    {%- for key in rarity_keys %}
    count(*) filter (where is_drop and rarity_key = '{{ key }}') as drops_{{ key }},
    {%- endfor %}
    count(*) filter (where is_drop and rarity_key is null) as drops_unknown_rarity,
    count(*) filter (where is_drop and rarity_rank >= 6) as drops_epic_or_better,
    count(*) filter (where event_category = 'dungeon_clear') as dungeon_clears,
    count(distinct cleared_content_name) filter (
        where event_category = 'dungeon_clear'
    ) as dungeons_cleared,
    count(*) filter (where event_category = 'raid_clear') as raid_clears,
    count(*) filter (
        where event_category in ('dungeon_clear', 'raid_clear') and is_hard
    ) as hard_clears,
    count(*) filter (where event_category = 'reinforcement') as reinforcements,
    count(*) filter (where event_category = 'amplification') as amplifications,
    count(*) filter (
        where event_category in ('reinforcement', 'amplification') and is_success
    ) as successful_upgrades,
    count(*) filter (where event_category = 'enchantment') as enchantments,
    count(*) filter (where event_category = 'unknown') as unknown_events,
    count(distinct date_trunc('hour', occurred_at_kst)) as active_hours,
    min(occurred_at_kst) as first_event_at_kst,
    max(occurred_at_kst) as last_event_at_kst

from {{ ref('fct_game_timeline_events') }}
group by activity_date, server_id, character_id
