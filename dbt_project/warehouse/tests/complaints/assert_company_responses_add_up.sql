-- Per company: the response kinds partition the complaints; every known closing kind is
-- an answer and "In progress" is not; answers are timely or not at most once; the
-- timely share is a share.
with companies as (

    select
        *,
        (
            closed_with_explanation + closed_with_non_monetary_relief
            + closed_with_monetary_relief + closed_without_relief + untimely_response
        ) as closed_known
    from {{ ref('complaints_company_response_timeliness') }}

)

select
    company,
    complaints,
    responses,
    share_timely
from companies
where complaints <> closed_known + in_progress + other_responses
    or responses < closed_known
    or responses > complaints - in_progress
    or timely_responses + untimely_responses > responses
    or share_timely < 0
    or share_timely > 1
