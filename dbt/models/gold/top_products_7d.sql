-- top_sku_7d with each SKU's product name and category (skus seed): the top-products chart.
select
    t.rank_revenue,
    t.rank_units,
    t.sku,
    coalesce(s.name, t.sku) as product_name,
    coalesce(s.category, 'unknown') as category,
    t.units_7d,
    t.revenue_7d,
    t.window_start,
    t.window_end
from {{ ref('top_sku_7d') }} as t
left join {{ ref('skus') }} as s
    on t.sku = s.sku
