-- Decision latency per UTC day of the transactions: P50/P95 of the scoring time per
-- transaction (decision_latency_ms) and of the lag from raw ingestion to the decision row
-- (lag_ms), over every decision of the day.
select
    tx_date as d,
    count(*) as decisions,
    round(quantile_cont(decision_latency_ms, 0.5), 4) as decision_ms_p50,
    round(quantile_cont(decision_latency_ms, 0.95), 4) as decision_ms_p95,
    round(quantile_cont(lag_ms, 0.5), 1) as lag_ms_p50,
    round(quantile_cont(lag_ms, 0.95), 1) as lag_ms_p95
from {{ source('fraud', 'fraud_decisions') }}
group by tx_date
