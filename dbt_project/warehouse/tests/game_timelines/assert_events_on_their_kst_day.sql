-- A KST day's partition holds that day's events only (00:00..23:59 KST): a day is never
-- mixed with another, whatever the session's time zone.
select event_id, activity_date, occurred_at_kst
from {{ ref('fct_game_timeline_events') }}
where occurred_at_kst::date <> activity_date
    or (occurred_at at time zone 'Asia/Seoul') <> occurred_at_kst
