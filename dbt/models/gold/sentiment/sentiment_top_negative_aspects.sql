-- Negative posts per day × brand × aspect, ranked (1 = the aspect with most negative posts).
with exploded as (
    select event_date, brand, unnest(aspects) as aspect, label, engagement_weight
    from {{ source('sentiment', 'social_sentiment') }}
),
per_aspect as (
    select event_date as d, brand, aspect,
           count(*) as posts,
           count(*) filter (where label = 'neg') as neg_posts,
           coalesce(sum(engagement_weight) filter (where label = 'neg'), 0) as neg_engagement_weight
    from exploded
    group by all
)
select d, brand, aspect, posts, neg_posts, neg_engagement_weight,
       neg_posts / posts as neg_share,
       rank() over (partition by d, brand order by neg_posts desc, aspect) as neg_rank
from per_aspect
order by d, brand, neg_rank
