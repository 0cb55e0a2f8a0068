-- Feed actions with dbt-style names; a view, so a window filter on event_date reaches the
-- source's partitions and primary key.
select
    user_id,
    post_id,
    toString(action) as action,
    time as event_time,
    toDate(time) as event_date,
    gender,
    age,
    country,
    city,
    os,
    source as traffic_source,
    exp_group
from {{ source('activity', 'feed_actions') }}
