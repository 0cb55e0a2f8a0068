{#-
    insert_overwrite replaces only the partitions the new data has, so a day in the window
    whose events have all gone from the sources (re-landed empty) would keep its old rows.
    As a pre-hook of each windowed model, drop this model's partitions in the window whose
    day has no event in either source, so re-running a window replaces exactly it.
-#}
{% macro drop_days_without_events(date_column='event_date') -%}
    {%- if execute and is_incremental() -%}
        {%- set stale -%}
            select distinct partition
            from system.parts
            where active
              and database = '{{ this.schema }}'
              and table = '{{ this.identifier }}'
              and toDate(partition) between {{ window_min_date() }} and {{ window_max_date() }}
              and toDate(partition) not in (
                  select toDate(time) from {{ source('activity', 'feed_actions') }}
                  where {{ in_window('toDate(time)') }}
                  union distinct
                  select toDate(time) from {{ source('activity', 'message_actions') }}
                  where {{ in_window('toDate(time)') }}
              )
        {%- endset -%}
        {#- one statement per partition (ClickHouse runs one per query), ON CLUSTER when the
            profile names one; the hook renders nothing, so dbt has no statement left to run -#}
        {%- for row in run_query(stale).rows -%}
            {%- do run_query(
                "alter table " ~ this ~ " " ~ on_cluster_clause(this)
                ~ " drop partition '" ~ row[0] ~ "'"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
