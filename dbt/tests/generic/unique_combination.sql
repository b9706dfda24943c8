{#
  Fails with one row per combination of `combination_of_columns` that occurs more than once
  (the grain / primary key of a model). Rows where a key column is null count as a value.
#}
{% test unique_combination(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
