-- Latest stock position per sku x store, straight from silver_inventory_current.
select
    sku,
    store_id,
    ts as stock_ts,
    on_hand,
    on_order
from {{ source('silver', 'inventory_current') }}
