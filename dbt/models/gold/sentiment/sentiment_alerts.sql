-- Every alert fired (sentiment spikes and the supply chain's store alerts share the table),
-- newest first; delivery_status says whether the webhook took it. The operational alerts
-- that share the table too (monitoring/alerts.py KINDS: freshness, null rates, orphan
-- files, failed runs and checks) are the platform's, not the business's: left out.
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
where kind not in (
    'stream_freshness', 'gold_freshness', 'null_rate', 'orphan_files', 'run_failure',
    'check_failure'
)
