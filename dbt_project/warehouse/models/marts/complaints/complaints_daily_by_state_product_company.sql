{#-
    Complaints received per day by state, product and company (the grain of the seed's
    state/product/company output, per day), with how many are still waiting for the
    company, answered late, or carry a published narrative.
-#}
with complaints as (

    select * from {{ ref('stg_cfpb__complaints') }}

)

select
    date_received,
    state,
    product,
    company,
    count(*) as complaints,
    count(*) filter (where company_response = 'In progress') as complaints_in_progress,
    count(*) filter (where timely = 'No') as untimely_responses,
    count(*) filter (where has_narrative) as complaints_with_narrative

from complaints
group by date_received, state, product, company
