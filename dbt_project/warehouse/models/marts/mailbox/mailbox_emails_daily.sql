{#-
    Per mailbox and local day (business timezone): customer emails received, user replies
    sent and conversations created, the hourly mart's counts summed by local day (a local
    hour never straddles two local days). Dense, because the hourly mart is: every day
    between the mailbox's first and last day of activity has a row, zero when nothing
    happened.
-#}
with days as (

    select
        mailbox_id,
        day,
        sum(emails_received)::bigint as emails_received,
        sum(emails_answered)::bigint as emails_answered,
        sum(conversations_created)::bigint as conversations_created
    from {{ ref('mailbox_emails_hourly') }}
    group by 1, 2

)

select
    days.mailbox_id,
    mailboxes.mailbox_name,
    days.day,
    extract(isodow from days.day)::int as day_of_week,
    calendar.is_business_day,
    days.emails_received,
    days.emails_answered,
    days.conversations_created

from days
left join {{ ref('stg_helpscout__mailboxes') }} as mailboxes
    on mailboxes.mailbox_id = days.mailbox_id
left join {{ ref('int_business_calendar') }} as calendar
    on calendar.calendar_date = days.day
