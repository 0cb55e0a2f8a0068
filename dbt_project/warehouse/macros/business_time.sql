{#-
    Conversions to the business timezone (var `business_timezone`). Every day or hour a
    mart reports goes through these, never through the session's TimeZone setting, so the
    results do not depend on the server's or the connection's configuration.
-#}

{#- The local wall-clock timestamp (without time zone) of a timestamptz. -#}
{% macro to_business_local(column) -%}
    ({{ column }} at time zone '{{ var("business_timezone") }}')
{%- endmacro %}

{#- The local calendar date of a timestamptz. -#}
{% macro to_business_date(column) -%}
    ({{ column }} at time zone '{{ var("business_timezone") }}')::date
{%- endmacro %}

{#-
    The instant (timestamptz) at which the local hour containing `column` began. Subtracting
    the offset into the local hour (an interval below one hour) keeps the two 02:00 hours of
    a DST fall-back day apart, which truncating the local time and converting back does not.
-#}
{% macro business_hour_start(column) -%}
    ({{ column }} - ({{ to_business_local(column) }} - date_trunc('hour', {{ to_business_local(column) }})))
{%- endmacro %}

{#- Minutes (numeric, with fractions) from one timestamptz to another. -#}
{% macro minutes_between(start_column, end_column) -%}
    (extract(epoch from ({{ end_column }} - {{ start_column }})) / 60)
{%- endmacro %}
