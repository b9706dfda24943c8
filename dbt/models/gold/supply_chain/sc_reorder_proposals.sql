select * from {{ source('supply_chain', 'reorder_proposals') }}
