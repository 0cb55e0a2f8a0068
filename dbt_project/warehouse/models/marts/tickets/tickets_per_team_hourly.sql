{#-
    Tickets created per UTC hour and team: how many, how many urgent or high, from how
    many customers.
-#}
with routed as (

    select
        team,
        priority,
        client_id,
        date_trunc('hour', created_at, 'UTC') as hour_start
    from {{ ref('stg_tickets__routed') }}

)

select
    hour_start,
    team,
    count(*) as tickets,
    count(*) filter (where priority = 'urgent') as urgent_tickets,
    count(*) filter (where priority = 'high') as high_tickets,
    count(distinct client_id) as clients
from routed
group by hour_start, team
