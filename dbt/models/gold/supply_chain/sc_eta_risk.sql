-- Late-shipment risk of every open shipment (the nightly ETA model): its predicted arrival,
-- the probability it lands after the promised time, and whether it lands after the
-- destination store's predicted stock-out; highest risk first.
select
    shipment_id,
    sku,
    supplier_id,
    carrier,
    destination,
    cast(promised_at as timestamptz) as promised_at,
    cast(eta as timestamptz) as eta,
    round(p_late, 4) as p_late,
    predicted_stockout_date,
    lands_after_stockout,
    cold_chain_breach,
    reroute_carrier,
    alert
from {{ source('supply_chain', 'eta_risk') }}
