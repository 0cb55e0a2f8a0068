{#-
    The window an incremental run rebuilds, from the vars `min_date` / `max_date`
    (YYYY-MM-DD, both inclusive: the first and last Dagster partition of the run).
    Unset, the last `default_window_days` days up to today. Bad input stops the run with
    the var's name rather than reaching ClickHouse as broken SQL.
-#}
{% macro window_date_var(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a date YYYY-MM-DD, got '" ~ text ~ "'") }}
    {%- endif -%}
    {%- do modules.datetime.datetime.strptime(text, '%Y-%m-%d') -%}
    {{ return(text) }}
{%- endmacro %}

{% macro window_min_date() -%}
    {%- set low = window_date_var('min_date') -%}
    {%- set high = window_date_var('max_date') -%}
    {%- if low is not none and high is not none and low > high -%}
        {{ exceptions.raise_compiler_error("var min_date (" ~ low ~ ") is after max_date (" ~ high ~ ")") }}
    {%- endif -%}
    {%- if low is not none -%}
        toDate('{{ low }}')
    {%- elif high is not none -%}
        toDate('{{ high }}') - {{ var('default_window_days') - 1 }}
    {%- else -%}
        today() - {{ var('default_window_days') - 1 }}
    {%- endif -%}
{%- endmacro %}

{% macro window_max_date() -%}
    {%- set high = window_date_var('max_date') -%}
    {%- if high is not none -%}
        toDate('{{ high }}')
    {%- else -%}
        today()
    {%- endif -%}
{%- endmacro %}

{# `<date column> between <min> and <max>`: prunes partitions and the primary key. #}
{% macro in_window(date_column) -%}
    {{ date_column }} between {{ window_min_date() }} and {{ window_max_date() }}
{%- endmacro %}
