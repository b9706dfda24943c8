-- One row per shopping session, straight from silver_sessions.
select
    session_id,
    ts,
    session_date,
    channel,
    city,
    order_id
from {{ source('silver', 'sessions') }}
