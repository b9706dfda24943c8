{#- A sum of money to the cent that does not depend on the order rows are added in: each term
    is made exact (DECIMAL) before the sum. A DOUBLE sum rounded to 2 places can flip a cent
    on a half-cent total when the same rows are read in another file order (a compaction, the
    other silver engine). Returned as DOUBLE, the type of the gold contracts. -#}
{% macro money_sum(expression) -%}
    cast(round(sum(cast({{ expression }} as decimal(38, 6))), 2) as double)
{%- endmacro %}
