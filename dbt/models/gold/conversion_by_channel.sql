-- Session conversion per UTC day x channel.
--   sessions            sessions that ended that day on that channel (the denominator)
--   converted_sessions  those whose order_id exists in silver_orders (any date)
--   orders              distinct orders placed that day on that channel (silver_orders),
--                       whether or not a session was recorded for them
--   conversion_rate     converted_sessions / sessions; null when sessions = 0
-- Rows: every day x channel that has at least one session or one order.
with orders_by_day as (
    select
        order_date as d,
        channel,
        count(distinct order_id) as orders
    from {{ ref('stg_orders') }}
    group by order_date, channel
),

known_orders as (
    select distinct order_id
    from {{ ref('stg_orders') }}
),

sessions_by_day as (
    select
        s.session_date as d,
        s.channel,
        count(*) as sessions,
        count(k.order_id) as converted_sessions
    from {{ ref('stg_sessions') }} as s
    left join known_orders as k
        on s.order_id = k.order_id
    group by s.session_date, s.channel
)

select
    coalesce(s.d, o.d) as d,
    coalesce(s.channel, o.channel) as channel,
    coalesce(s.sessions, 0) as sessions,
    coalesce(s.converted_sessions, 0) as converted_sessions,
    coalesce(o.orders, 0) as orders,
    case
        when coalesce(s.sessions, 0) = 0 then null
        else s.converted_sessions / s.sessions
    end as conversion_rate
from sessions_by_day as s
full outer join orders_by_day as o
    on s.d = o.d
    and s.channel = o.channel
