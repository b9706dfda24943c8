-- OTIF per receipt day over every supplier and carrier: each day's rates weighted by its
-- deliveries (sc_otif_daily holds them per supplier x carrier).
select
    d,
    cast(sum(deliveries) as bigint) as deliveries,
    round(sum(on_time_rate * deliveries) / sum(deliveries), 4) as on_time_rate,
    round(sum(in_full_rate * deliveries) / sum(deliveries), 4) as in_full_rate,
    round(sum(otif_rate * deliveries) / sum(deliveries), 4) as otif_rate
from {{ ref('sc_otif_daily') }}
where deliveries > 0
group by d
