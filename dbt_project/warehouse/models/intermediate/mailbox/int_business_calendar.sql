{#-
    One row per local calendar day in the business timezone, with that day's business
    interval as a tstzrange (empty on weekends, holidays and days without opening hours).
    Opening times are local wall-clock times converted with AT TIME ZONE, so the UTC bounds
    move by an hour across DST changes. The days cover every local date of the Help Scout
    data plus var('business_calendar_margin_days') on each side.
-#}
{%- set margin_days = var('business_calendar_margin_days') | int -%}
{%- set business_timezone = var('business_timezone') -%}

with activity_dates as (

    select created_date_local as activity_date
    from {{ ref('int_helpscout__threads_classified') }}

    union all

    select {{ to_business_date('created_at') }}
    from {{ ref('stg_helpscout__conversations') }}
    where created_at is not null

),

bounds as (

    select
        min(activity_date) - {{ margin_days }} as first_date,
        max(activity_date) + {{ margin_days }} as last_date
    from activity_dates

),

days as (

    select (bounds.first_date + day_offset)::date as calendar_date
    from bounds
    cross join lateral generate_series(0, bounds.last_date - bounds.first_date) as day_offset

),

holidays as (

    select
        holiday_date,
        string_agg(name, ' / ' order by name) as holiday_name
    from {{ ref('holidays') }}
    group by holiday_date

),

business_hours as (

    select * from {{ ref('business_hours') }}

),

classified as (

    select
        days.calendar_date,
        extract(isodow from days.calendar_date)::int as iso_weekday,
        extract(isodow from days.calendar_date) >= 6 as is_weekend,
        holidays.holiday_date is not null as is_holiday,
        holidays.holiday_name,
        business_hours.opens_at as weekday_opens_at,
        business_hours.closes_at as weekday_closes_at

    from days
    left join holidays
        on holidays.holiday_date = days.calendar_date
    left join business_hours
        on business_hours.iso_weekday = extract(isodow from days.calendar_date)

),

final as (

    select
        calendar_date,
        iso_weekday,
        is_weekend,
        is_holiday,
        holiday_name,
        (not is_holiday and weekday_opens_at is not null and weekday_closes_at > weekday_opens_at)
            as is_business_day,
        case when not is_holiday then weekday_opens_at end as opens_at,
        case when not is_holiday then weekday_closes_at end as closes_at,
        case
            when
                not is_holiday
                and weekday_opens_at is not null
                and weekday_closes_at > weekday_opens_at
                then tstzrange(
                    (calendar_date + weekday_opens_at) at time zone '{{ business_timezone }}',
                    (calendar_date + weekday_closes_at) at time zone '{{ business_timezone }}',
                    '[)'
                )
            else 'empty'::tstzrange
        end as business_hours

    from classified

)

select
    *,
    coalesce(
        extract(epoch from (upper(business_hours) - lower(business_hours))) / 60,
        0
    ) as business_minutes
from final
