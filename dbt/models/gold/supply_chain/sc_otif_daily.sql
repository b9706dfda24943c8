select * from {{ source('supply_chain', 'otif_daily') }}
