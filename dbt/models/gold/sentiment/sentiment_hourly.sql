-- Sentiment curve per hour x brand with its band: the weighted score of the hour and the
-- P5/P50/P95 of the weighted scores of its 5-minute slots that had posts (the same
-- construction as sentiment_daily's band over hours, one level finer).
with posts as (
    select * from {{ source('sentiment', 'social_sentiment') }}
),

slots as (
    select
        date_trunc('hour', ts) as hour,
        brand,
        (coalesce(sum(engagement_weight) filter (where label = 'pos'), 0)
            - coalesce(sum(engagement_weight) filter (where label = 'neg'), 0))
        / sum(engagement_weight) as slot_weighted_score
    from posts
    group by date_trunc('hour', ts), brand, time_bucket(interval 5 minute, ts)
),

band as (
    select
        hour,
        brand,
        quantile_cont(slot_weighted_score, 0.05) as p5_slot_score,
        quantile_cont(slot_weighted_score, 0.50) as p50_slot_score,
        quantile_cont(slot_weighted_score, 0.95) as p95_slot_score,
        count(*) as slots_with_posts
    from slots
    group by all
),

hourly as (
    select
        date_trunc('hour', ts) as hour,
        brand,
        count(*) as posts,
        count(*) filter (where label = 'neg') as neg_posts,
        (coalesce(sum(engagement_weight) filter (where label = 'pos'), 0)
            - coalesce(sum(engagement_weight) filter (where label = 'neg'), 0))
        / sum(engagement_weight) as weighted_score
    from posts
    group by all
)

select
    h.hour,
    h.brand,
    h.brand = '{{ var("sentiment_our_brand", env_var("DBT_LAKEHOUSE_OUR_BRAND", "Lumio")) }}'
        as is_our_brand,
    h.posts,
    h.neg_posts,
    h.weighted_score,
    b.p5_slot_score,
    b.p50_slot_score,
    b.p95_slot_score,
    b.slots_with_posts
from hourly as h
join band as b using (hour, brand)
