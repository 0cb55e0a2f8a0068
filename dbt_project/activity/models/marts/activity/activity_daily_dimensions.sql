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
-- messages sent and received) summed by the user's os, gender and age. Every user counts
-- once per dimension, so each dimension's rows add up to the day's totals.
--
-- A user with no row of their own that day (seen only as a message's receiver: a message
-- carries the sender's profile) takes their latest profile from an earlier day: the user
-- dimension is int_activity__user_daily's own-profile rows, one per user and day they
-- acted, joined "as of" the day (ASOF JOIN: the latest profile_date before it). 'unknown'
-- is left for users never seen with a profile up to that day; a day's breakdown does not
-- change when later days arrive.

{%- set metrics -%}
    sum(views) as views,
    sum(likes) as likes,
    sum(messages_received) as messages_received,
    sum(messages_sent) as messages_sent,
    sum(users_received) as users_received,
    sum(users_sent) as users_sent
{%- endset %}

with days as (
    select *
    from {{ ref('int_activity__user_daily') }}
    where {{ in_window('event_date') }}
),

-- the profile history of only the users the window has without a profile of their own
profile_history as (
    select
        user_id,
        event_date as profile_date,
        os as history_os,
        gender as history_gender,
        age as history_age
    from {{ ref('int_activity__user_daily') }}
    where
        has_own_profile
        and event_date < {{ window_max_date() }}
        and user_id in (select days.user_id from days where not days.has_own_profile)
),

users as (
    select
        days.*,
        -- unmatched, the ASOF LEFT JOIN leaves profile_date at its default, 1970-01-01
        history.profile_date > toDate(0) as has_earlier_profile,
        multiIf(
            days.has_own_profile, days.os, has_earlier_profile, history.history_os, 'unknown'
        ) as user_os,
        multiIf(
            days.has_own_profile, days.gender, has_earlier_profile, history.history_gender,
            'unknown'
        ) as user_gender,
        multiIf(
            days.has_own_profile, days.age, has_earlier_profile, history.history_age, 'unknown'
        ) as user_age
    from days
    asof left join profile_history as history
        on history.user_id = days.user_id and history.profile_date < days.event_date
)

-- one GROUP BY per dimension over the per-user rows (~200 k a day): three small scans of
-- their columns measured faster than fanning each row out to three with ARRAY JOIN

{% for dimension in ['os', 'gender', 'age'] -%}
select
    event_date,
    '{{ dimension }}' as dimension,
    user_{{ dimension }} as dimension_value,
    {{ metrics }}
from users
group by event_date, user_{{ dimension }}
{% if not loop.last %}
union all

{% endif -%}
{%- endfor %}
