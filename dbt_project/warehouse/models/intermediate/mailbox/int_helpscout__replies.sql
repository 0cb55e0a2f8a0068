{#-
    One row per customer message that got a reply: the customer thread paired with the
    first user reply created strictly after it in the same conversation (several customer
    messages before one reply all pair with that reply). Calendar minutes are wall-clock;
    business minutes count only the time inside int_business_calendar's business intervals
    (range intersection per local day between the two instants).
-#}
with threads as (

    select * from {{ ref('int_helpscout__threads_classified') }}
    where is_customer_message or is_user_reply

),

sequenced as (

    -- replies numbered in time order; at equal timestamps a reply sorts before the
    -- customer message, so it does not count as "later"
    select
        *,
        count(*) filter (where is_user_reply) over (
            partition by conversation_id
            order by created_at asc, is_user_reply desc, thread_id asc
            rows between unbounded preceding and current row
        ) as replies_so_far,
        case
            when is_customer_message
                then row_number() over (
                    partition by conversation_id, is_customer_message
                    order by created_at, thread_id
                )
        end as customer_message_seq

    from threads

),

customer_messages as (

    select * from sequenced where is_customer_message

),

user_replies as (

    select * from sequenced where is_user_reply

),

pairs as (

    select
        customer_messages.thread_id as customer_thread_id,
        customer_messages.conversation_id,
        customer_messages.mailbox_id,
        customer_messages.customer_message_seq = 1 as is_first_customer_message,
        customer_messages.created_at as customer_message_at,
        user_replies.thread_id as reply_thread_id,
        user_replies.created_at as replied_at

    from customer_messages
    inner join user_replies
        on user_replies.conversation_id = customer_messages.conversation_id
        and user_replies.replies_so_far = customer_messages.replies_so_far + 1

),

pair_days as (

    -- each local day the wait touches, intersected with that day's business interval
    select
        pairs.customer_thread_id,
        calendar.calendar_date,
        calendar.business_hours * tstzrange(pairs.customer_message_at, pairs.replied_at, '[)')
            as business_overlap

    from pairs
    cross join
        lateral generate_series(
            0,
            {{ to_business_date('pairs.replied_at') }}
            - {{ to_business_date('pairs.customer_message_at') }}
        ) as day_offset
    left join {{ ref('int_business_calendar') }} as calendar
        on calendar.calendar_date = {{ to_business_date('pairs.customer_message_at') }} + day_offset

),

business_time as (

    select
        customer_thread_id,
        -- null (caught by a not_null test) if the calendar misses one of the days
        case
            when count(*) = count(calendar_date)
                then coalesce(
                    sum(
                        extract(epoch from (upper(business_overlap) - lower(business_overlap))) / 60
                    ),
                    0
                )
        end as response_business_minutes

    from pair_days
    group by customer_thread_id

)

select
    pairs.customer_thread_id,
    pairs.conversation_id,
    pairs.mailbox_id,
    pairs.is_first_customer_message,
    pairs.customer_message_at,
    pairs.reply_thread_id,
    pairs.replied_at,
    {{ minutes_between('pairs.customer_message_at', 'pairs.replied_at') }} as response_minutes,
    business_time.response_business_minutes

from pairs
left join business_time
    on business_time.customer_thread_id = pairs.customer_thread_id
