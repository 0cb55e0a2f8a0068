{#-
    Per company: how many complaints it received, how many it has answered, the share of
    answers given on time, and the kinds of response. A complaint counts as answered once
    its company_response is no longer "In progress" (the API shows timely = "Yes" until
    then, so the share is taken over answered complaints only).
-#}
with complaints as (

    select
        company,
        date_received,
        company_response,
        timely,
        company_response is not null and company_response <> 'In progress' as is_answered
    from {{ ref('stg_cfpb__complaints') }}

),

per_company as (

    select
        company,
        count(*) as complaints,
        count(*) filter (where is_answered) as responses,
        count(*) filter (where is_answered and timely = 'Yes') as timely_responses,
        count(*) filter (where is_answered and timely = 'No') as untimely_responses,
        count(*) filter (where company_response = 'Closed with explanation')
            as closed_with_explanation,
        count(*) filter (where company_response = 'Closed with non-monetary relief')
            as closed_with_non_monetary_relief,
        count(*) filter (where company_response = 'Closed with monetary relief')
            as closed_with_monetary_relief,
        count(*) filter (where company_response = 'Closed') as closed_without_relief,
        count(*) filter (where company_response = 'Untimely response') as untimely_response,
        count(*) filter (where company_response = 'In progress') as in_progress,
        count(*) filter (
            where company_response is null
            or company_response not in (
                'Closed with explanation',
                'Closed with non-monetary relief',
                'Closed with monetary relief',
                'Closed',
                'Untimely response',
                'In progress'
            )
        ) as other_responses,
        min(date_received) as first_date_received,
        max(date_received) as last_date_received
    from complaints
    group by company

)

select
    *,
    timely_responses::numeric / nullif(responses, 0) as share_timely,
    (
        (closed_with_non_monetary_relief + closed_with_monetary_relief)::numeric
        / nullif(responses, 0)
    ) as share_with_relief
from per_company
