-- The trailing sales window shared by top_sku_7d and stock_cover_days: the
-- `sales_window_days` (7) UTC calendar days ending at the latest order_date present in
-- silver_orders, both ends included: [window_end - 6 days, window_end]. Exactly one row;
-- both columns are null when there is no order at all.
with bounds as (
    select max(order_date) as window_end
    from {{ ref('stg_orders') }}
)

select
    cast(window_end - {{ var('sales_window_days') - 1 }} as date) as window_start,
    window_end
from bounds
