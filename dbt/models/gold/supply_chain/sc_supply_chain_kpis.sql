select * from {{ source('supply_chain', 'supply_chain_kpis') }}
