{#-
    One row per message that was not a valid ticket: where it came from and why.
-#}
with source as (

    select * from {{ source('tickets', 'dead_letters') }}

),

renamed as (

    select
        kafka_topic,
        kafka_partition,
        kafka_offset,
        reason,
        detail,
        received_at,
        coalesce(length(message_value), 0) as message_bytes
    from source

)

select * from renamed
