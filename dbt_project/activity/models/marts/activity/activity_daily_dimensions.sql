{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        partition_by='event_date',
        order_by=['event_date', 'dimension', 'dimension_value'],
        pre_hook="{{ drop_days_without_events() }}",
    )
}}
-- The seed's daily table, column for column: each user's day (feed views and likes,
-- messages sent and received) summed by the user's own os, gender and age. Every user
-- counts once per dimension, so each dimension's rows add up to the day's totals.

select
    event_date,
    dimension_pair.1 as dimension,
    dimension_pair.2 as dimension_value,
    sum(views) as views,
    sum(likes) as likes,
    sum(messages_received) as messages_received,
    sum(messages_sent) as messages_sent,
    sum(users_received) as users_received,
    sum(users_sent) as users_sent
from {{ ref('int_activity__user_daily') }}
-- one pass over the users: each row fans out to its three (dimension, value) pairs
array join [('os', os), ('gender', gender), ('age', age)] as dimension_pair
where {{ in_window('event_date') }}
group by event_date, dimension, dimension_value
