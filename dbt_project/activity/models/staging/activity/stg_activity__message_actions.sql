-- Messages with sender and receiver named; the profile columns describe the sender.
select
    user_id as sender_user_id,
    receiver_id as receiver_user_id,
    time as event_time,
    toDate(time) as event_date,
    gender as sender_gender,
    age as sender_age,
    country as sender_country,
    city as sender_city,
    os as sender_os,
    source as sender_traffic_source,
    exp_group as sender_exp_group
from {{ source('activity', 'message_actions') }}
