-- Every alert fired (sentiment spikes and the supply chain's store alerts share the table),
-- newest first; delivery_status says whether the webhook took it.
select
    alert_id,
    kind,
    brand,
    aspect,
    window_start,
    window_end,
    posts,
    neg,
    score,
    summary,
    delivered,
    delivery_status,
    created_at
from {{ source('sentiment', 'alerts') }}
