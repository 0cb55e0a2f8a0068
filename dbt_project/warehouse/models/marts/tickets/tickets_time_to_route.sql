{#-
    How long tickets waited between creation and routing (the stream's end-to-end
    latency: producer, broker, processor batch), per UTC hour and team.
-#}
with routed as (

    select
        team,
        seconds_to_route,
        date_trunc('hour', created_at, 'UTC') as hour_start
    from {{ ref('stg_tickets__routed') }}

)

select
    hour_start,
    team,
    count(*) as tickets,
    avg(seconds_to_route) as avg_seconds,
    percentile_cont(0.5) within group (order by seconds_to_route) as p50_seconds,
    percentile_cont(0.95) within group (order by seconds_to_route) as p95_seconds,
    max(seconds_to_route) as max_seconds
from routed
group by hour_start, team
