{#- Clears per character, KST day and dungeon or raid. -#}
select
    activity_date,
    server_id,
    character_id,
    case event_category when 'dungeon_clear' then 'dungeon' else 'raid' end as content_type,
    cleared_content_name as content_name,
    count(*) as clears,
    count(*) filter (where is_hard) as hard_clears,
    min(occurred_at_kst) as first_clear_at_kst,
    max(occurred_at_kst) as last_clear_at_kst

from {{ ref('fct_game_timeline_events') }}
where event_category in ('dungeon_clear', 'raid_clear')
group by 1, 2, 3, 4, 5
