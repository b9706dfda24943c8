-- Sentiment curve per day × brand × source, with the spread of the hourly index (P5/P50/P95).
with posts as (
    select * from {{ source('sentiment', 'social_sentiment') }}
),
hourly as (
    select event_date, brand, source, date_trunc('hour', ts) as hour,
           (coalesce(sum(engagement_weight) filter (where label = 'pos'), 0)
            - coalesce(sum(engagement_weight) filter (where label = 'neg'), 0))
           / sum(engagement_weight) as hourly_weighted_score
    from posts
    group by all
),
spread as (
    select event_date, brand, source,
           quantile_cont(hourly_weighted_score, 0.05) as p5_hourly_score,
           quantile_cont(hourly_weighted_score, 0.50) as p50_hourly_score,
           quantile_cont(hourly_weighted_score, 0.95) as p95_hourly_score,
           count(*) as hours_with_posts
    from hourly
    group by all
),
daily as (
    select event_date, brand, source,
           count(*) as posts,
           count(*) filter (where label = 'pos') as pos_posts,
           count(*) filter (where label = 'neu') as neu_posts,
           count(*) filter (where label = 'neg') as neg_posts,
           sum(engagement_weight) as engagement_weight,
           (count(*) filter (where label = 'pos') - count(*) filter (where label = 'neg'))
               / count(*) as score,
           (coalesce(sum(engagement_weight) filter (where label = 'pos'), 0)
            - coalesce(sum(engagement_weight) filter (where label = 'neg'), 0))
               / sum(engagement_weight) as weighted_score
    from posts
    group by all
)
select d.event_date as d, d.brand, d.source, d.posts, d.pos_posts, d.neu_posts, d.neg_posts,
       d.engagement_weight, d.score, d.weighted_score,
       s.p5_hourly_score, s.p50_hourly_score, s.p95_hourly_score, s.hours_with_posts
from daily d
join spread s using (event_date, brand, source)
order by d, brand, source
