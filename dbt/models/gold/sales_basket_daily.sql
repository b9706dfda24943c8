-- Orders, revenue and average basket per UTC day x channel (an order is one basket, all its
-- lines together): avg_basket_eur = revenue / orders, units_per_order = units / orders.
with baskets as (
    select
        order_date as d,
        channel,
        order_id,
        sum(qty) as units,
        sum(cast(qty * price as decimal(38, 6))) as amount
    from {{ ref('stg_orders') }}
    group by all
)

select
    d,
    channel,
    count(*) as orders,
    cast(sum(units) as bigint) as units,
    cast(round(sum(amount), 2) as double) as revenue,  -- exact terms: no order-dependent cent
    cast(round(sum(amount) / count(*), 2) as double) as avg_basket_eur,
    round(sum(units) / count(*), 3) as units_per_order
from baskets
group by all
