{#-
    One row per customer message that got a user reply (Help Scout's "response time"
    population), with calendar and business minutes and the local day of the reply.
-#}
select
    customer_thread_id,
    conversation_id,
    mailbox_id,
    customer_message_at,
    reply_thread_id,
    replied_at,
    {{ to_business_date('replied_at') }} as replied_date_local,
    is_first_customer_message as is_first_response,
    response_minutes,
    response_business_minutes

from {{ ref('int_helpscout__replies') }}
