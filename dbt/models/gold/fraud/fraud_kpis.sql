-- Fraud KPIs per day (seed section 1 "KPIs & surveillance"): volumes, decisions, capture of
-- the frauds known so far (recall), false-positive rate, € fraud prevented, friction.
-- A transaction is a fraud when a fraud label (chargeback) has been reported for it, whatever
-- its later reports; labels arrive days later, so recent days' recall/FPR move as they do.
with labels as (
    select transaction_id, bool_or(is_fraud) as is_fraud
    from {{ source('fraud', 'fraud_labels') }}
    group by transaction_id
),
decided as (
    select
        d.tx_date,
        d.amount,
        d.decision,
        d.lag_ms,
        d.decision_latency_ms,
        d.decision <> 'ALLOW' as stopped,
        coalesce(l.is_fraud, false) as is_fraud,
        l.transaction_id is not null as labelled
    from {{ source('fraud', 'fraud_decisions') }} d
    left join labels l using (transaction_id)
)
select
    tx_date as d,
    count(*) as transactions,
    {{ money_sum("amount") }} as amount_eur,
    count(*) filter (where decision = 'ALLOW') as allowed,
    count(*) filter (where decision = 'CHALLENGE') as challenged,
    count(*) filter (where decision = 'BLOCK') as blocked,
    count(*) filter (where labelled) as labelled,
    count(*) filter (where is_fraud) as frauds_known,
    round(count(*) filter (where is_fraud and stopped) / nullif(count(*) filter (where is_fraud), 0), 4) as recall,
    round(count(*) filter (where not is_fraud and stopped) / nullif(count(*) filter (where not is_fraud), 0), 4) as false_positive_rate,
    round(coalesce(sum(amount) filter (where is_fraud and stopped), 0), 2) as fraud_eur_prevented,
    round(coalesce(sum(amount) filter (where is_fraud and not stopped), 0), 2) as fraud_eur_missed,
    round(coalesce(sum(amount) filter (where not is_fraud and decision = 'BLOCK'), 0), 2) as legit_eur_blocked,
    round(count(*) filter (where not is_fraud and stopped) / nullif(count(*) filter (where not is_fraud), 0), 4) as friction_rate,
    round(quantile_cont(lag_ms, 0.95), 1) as lag_ms_p95,
    round(avg(decision_latency_ms), 4) as decision_ms_avg
from decided
group by tx_date
