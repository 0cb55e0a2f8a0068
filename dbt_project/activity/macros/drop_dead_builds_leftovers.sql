{#-
    dbt-clickhouse builds a model's new days in `<model>__dbt_new_data_<invocation>` (a
    table in `<model>__dbt_tmp`, swapped through `<model>__dbt_backup`) and drops it once
    swapped in; a build killed in between leaves it behind, a copy of the window's days.
    On each run's start, drop those older than the longest a run may live
    (`dead_build_hours`: deploy/dagster.yaml's max_runtime, 6 h), so a build still running
    is never touched.
-#}
{% macro drop_dead_builds_leftovers() -%}
    {%- if execute -%}
        {%- set leftovers -%}
            select database, name
            from system.tables
            where (database = '{{ target.schema }}' or startsWith(database, '{{ target.schema }}_'))
              and match(name, '__dbt_(new_data|distributed_new_data|tmp|backup)')
              and metadata_modification_time <= now() - interval {{ var('dead_build_hours') | int }} hour
        {%- endset -%}
        {%- for row in run_query(leftovers).rows -%}
            {%- do log("dropping " ~ row[0] ~ "." ~ row[1] ~ ": left by a killed build", info=true) -%}
            {%- do run_query("drop table if exists `" ~ row[0] ~ "`.`" ~ row[1] ~ "`") -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
