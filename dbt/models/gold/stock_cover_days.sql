-- Days of stock cover per SKU x store: on_hand / mean daily units sold over the trailing
-- 7-day window [window_end - 6 days, window_end] (window_end = latest order_date in
-- silver_orders; days without sales count as 0, so the mean is units_7d / 7).
-- Demand of web/app orders is attributed to the store of the delivery city (int_store_demand).
--   cover_status = 'out_of_stock'    when on_hand = 0          -> stock_cover_days = 0
--                  'no_recent_sales' when on_hand > 0, no units -> stock_cover_days null
--                  'ok'              otherwise                   -> on_hand / avg_daily_units_7d
-- Rows: one per sku x store_id of silver_inventory_current.
with window_demand as (
    select
        d.sku,
        d.fulfilment_store_id as store_id,
        cast(sum(d.qty) as bigint) as units_7d
    from {{ ref('int_store_demand') }} as d
    cross join {{ ref('int_sales_window') }} as w
    where d.order_date between w.window_start and w.window_end
        and d.fulfilment_store_id is not null
    group by d.sku, d.fulfilment_store_id
),

cover as (
    select
        i.sku,
        i.store_id,
        st.city,
        i.on_hand,
        i.on_order,
        i.stock_ts,
        coalesce(wd.units_7d, 0) as units_7d,
        coalesce(wd.units_7d, 0) / {{ var('sales_window_days') }} as avg_daily_units_7d,
        w.window_start,
        w.window_end
    from {{ ref('stg_inventory_current') }} as i
    cross join {{ ref('int_sales_window') }} as w
    left join window_demand as wd
        on i.sku = wd.sku
        and i.store_id = wd.store_id
    left join {{ ref('stores') }} as st
        on i.store_id = st.store_id
)

select
    sku,
    store_id,
    city,
    on_hand,
    on_order,
    stock_ts,
    units_7d,
    avg_daily_units_7d,
    case
        when on_hand = 0 then 0.0
        when avg_daily_units_7d = 0 then null
        else on_hand / avg_daily_units_7d
    end as stock_cover_days,
    case
        when on_hand = 0 then 'out_of_stock'
        when avg_daily_units_7d = 0 then 'no_recent_sales'
        else 'ok'
    end as cover_status,
    window_start,
    window_end
from cover
