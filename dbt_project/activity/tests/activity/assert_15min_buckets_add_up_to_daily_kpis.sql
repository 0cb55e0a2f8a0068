-- A day's 15-minute buckets add up to its KPIs. Warn only: Dagster may rebuild the
-- 15-minute model for today more often than the daily models.
{{ config(severity='warn') }}

with buckets as (
    select
        bucket_date as event_date,
        sum(views) as views,
        sum(likes) as likes,
        sum(messages_sent) as messages_sent
    from {{ ref('activity_metrics_15min') }}
    group by bucket_date
)

select
    b.event_date,
    b.views as bucket_views,
    k.views as kpi_views,
    b.likes as bucket_likes,
    k.likes as kpi_likes,
    b.messages_sent as bucket_messages_sent,
    k.messages_sent as kpi_messages_sent
from buckets as b
inner join {{ ref('activity_kpis_daily') }} as k on k.event_date = b.event_date
where b.views <> k.views or b.likes <> k.likes or b.messages_sent <> k.messages_sent
