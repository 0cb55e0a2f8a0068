{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        partition_by='event_date',
        order_by=['event_date', 'user_id'],
        pre_hook="{{ drop_days_without_events() }}",
        query_settings={
            'group_by_two_level_threshold': 0,
            'group_by_two_level_threshold_bytes': 0,
        },
    )
}}
{#- query_settings: single-level hash tables. ~200 k users a day is past the 100 k keys at
    which ClickHouse splits each thread's table into 256 buckets; at this size that cost
    ~70 MB of peak memory and some time and bought nothing (notes/chdb.md). -#}
-- One row per user and day with the user's own metrics and profile: the grain the daily
-- dimensions and the KPIs are summed from. The three per-user aggregates (feed, messages
-- sent, messages received) are stacked and summed rather than joined, so each source is
-- scanned once per aggregate and a user present in only one of them needs no outer-join
-- defaults.
--
-- The profile is the user's latest own row of the day (feed or sent message). Profiles
-- are per-user attributes: constant through a day in the generator and in the product
-- the seed read, so almost every user has one profile; the latest row still decides when
-- one changes (a user who updated their app that day). Picking it with an argMax per
-- column (strings included) was most of this model's cost; instead each own row packs
-- (time, os, gender, age) into one UInt64 (half the CPU at 10 M rows; notes/chdb.md)
--     unix seconds (32 bits) | os number (16) | gender (8) | age (8)
-- and the user's max of it is their latest row, profile included (ties within one second
-- go to the highest packed profile, so the result is deterministic). `os` becomes its
-- position in the sorted list of the window's os values (`os_values`, from a distinct
-- scan of that LowCardinality column, which reads its dictionary-coded values only);
-- gender and age are UInt8 in the sources, and accurateCast fails loudly rather than
-- packing a wider value wrong.

with (
    select arraySort(arrayMap(value -> toString(value), groupArray(os)))
    from (
        select distinct os
        from {{ ref('stg_activity__feed_actions') }}
        where {{ in_window('event_date') }}
        union distinct
        select distinct sender_os as os
        from {{ ref('stg_activity__message_actions') }}
        where {{ in_window('event_date') }}
    )
) as os_values,

feed as (
    select
        event_date,
        user_id,
        countIf(action = 'view') as views,
        countIf(action = 'like') as likes,
        toUInt64(0) as messages_sent,
        toUInt64(0) as users_sent,
        toUInt64(0) as messages_received,
        toUInt64(0) as users_received,
        max(
            bitShiftLeft(toUInt64(toUnixTimestamp(event_time)), 32)
            + bitShiftLeft(
                toUInt64(transform(os, os_values, arrayEnumerate(os_values), 0)), 16
            )
            + bitShiftLeft(toUInt64(accurateCast(gender, 'UInt8')), 8)
            + accurateCast(age, 'UInt8')
        ) as profile
    from {{ ref('stg_activity__feed_actions') }}
    where {{ in_window('event_date') }}
    group by event_date, user_id
),

sent as (
    select
        event_date,
        sender_user_id as user_id,
        toUInt64(0) as views,
        toUInt64(0) as likes,
        count() as messages_sent,
        uniqExact(receiver_user_id) as users_sent,
        toUInt64(0) as messages_received,
        toUInt64(0) as users_received,
        max(
            bitShiftLeft(toUInt64(toUnixTimestamp(event_time)), 32)
            + bitShiftLeft(
                toUInt64(transform(sender_os, os_values, arrayEnumerate(os_values), 0)), 16
            )
            + bitShiftLeft(toUInt64(accurateCast(sender_gender, 'UInt8')), 8)
            + accurateCast(sender_age, 'UInt8')
        ) as profile
    from {{ ref('stg_activity__message_actions') }}
    where {{ in_window('event_date') }}
    group by event_date, user_id
),

received as (
    -- a message row carries the sender's profile, never the receiver's: profile 0 = none
    -- (an own row always packs a nonzero os number)
    select
        event_date,
        receiver_user_id as user_id,
        toUInt64(0) as views,
        toUInt64(0) as likes,
        toUInt64(0) as messages_sent,
        toUInt64(0) as users_sent,
        count() as messages_received,
        uniqExact(sender_user_id) as users_received,
        toUInt64(0) as profile
    from {{ ref('stg_activity__message_actions') }}
    where {{ in_window('event_date') }}
    group by event_date, user_id
),

stacked as (
    select * from feed
    union all
    select * from sent
    union all
    select * from received
),

per_user as (
    select
        event_date,
        user_id,
        max(profile) as own_profile,
        sum(views) as views,
        sum(likes) as likes,
        sum(messages_sent) as messages_sent,
        sum(users_sent) as users_sent,
        sum(messages_received) as messages_received,
        sum(users_received) as users_received
    from stacked
    group by event_date, user_id
)

select
    event_date,
    user_id,
    own_profile > 0 as has_own_profile,
    -- users seen only as receivers that day have no profile of their own: 'unknown'
    if(has_own_profile, os_values[bitAnd(bitShiftRight(own_profile, 16), 65535)], 'unknown') as os,
    if(has_own_profile, toString(bitAnd(bitShiftRight(own_profile, 8), 255)), 'unknown') as gender,
    if(has_own_profile, toString(bitAnd(own_profile, 255)), 'unknown') as age,
    views,
    likes,
    messages_sent,
    users_sent,
    messages_received,
    users_received
from per_user
-- the os number has 16 bits
where throwIf(length(os_values) > 65535, 'more than 65535 distinct os values in the window') = 0
