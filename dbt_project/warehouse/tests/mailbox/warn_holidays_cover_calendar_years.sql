-- The holidays seed must list the holidays of every year the data touches; otherwise
-- business minutes silently count holidays as working days. Warns rather than fails:
-- extend seeds/mailbox/holidays.csv.
{{ config(severity='warn') }}

select distinct extract(year from calendar.calendar_date)::int as year_without_holidays
from {{ ref('int_business_calendar') }} as calendar
where
    not exists (
        select 1
        from {{ ref('holidays') }} as holidays
        where extract(year from holidays.holiday_date) = extract(year from calendar.calendar_date)
    )
