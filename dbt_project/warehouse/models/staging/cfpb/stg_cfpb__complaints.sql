{#-
    One row per CFPB complaint: `_source` fields renamed and cast. Dates arrive as noon
    with a fixed -05:00 offset, so the calendar date is their first ten characters.
-#}
with source as (

    select * from {{ source('cfpb', 'complaints') }}

),

renamed as (

    select
        complaint_id,
        date_received,
        case
            when payload ->> 'date_sent_to_company' ~ '^\d{4}-\d{2}-\d{2}'
                then left(payload ->> 'date_sent_to_company', 10)::date
        end as date_sent_to_company,
        payload ->> 'product' as product,
        payload ->> 'sub_product' as sub_product,
        payload ->> 'issue' as issue,
        payload ->> 'sub_issue' as sub_issue,
        payload ->> 'company' as company,
        payload ->> 'state' as state,
        payload ->> 'zip_code' as zip_code,
        payload ->> 'submitted_via' as submitted_via,
        payload ->> 'company_response' as company_response,
        payload ->> 'company_public_response' as company_public_response,
        payload ->> 'timely' as timely,
        payload ->> 'tags' as tags,
        case
            when jsonb_typeof(payload -> 'has_narrative') = 'boolean'
                then (payload ->> 'has_narrative')::boolean
        end as has_narrative,
        nullif(payload ->> 'complaint_what_happened', '') as complaint_narrative,
        payload_md5,
        first_loaded_at,
        loaded_at

    from source

)

select * from renamed
