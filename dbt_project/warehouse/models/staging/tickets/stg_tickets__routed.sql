{#-
    One row per routed ticket, with the time it took to route (created -> routed).
-#}
with source as (

    select * from {{ source('tickets', 'routed') }}

),

renamed as (

    select
        ticket_id,
        client_id,
        request_type,
        priority,
        team,
        created_at,
        routed_at,
        greatest(extract(epoch from routed_at - created_at), 0)::double precision
            as seconds_to_route,
        text as ticket_text,
        kafka_partition,
        kafka_offset,
        batch_id
    from source

)

select * from renamed
