{#-
    Use a model's custom schema verbatim (`staging`, `intermediate`, `marts`, `reference`)
    instead of dbt's default `<target_schema>_<custom>`; models without one land in the
    target schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
