{#-
    A JSON value as bigint when it is a JSON number, else null. Some Help Scout fields
    (`closedBy`, ids inside optional objects) are absent, null or of another shape
    depending on the object's state; a plain cast would fail the whole model on one record.
-#}
{% macro json_bigint(json_expression) -%}
    (case when jsonb_typeof({{ json_expression }}) = 'number' then ({{ json_expression }})::text::numeric::bigint end)
{%- endmacro %}
