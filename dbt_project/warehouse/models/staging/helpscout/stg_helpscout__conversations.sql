with source as (

    select * from {{ source('helpscout', 'conversations') }}

),

renamed as (

    select
        id as conversation_id,
        {{ json_bigint("payload -> 'number'") }} as conversation_number,
        mailbox_id,
        payload ->> 'type' as conversation_type,
        payload ->> 'status' as status,
        payload ->> 'state' as state,
        payload ->> 'subject' as subject,
        {{ json_bigint("payload -> 'threads'") }} as thread_count,
        {{ json_bigint("payload -> 'assignee' -> 'id'") }} as assignee_id,
        {{ json_bigint("payload -> 'createdBy' -> 'id'") }} as created_by_id,
        payload -> 'createdBy' ->> 'type' as created_by_type,
        {{ json_bigint("payload -> 'primaryCustomer' -> 'id'") }} as primary_customer_id,
        payload -> 'source' ->> 'type' as source_type,
        payload -> 'source' ->> 'via' as source_via,
        (
            select array_agg(tag ->> 'tag' order by tag ->> 'tag')
            from
                jsonb_array_elements(
                    case
                        when jsonb_typeof(source.payload -> 'tags') = 'array'
                            then source.payload -> 'tags'
                        else '[]'::jsonb
                    end
                ) as tag
        ) as tags,
        (payload ->> 'createdAt')::timestamptz as created_at,
        (payload ->> 'closedAt')::timestamptz as closed_at,
        {{ json_bigint("payload -> 'closedBy'") }} as closed_by_id,
        (payload ->> 'userUpdatedAt')::timestamptz as user_updated_at,
        (payload -> 'customerWaitingSince' ->> 'time')::timestamptz as customer_waiting_since,
        payload_md5,
        first_loaded_at,
        loaded_at

    from source

)

select * from renamed
