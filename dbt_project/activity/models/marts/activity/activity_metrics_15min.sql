{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        partition_by='bucket_date',
        order_by=['bucket_start'],
        pre_hook="{{ drop_days_without_events('bucket_date') }}",
    )
}}
-- Feed and messenger activity per 15-minute bucket, the series the IQR checks watch.
-- Each day has every bucket from midnight to its latest event's bucket, zeros included,
-- so an outage reads as a drop instead of a gap; the spine depends on the day's own data
-- only, so a day comes out the same whichever window rebuilds it.

with feed as (
    select
        toStartOfFifteenMinutes(event_time) as bucket_start,
        uniqExact(user_id) as feed_active_users,
        countIf(action = 'view') as views,
        countIf(action = 'like') as likes
    from {{ ref('stg_activity__feed_actions') }}
    where {{ in_window('event_date') }}
    group by bucket_start
),

messages as (
    select
        toStartOfFifteenMinutes(event_time) as bucket_start,
        uniqExact(sender_user_id) as messenger_active_users,
        count() as messages_sent
    from {{ ref('stg_activity__message_actions') }}
    where {{ in_window('event_date') }}
    group by bucket_start
),

spine as (
    select toStartOfDay(last_bucket) + toIntervalMinute(15 * bucket_number) as bucket_start
    from (
        select max(bucket_start) as last_bucket
        from (
            select bucket_start from feed
            union all
            select bucket_start from messages
        ) as all_buckets
        group by toDate(bucket_start)
    ) as last_buckets
    array join range(toUInt32(dateDiff('minute', toStartOfDay(last_bucket), last_bucket) / 15) + 1)
        as bucket_number
)

-- coalesce: a bucket without events is 0 whatever the server's join_use_nulls says
select
    toDate(spine.bucket_start) as bucket_date,
    -- named explicitly: ClickHouse may name a joined table's column by its qualified name
    spine.bucket_start as bucket_start,  -- noqa: AL09
    spine.bucket_start + toIntervalMinute(15) as bucket_end,
    coalesce(feed.feed_active_users, 0) as feed_active_users,
    coalesce(feed.views, 0) as views,
    coalesce(feed.likes, 0) as likes,
    if(views = 0, null, likes / views) as ctr,
    coalesce(messages.messenger_active_users, 0) as messenger_active_users,
    coalesce(messages.messages_sent, 0) as messages_sent
from spine
left join feed on feed.bucket_start = spine.bucket_start
left join messages on messages.bucket_start = spine.bucket_start
