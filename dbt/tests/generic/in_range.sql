{#
  Fails with the rows whose `column_name` lies outside [min_value, max_value] (bounds inclusive
  unless inclusive=false; omit a bound to leave that side open). Nulls pass: pair with
  not_null when the column is mandatory.
#}
{% test in_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

{%- set lower_op = '<' if inclusive else '<=' -%}
{%- set upper_op = '>' if inclusive else '>=' -%}

select *
from {{ model }}
where {{ column_name }} is not null
  and (
      false
      {%- if min_value is not none %}
      or {{ column_name }} {{ lower_op }} {{ min_value }}
      {%- endif %}
      {%- if max_value is not none %}
      or {{ column_name }} {{ upper_op }} {{ max_value }}
      {%- endif %}
  )

{% endtest %}
