-- A reply comes strictly after the customer message it answers, in the same conversation
-- and mailbox, and is a user reply (not a note, line item or draft).
select responses.customer_thread_id
from {{ ref('fct_helpscout__responses') }} as responses
inner join {{ ref('int_helpscout__threads_classified') }} as reply
    on reply.thread_id = responses.reply_thread_id
where responses.replied_at <= responses.customer_message_at
    or reply.conversation_id <> responses.conversation_id
    or not reply.is_user_reply
