{#-
    Threads with the two roles the mailbox metrics count, decided once:
    - a customer message is a thread of type `customer`;
    - a user reply is a published (non-draft) thread of type `message` written by a user
      (API v2 reports AI users as `user`). Notes and line items are never replies.
    Plus the thread's local date and local hour in the business timezone.
-#}
with threads as (

    select * from {{ ref('stg_helpscout__threads') }}

)

select
    thread_id,
    conversation_id,
    mailbox_id,
    thread_type,
    thread_state,
    created_by_type,
    created_at,
    thread_type = 'customer' as is_customer_message,
    (
        thread_type = 'message'
        and created_by_type = 'user'
        and coalesce(thread_state, 'published') <> 'draft'
    ) as is_user_reply,
    {{ to_business_date('created_at') }} as created_date_local,
    {{ business_hour_start('created_at') }} as created_hour_start

from threads
where created_at is not null
