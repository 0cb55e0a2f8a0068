{#-
    One row per conversation, with its first-response time: from the first customer
    message to the first user reply after it, in calendar minutes and in business minutes.
-#}
with conversations as (

    select * from {{ ref('stg_helpscout__conversations') }}

),

threads as (

    select * from {{ ref('int_helpscout__threads_classified') }}

),

thread_counts as (

    select
        conversation_id,
        count(*) filter (where is_customer_message) as customer_messages,
        count(*) filter (where is_user_reply) as user_replies,
        min(created_at) filter (where is_customer_message) as first_customer_message_at

    from threads
    group by conversation_id

),

first_responses as (

    select * from {{ ref('int_helpscout__replies') }}
    where is_first_customer_message

)

select
    conversations.conversation_id,
    conversations.conversation_number,
    conversations.mailbox_id,
    conversations.conversation_type,
    conversations.status,
    conversations.state,
    conversations.source_type,
    conversations.tags,
    conversations.created_at,
    {{ to_business_date('conversations.created_at') }} as created_date_local,
    conversations.closed_at,
    coalesce(thread_counts.customer_messages, 0) as customer_messages,
    coalesce(thread_counts.user_replies, 0) as user_replies,
    thread_counts.first_customer_message_at,
    first_responses.reply_thread_id as first_reply_thread_id,
    first_responses.replied_at as first_reply_at,
    first_responses.response_minutes as first_response_minutes,
    first_responses.response_business_minutes as first_response_business_minutes,
    first_responses.customer_thread_id is not null as is_replied

from conversations
left join thread_counts
    on thread_counts.conversation_id = conversations.conversation_id
left join first_responses
    on first_responses.conversation_id = conversations.conversation_id
