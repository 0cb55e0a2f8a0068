-- The hourly and daily marts count the same threads: per mailbox and local day, the hours
-- add up to the day.
with hourly as (

    select
        mailbox_id,
        day,
        sum(emails_received) as emails_received,
        sum(emails_answered) as emails_answered,
        sum(conversations_created) as conversations_created
    from {{ ref('mailbox_emails_hourly') }}
    group by 1, 2

)

select
    coalesce(daily.mailbox_id, hourly.mailbox_id) as mailbox_id,
    coalesce(daily.day, hourly.day) as day
from {{ ref('mailbox_emails_daily') }} as daily
full outer join hourly
    on hourly.mailbox_id = daily.mailbox_id
    and hourly.day = daily.day
where coalesce(daily.emails_received, 0) <> coalesce(hourly.emails_received, 0)
    or coalesce(daily.emails_answered, 0) <> coalesce(hourly.emails_answered, 0)
    or coalesce(daily.conversations_created, 0) <> coalesce(hourly.conversations_created, 0)
