-- Order lines attributed to the store that serves them:
--   * store orders -> their own store_id;
--   * web/app orders (store_id null) -> the store of the order's city and country (online
--     orders are fulfilled from the store in the delivery city; one store per city, from the
--     `stores` seed). Online orders from a city without a store have a null
--     fulfilment_store_id and count for no store.
select
    o.order_id,
    o.line,
    o.order_date,
    o.channel,
    o.sku,
    o.qty,
    coalesce(o.store_id, s.store_id) as fulfilment_store_id
from {{ ref('stg_orders') }} as o
left join {{ ref('stores') }} as s
    on o.store_id is null
    and o.city = s.city
    and o.country = s.country
