with source as (

    select * from {{ source('helpscout', 'mailboxes') }}

),

renamed as (

    select
        id as mailbox_id,
        payload ->> 'name' as mailbox_name,
        payload ->> 'slug' as mailbox_slug,
        payload ->> 'email' as mailbox_email,
        (payload ->> 'createdAt')::timestamptz as created_at,
        (payload ->> 'updatedAt')::timestamptz as updated_at,
        payload_md5,
        first_loaded_at,
        loaded_at

    from source

)

select * from renamed
