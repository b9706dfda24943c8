-- Alerts per UTC day and kind, from the `alerts` table every alert goes through
-- (monitoring/delivery.py): the operational alerts (monitoring/alerts.py) write a trigger
-- and, when the condition clears, a resolve; sentiment and store alerts only fire (no
-- event_action), so they count as fired.
select
    cast(timezone('UTC', created_at) as date) as d,
    kind,
    cast(count(*) filter (where coalesce(event_action, 'trigger') = 'trigger') as bigint)
        as fired,
    cast(count(*) filter (where event_action = 'resolve') as bigint) as resolved,
    cast(count(*) filter (where not delivered) as bigint) as undelivered
from {{ source('sentiment', 'alerts') }}
group by all
