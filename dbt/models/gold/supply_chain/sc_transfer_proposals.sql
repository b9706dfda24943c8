select * from {{ source('supply_chain', 'transfer_proposals') }}
