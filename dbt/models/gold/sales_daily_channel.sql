-- Sales per UTC day x city x channel x SKU, with the product's name and category (skus seed):
-- the Sales Overview dashboard's fact table. units = SUM(qty), revenue = SUM(qty * price) to the
-- cent whatever order the rows are read in (money_sum),
-- orders = distinct orders with at least one line of the SKU.
select
    o.order_date as d,
    o.city,
    o.channel,
    o.sku,
    coalesce(s.name, o.sku) as product_name,
    coalesce(s.category, 'unknown') as category,
    count(distinct o.order_id) as orders,
    cast(sum(o.qty) as bigint) as units,
    {{ money_sum("o.qty * o.price") }} as revenue
from {{ ref('stg_orders') }} as o
left join {{ ref('skus') }} as s
    on o.sku = s.sku
group by all
