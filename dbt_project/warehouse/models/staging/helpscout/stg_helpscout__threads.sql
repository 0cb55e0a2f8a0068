{#- One row per thread, unnested from each conversation's `_embedded.threads[]`. -#}
with conversations as (

    select * from {{ source('helpscout', 'conversations') }}

),

unnested as (

    select
        conversations.id as conversation_id,
        conversations.mailbox_id,
        thread.value as thread,
        thread.ordinality as position_in_payload

    from conversations
    cross join lateral jsonb_array_elements(
        case
            when jsonb_typeof(conversations.payload -> '_embedded' -> 'threads') = 'array'
                then conversations.payload -> '_embedded' -> 'threads'
            else '[]'::jsonb
        end
    ) with ordinality as thread (value, ordinality)

),

renamed as (

    select
        {{ json_bigint("thread -> 'id'") }} as thread_id,
        conversation_id,
        mailbox_id,
        position_in_payload,
        thread ->> 'type' as thread_type,
        thread ->> 'status' as thread_status,
        thread ->> 'state' as thread_state,
        thread -> 'action' ->> 'type' as action_type,
        thread -> 'source' ->> 'type' as source_type,
        thread -> 'source' ->> 'via' as source_via,
        {{ json_bigint("thread -> 'createdBy' -> 'id'") }} as created_by_id,
        thread -> 'createdBy' ->> 'type' as created_by_type,
        {{ json_bigint("thread -> 'customer' -> 'id'") }} as customer_id,
        {{ json_bigint("thread -> 'assignedTo' -> 'id'") }} as assigned_to_id,
        (thread ->> 'createdAt')::timestamptz as created_at,
        (thread ->> 'openedAt')::timestamptz as opened_at

    from unnested

)

select * from renamed
