-- Sales per day x city x SKU (the seed's `v_orders`): units = SUM(qty),
-- revenue = SUM(qty * price). The day is silver's order_date, the UTC date of the order ts.
select
    order_date as d,
    city,
    sku,
    cast(sum(qty) as bigint) as units,
    round(sum(qty * price), 2) as revenue
from {{ ref('stg_orders') }}
group by order_date, city, sku
