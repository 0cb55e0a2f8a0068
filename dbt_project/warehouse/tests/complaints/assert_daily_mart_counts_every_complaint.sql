{{ config(meta={'dagster': {'ref': {'name': 'complaints_daily_by_state_product_company'}}}) }}

-- Every staged complaint is counted once in the daily mart: per date received, the
-- mart's sum equals the staging count (a lost or doubled group would show here).
with staged as (

    select date_received, count(*) as complaints
    from {{ ref('stg_cfpb__complaints') }}
    group by date_received

),

daily as (

    select date_received, sum(complaints) as complaints
    from {{ ref('complaints_daily_by_state_product_company') }}
    group by date_received

)

select
    coalesce(staged.date_received, daily.date_received) as date_received,
    staged.complaints as staged_complaints,
    daily.complaints as mart_complaints
from staged
full outer join daily
    on daily.date_received = staged.date_received
where staged.complaints is distinct from daily.complaints
