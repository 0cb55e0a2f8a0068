-- Per character and KST day, the daily mart counts exactly the fact's events: all events,
-- drops (and their rarities add up to the drops), and the clears of the clears mart.
with facts as (

    select activity_date, character_id, count(*) as events, count(*) filter (where is_drop) as drops
    from {{ ref('fct_game_timeline_events') }}
    group by 1, 2

),

clears as (

    select
        activity_date,
        character_id,
        sum(clears) filter (where content_type = 'dungeon') as dungeon_clears,
        sum(clears) filter (where content_type = 'raid') as raid_clears
    from {{ ref('game_content_clears_daily') }}
    group by 1, 2

)

select
    coalesce(daily.activity_date, facts.activity_date) as activity_date,
    coalesce(daily.character_id, facts.character_id) as character_id
from {{ ref('game_character_daily') }} as daily
full outer join facts
    on facts.activity_date = daily.activity_date
    and facts.character_id = daily.character_id
left join clears
    on clears.activity_date = daily.activity_date
    and clears.character_id = daily.character_id
where daily.character_id is null
    or coalesce(facts.events, 0) <> daily.events
    or coalesce(facts.drops, 0) <> daily.drops
    or daily.drops <> (
        daily.drops_common + daily.drops_uncommon + daily.drops_rare
        + daily.drops_unique + daily.drops_legendary + daily.drops_epic + daily.drops_primeval
        + daily.drops_unknown_rarity
    )
    or coalesce(clears.dungeon_clears, 0) <> daily.dungeon_clears
    or coalesce(clears.raid_clears, 0) <> daily.raid_clears
