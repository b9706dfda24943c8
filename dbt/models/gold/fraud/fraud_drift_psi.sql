-- PSI per feature (and the model score) of every drift run, latest run flagged; the
-- thresholds are the drift checks' (warn > 0.1, fail > 0.25).
select
    computed_at,
    latest_day,
    feature,
    psi,
    case
        when psi is null then 'not computed'
        when psi > 0.25 then 'fail'
        when psi > 0.1 then 'warn'
        else 'ok'
    end as psi_status,
    computed_at = max(computed_at) over () as is_latest_run,
    reference_rows,
    latest_rows
from {{ source('fraud', 'fraud_drift_psi') }}
