{#-
    The columns together identify a row: a grain test for models keyed by several columns
    (dbt_utils has one of this name; dbt's package hub is not reachable, so both projects
    take this one from the local signalbox_shared package). Plain SQL: runs on PostgreSQL
    and ClickHouse alike.
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as rows_with_this_key
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
