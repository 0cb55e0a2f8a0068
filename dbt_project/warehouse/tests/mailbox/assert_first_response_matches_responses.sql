-- A conversation is replied exactly when its first customer message has a response row,
-- and its first-response minutes are that row's.
select conversations.conversation_id
from {{ ref('fct_helpscout__conversations') }} as conversations
left join {{ ref('fct_helpscout__responses') }} as responses
    on responses.conversation_id = conversations.conversation_id
    and responses.is_first_response
where conversations.is_replied <> (responses.customer_thread_id is not null)
    or conversations.first_response_minutes is distinct from responses.response_minutes
    or (
        conversations.first_response_business_minutes
        is distinct from responses.response_business_minutes
    )
