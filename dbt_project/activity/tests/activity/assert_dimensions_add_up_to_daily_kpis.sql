-- Every user counts once in each dimension, so each dimension's rows must add up to the
-- day's KPIs; and each message has one sender and one receiver. Rows returned = days that
-- break it.
with dimension_totals as (
    select
        event_date,
        dimension,
        sum(views) as views,
        sum(likes) as likes,
        sum(messages_sent) as messages_sent,
        sum(messages_received) as messages_received
    from {{ ref('activity_daily_dimensions') }}
    group by event_date, dimension
)

select
    d.event_date,
    d.dimension,
    d.views as dimension_views,
    k.views as kpi_views,
    d.likes as dimension_likes,
    k.likes as kpi_likes,
    d.messages_sent as dimension_messages_sent,
    k.messages_sent as kpi_messages_sent,
    d.messages_received as dimension_messages_received
from dimension_totals as d
inner join {{ ref('activity_kpis_daily') }} as k on k.event_date = d.event_date
where d.views <> k.views
    or d.likes <> k.likes
    or d.messages_sent <> k.messages_sent
    or d.messages_received <> d.messages_sent
