{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        partition_by='event_date',
        order_by=['event_date'],
        pre_hook="{{ drop_days_without_events() }}",
    )
}}
-- The daily report's numbers, one row per day, from the per-user day table.

with users as (
    select
        event_date,
        views as user_views,
        likes as user_likes,
        messages_sent as user_messages_sent,
        messages_received as user_messages_received
    from {{ ref('int_activity__user_daily') }}
    where {{ in_window('event_date') }}
),

daily as (
    select
        event_date,
        countIf(user_views + user_likes > 0 or user_messages_sent > 0) as dau_app,
        countIf(user_views + user_likes > 0) as dau_feed,
        countIf(user_messages_sent > 0) as dau_messenger,
        sum(user_views) as views,
        sum(user_likes) as likes,
        sum(user_messages_sent) as messages_sent,
        countIf(user_messages_received > 0) as message_receivers
    from users
    group by event_date
)

select
    event_date,
    dau_app,
    dau_feed,
    dau_messenger,
    views,
    likes,
    if(views = 0, null, likes / views) as ctr,
    messages_sent,
    message_receivers,
    -- every message has one sender and one receiver, so a count ratio is always 1; the
    -- report's sent/received ratio compares the people: senders per receiver
    if(message_receivers = 0, null, dau_messenger / message_receivers) as sent_received_ratio
from daily
