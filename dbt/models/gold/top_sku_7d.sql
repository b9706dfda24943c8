-- SKUs ranked by units and by revenue over the trailing 7-day window
-- [window_end - 6 days, window_end], window_end = latest order_date in silver_orders.
-- Ranks are ROW_NUMBER (1..n, no ties, no gaps); ties broken by the other measure, then sku.
with window_sales as (
    select
        o.sku,
        cast(sum(o.qty) as bigint) as units_7d,
        {{ money_sum("o.qty * o.price") }} as revenue_7d
    from {{ ref('stg_orders') }} as o
    cross join {{ ref('int_sales_window') }} as w
    where o.order_date between w.window_start and w.window_end
    group by o.sku
)

select
    s.sku,
    s.units_7d,
    s.revenue_7d,
    row_number() over (order by s.units_7d desc, s.revenue_7d desc, s.sku) as rank_units,
    row_number() over (order by s.revenue_7d desc, s.units_7d desc, s.sku) as rank_revenue,
    w.window_start,
    w.window_end
from window_sales as s
cross join {{ ref('int_sales_window') }} as w
