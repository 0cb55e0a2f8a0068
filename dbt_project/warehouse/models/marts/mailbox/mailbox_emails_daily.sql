{#-
    Per mailbox and local day (business timezone): customer emails received, user replies
    sent and conversations created. Dense: every day between the mailbox's first and last
    day of activity has a row, zero when nothing happened.
-#}
with threads as (

    select * from {{ ref('int_helpscout__threads_classified') }}

),

conversations as (

    select
        mailbox_id,
        {{ to_business_date('created_at') }} as created_date_local
    from {{ ref('stg_helpscout__conversations') }}
    where created_at is not null

),

thread_counts as (

    select
        mailbox_id,
        created_date_local as day,
        count(*) filter (where is_customer_message) as emails_received,
        count(*) filter (where is_user_reply) as emails_answered
    from threads
    group by 1, 2

),

conversation_counts as (

    select
        mailbox_id,
        created_date_local as day,
        count(*) as conversations_created
    from conversations
    group by 1, 2

),

activity_days as (

    select mailbox_id, day from thread_counts where emails_received + emails_answered > 0
    union all
    select mailbox_id, day from conversation_counts

),

spine as (

    select
        bounds.mailbox_id,
        (bounds.first_day + day_offset)::date as day
    from (
        select mailbox_id, min(day) as first_day, max(day) as last_day
        from activity_days
        group by mailbox_id
    ) as bounds
    cross join lateral generate_series(0, bounds.last_day - bounds.first_day) as day_offset

)

select
    spine.mailbox_id,
    mailboxes.mailbox_name,
    spine.day,
    extract(isodow from spine.day)::int as day_of_week,
    calendar.is_business_day,
    coalesce(thread_counts.emails_received, 0) as emails_received,
    coalesce(thread_counts.emails_answered, 0) as emails_answered,
    coalesce(conversation_counts.conversations_created, 0) as conversations_created

from spine
left join thread_counts
    on thread_counts.mailbox_id = spine.mailbox_id
    and thread_counts.day = spine.day
left join conversation_counts
    on conversation_counts.mailbox_id = spine.mailbox_id
    and conversation_counts.day = spine.day
left join {{ ref('stg_helpscout__mailboxes') }} as mailboxes
    on mailboxes.mailbox_id = spine.mailbox_id
left join {{ ref('int_business_calendar') }} as calendar
    on calendar.calendar_date = spine.day
