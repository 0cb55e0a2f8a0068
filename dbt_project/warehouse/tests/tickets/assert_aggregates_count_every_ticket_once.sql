{{ config(meta={'dagster': {'ref': {'name': 'stg_tickets__routed'}}}) }}

{#-
    The processor's window aggregates add up to the routed tickets, per request type, team
    and priority: each new ticket incremented exactly one window, and a redelivered one
    none. Returns the combinations that disagree.
-#}
with routed as (

    select request_type, team, priority, count(*) as tickets
    from {{ ref('stg_tickets__routed') }}
    group by request_type, team, priority

),

aggregated as (

    select request_type, team, priority, sum(tickets) as tickets
    from {{ source('tickets', 'aggregates') }}
    group by request_type, team, priority

)

select
    coalesce(r.request_type, a.request_type) as request_type,
    coalesce(r.team, a.team) as team,
    coalesce(r.priority, a.priority) as priority,
    r.tickets as routed_tickets,
    a.tickets as aggregated_tickets
from routed as r
full outer join aggregated as a
    on a.request_type = r.request_type
    and a.team = r.team
    and a.priority = r.priority
where r.tickets is distinct from a.tickets
