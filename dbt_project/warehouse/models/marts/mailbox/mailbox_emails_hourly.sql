{#-
    Per mailbox and local hour (business timezone): customer emails received, user replies
    sent and conversations created. Dense (zero-filled) from the mailbox's first to its last
    hour of activity, for the IQR anomaly check on arrivals. Hours are real hours: a
    spring-forward day has 23 rows, a fall-back day 25 (two with hour_of_day 2).
-#}
with threads as (

    select * from {{ ref('int_helpscout__threads_classified') }}

),

conversations as (

    select
        mailbox_id,
        {{ business_hour_start('created_at') }} as created_hour_start
    from {{ ref('stg_helpscout__conversations') }}
    where created_at is not null

),

thread_counts as (

    select
        mailbox_id,
        created_hour_start as hour_start,
        count(*) filter (where is_customer_message) as emails_received,
        count(*) filter (where is_user_reply) as emails_answered
    from threads
    group by mailbox_id, created_hour_start

),

conversation_counts as (

    select
        mailbox_id,
        created_hour_start as hour_start,
        count(*) as conversations_created
    from conversations
    group by mailbox_id, created_hour_start

),

activity_hours as (

    select mailbox_id, hour_start from thread_counts where emails_received + emails_answered > 0
    union all
    select mailbox_id, hour_start from conversation_counts

),

spine as (

    -- timestamptz + interval '1 hour' is exact (no day arithmetic), so DST is harmless
    select
        bounds.mailbox_id,
        hour_start
    from (
        select mailbox_id, min(hour_start) as first_hour, max(hour_start) as last_hour
        from activity_hours
        group by mailbox_id
    ) as bounds
    cross join lateral generate_series(
        bounds.first_hour, bounds.last_hour, interval '1 hour'
    ) as hour_start

)

select
    spine.mailbox_id,
    mailboxes.mailbox_name,
    spine.hour_start,
    {{ to_business_date('spine.hour_start') }} as day,
    extract(hour from {{ to_business_local('spine.hour_start') }})::int as hour_of_day,
    extract(isodow from {{ to_business_local('spine.hour_start') }})::int as day_of_week,
    coalesce(thread_counts.emails_received, 0) as emails_received,
    coalesce(thread_counts.emails_answered, 0) as emails_answered,
    coalesce(conversation_counts.conversations_created, 0) as conversations_created

from spine
left join thread_counts
    on thread_counts.mailbox_id = spine.mailbox_id
    and thread_counts.hour_start = spine.hour_start
left join conversation_counts
    on conversation_counts.mailbox_id = spine.mailbox_id
    and conversation_counts.hour_start = spine.hour_start
left join {{ ref('stg_helpscout__mailboxes') }} as mailboxes
    on mailboxes.mailbox_id = spine.mailbox_id
