{#-
    One row per market event x mailbox: customer emails received in the
    var('event_window_days') local days before the event versus as many days from the event
    date on, their daily averages and the uplift ratio (after / before). Only events whose
    window overlaps the mailbox's days of activity are listed; averages are over the days of
    each window that fall inside that activity range, and is_window_complete says whether
    both windows lie fully inside it.
-#}
{%- set window_days = var('event_window_days') | int -%}

with events as (

    select
        md5(event_date::text || '|' || kind || '|' || name) as event_id,
        event_date,
        kind as event_kind,
        name as event_name
    from {{ ref('market_events') }}

),

daily as (

    select mailbox_id, mailbox_name, day, emails_received
    from {{ ref('mailbox_emails_daily') }}

),

mailbox_ranges as (

    select
        mailbox_id,
        max(mailbox_name) as mailbox_name,
        min(day) as first_day,
        max(day) as last_day
    from daily
    group by mailbox_id

),

candidates as (

    select
        events.*,
        mailbox_ranges.mailbox_id,
        mailbox_ranges.mailbox_name,
        mailbox_ranges.first_day,
        mailbox_ranges.last_day
    from events
    inner join mailbox_ranges
        on events.event_date - {{ window_days }} <= mailbox_ranges.last_day
        and events.event_date + {{ window_days - 1 }} >= mailbox_ranges.first_day

),

windowed as (

    select
        candidates.event_id,
        candidates.mailbox_id,
        count(daily.day) filter (where daily.day < candidates.event_date) as days_observed_before,
        count(daily.day) filter (where daily.day >= candidates.event_date) as days_observed_after,
        coalesce(sum(daily.emails_received) filter (where daily.day < candidates.event_date), 0)
            as arrivals_before,
        coalesce(sum(daily.emails_received) filter (where daily.day >= candidates.event_date), 0)
            as arrivals_after

    from candidates
    left join daily
        on daily.mailbox_id = candidates.mailbox_id
        and daily.day >= candidates.event_date - {{ window_days }}
        and daily.day < candidates.event_date + {{ window_days }}
    group by candidates.event_id, candidates.mailbox_id

),

averaged as (

    select
        candidates.event_id,
        candidates.event_date,
        candidates.event_kind,
        candidates.event_name,
        candidates.mailbox_id,
        candidates.mailbox_name,
        {{ window_days }} as window_days,
        windowed.days_observed_before,
        windowed.days_observed_after,
        (
            windowed.days_observed_before = {{ window_days }}
            and windowed.days_observed_after = {{ window_days }}
        ) as is_window_complete,
        windowed.arrivals_before::int as arrivals_before,
        windowed.arrivals_after::int as arrivals_after,
        windowed.arrivals_before::numeric / nullif(windowed.days_observed_before, 0)
            as avg_daily_arrivals_before,
        windowed.arrivals_after::numeric / nullif(windowed.days_observed_after, 0)
            as avg_daily_arrivals_after

    from candidates
    inner join windowed
        on windowed.event_id = candidates.event_id
        and windowed.mailbox_id = candidates.mailbox_id

)

select
    event_id,
    event_date,
    event_kind,
    event_name,
    mailbox_id,
    mailbox_name,
    window_days,
    days_observed_before,
    days_observed_after,
    is_window_complete,
    arrivals_before,
    arrivals_after,
    round(avg_daily_arrivals_before, 4) as avg_daily_arrivals_before,
    round(avg_daily_arrivals_after, 4) as avg_daily_arrivals_after,
    round(avg_daily_arrivals_after / nullif(avg_daily_arrivals_before, 0), 4) as uplift_ratio

from averaged
