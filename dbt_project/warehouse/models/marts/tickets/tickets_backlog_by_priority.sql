{#-
    Open tickets per priority and team at build time. The stream carries no resolutions
    yet, so every routed ticket is open; when a resolution stream lands, it is subtracted
    here. The age columns show how long the oldest has waited.
-#}
with routed as (

    select
        priority,
        team,
        created_at
    from {{ ref('stg_tickets__routed') }}

)

select
    priority,
    team,
    count(*) as open_tickets,
    count(*) filter (where created_at >= now() - interval '1 hour') as opened_last_hour,
    count(*) filter (where created_at >= now() - interval '24 hours') as opened_last_24_hours,
    min(created_at) as oldest_created_at,
    extract(epoch from now() - min(created_at)) / 3600.0 as oldest_age_hours,
    now() as as_of
from routed
group by priority, team
