-- Forecast accuracy per SKU: the champion of each SKU x store series (lowest backtest MASE,
-- ties by model rank, as forecasting/backtest.py picks it), averaged over the SKU's stores,
-- beside the seasonal-naive baseline. MASE < 1 beats the naive forecast.
with scores as (
    select
        split_part(unique_id, '|', 1) as sku,
        split_part(unique_id, '|', 2) as store_id,
        model,
        mape,
        mase,
        model_rank
    from {{ source('supply_chain', 'forecast_backtest') }}
    where unique_id like '%|%'
),

champions as (
    select *
    from scores
    qualify row_number() over (partition by sku, store_id order by mase, model_rank) = 1
),

naive as (
    select sku, avg(mase) as naive_mase
    from scores
    where model = 'SeasonalNaive'
    group by sku
)

select
    c.sku,
    count(*) as series,
    round(avg(c.mape), 2) as champion_mape,
    round(avg(c.mase), 4) as champion_mase,
    round(n.naive_mase, 4) as naive_mase,
    mode(c.model) as most_common_champion
from champions as c
left join naive as n using (sku)
group by c.sku, n.naive_mase
