-- Time inside business hours is part of the wall-clock wait: 0 <= business <= calendar.
select
    customer_thread_id,
    response_minutes,
    response_business_minutes
from {{ ref('fct_helpscout__responses') }}
where response_business_minutes < 0
    or response_business_minutes > response_minutes + 1e-9
