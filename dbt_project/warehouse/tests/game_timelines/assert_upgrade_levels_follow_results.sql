-- Reinforcement and amplification: a success raises the item's level by exactly one; a
-- failure never raises it.
select event_id, timeline_code, is_success, level_before, level_after
from {{ ref('fct_game_timeline_events') }}
where event_category in ('reinforcement', 'amplification')
    and (
        level_before is null
        or level_after is null
        or is_success is null
        or (is_success and level_after <> level_before + 1)
        or (not is_success and level_after > level_before)
    )
