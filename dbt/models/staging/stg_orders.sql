-- One row per order item, straight from silver_orders (already typed and deduplicated).
select
    order_id,
    line,
    ts,
    order_date,
    customer_id_hash,
    channel,
    store_id,
    city,
    country,
    sku,
    qty,
    price,
    line_amount
from {{ source('silver', 'orders') }}
