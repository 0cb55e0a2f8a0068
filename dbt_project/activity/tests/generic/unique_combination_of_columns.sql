{#-
    The columns together identify a row (a grain test for models keyed by several columns,
    written here because the project uses dbt built-ins only, without dbt_utils).
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as rows_with_this_key
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
