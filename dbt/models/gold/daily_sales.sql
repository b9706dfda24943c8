-- Sales per day x city x SKU (the seed's `v_orders`): units = SUM(qty),
-- revenue = SUM(qty * price) to the cent, whatever order the rows are read in (money_sum).
-- The day is silver's order_date, the UTC date of the order ts.
select
    order_date as d,
    city,
    sku,
    cast(sum(qty) as bigint) as units,
    {{ money_sum("qty * price") }} as revenue
from {{ ref('stg_orders') }}
group by order_date, city, sku
