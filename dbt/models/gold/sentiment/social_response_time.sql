-- Customer-service first-response time per UTC day x source (network), for our brand.
--   customer post  a silver_social post by a customer (author_type 'customer'; v1 events
--                  too) naming our brand, not spam, not a duplicate
--   first response the earliest post by a brand account (author_type 'brand') whose
--                  in_reply_to_post_id is that post, at or after it
--   first_response_minutes = (first response ts - post ts) in minutes
-- The day is the customer post's. Posts not answered (yet) count in customer_posts only:
-- the time figures are over answered posts, so a backlog shows as a falling answer_rate.
with posts as (
    select * from {{ source('sentiment', 'social') }}
),

customer_posts as (
    select post_id, ts, event_date, source
    from posts
    where coalesce(author_type, 'customer') = 'customer'
        and not is_spam
        and duplicate_of is null
        and brand = '{{ var("sentiment_our_brand", env_var("DBT_LAKEHOUSE_OUR_BRAND", "Lumio")) }}'
),

first_replies as (
    select c.post_id, min(r.ts) as first_reply_ts
    from customer_posts as c
    join posts as r
        on r.in_reply_to_post_id = c.post_id
        and r.author_type = 'brand'
        and r.ts >= c.ts
    group by c.post_id
),

timed as (
    select
        c.event_date as d,
        c.source,
        (epoch_ms(f.first_reply_ts) - epoch_ms(c.ts)) / 60000.0 as first_response_minutes
    from customer_posts as c
    left join first_replies as f
        on c.post_id = f.post_id
)

select
    d,
    source,
    count(*) as customer_posts,
    count(first_response_minutes) as answered_posts,
    round(count(first_response_minutes) / count(*), 4) as answer_rate,
    round(avg(first_response_minutes), 2) as first_response_minutes_avg,
    round(quantile_cont(first_response_minutes, 0.5), 2) as first_response_minutes_p50,
    round(quantile_cont(first_response_minutes, 0.9), 2) as first_response_minutes_p90
from timed
group by all
