{#-
    Per mailbox and local day of the reply: how many replies went out and how long
    customers waited for them, in calendar and in business minutes. First-response figures
    cover conversations whose first customer message was answered that day; response
    figures cover every customer message answered that day. Days without replies have no row.
-#}
with responses as (

    select * from {{ ref('fct_helpscout__responses') }}

),

aggregated as (

    select
        mailbox_id,
        replied_date_local as day,
        count(distinct reply_thread_id) as replies,
        count(*) as responses,
        count(*) filter (where is_first_response) as first_responses,
        avg(response_minutes) filter (where is_first_response) as avg_first_response_minutes,
        percentile_cont(0.5) within group (
            order by response_minutes
        ) filter (where is_first_response) as median_first_response_minutes,
        avg(response_business_minutes) filter (where is_first_response)
            as avg_first_response_business_minutes,
        percentile_cont(0.5) within group (
            order by response_business_minutes
        ) filter (where is_first_response) as median_first_response_business_minutes,
        avg(response_minutes) as avg_response_minutes,
        avg(response_business_minutes) as avg_response_business_minutes

    from responses
    group by 1, 2

)

select
    aggregated.mailbox_id,
    mailboxes.mailbox_name,
    aggregated.day,
    aggregated.replies,
    aggregated.responses,
    aggregated.first_responses,
    round(aggregated.avg_first_response_minutes::numeric, 2) as avg_first_response_minutes,
    round(aggregated.median_first_response_minutes::numeric, 2) as median_first_response_minutes,
    round(aggregated.avg_first_response_business_minutes::numeric, 2)
        as avg_first_response_business_minutes,
    round(aggregated.median_first_response_business_minutes::numeric, 2)
        as median_first_response_business_minutes,
    round(aggregated.avg_response_minutes::numeric, 2) as avg_response_minutes,
    round(aggregated.avg_response_business_minutes::numeric, 2) as avg_response_business_minutes

from aggregated
left join {{ ref('stg_helpscout__mailboxes') }} as mailboxes
    on mailboxes.mailbox_id = aggregated.mailbox_id
