-- Our brand vs competitors per day: share of voice, negative rate, weighted sentiment.
with daily as (
    select event_date as d, brand,
           count(*) as posts,
           count(*) filter (where label = 'neg') as neg_posts,
           (coalesce(sum(engagement_weight) filter (where label = 'pos'), 0)
            - coalesce(sum(engagement_weight) filter (where label = 'neg'), 0))
               / sum(engagement_weight) as weighted_score
    from {{ source('sentiment', 'social_sentiment') }}
    where brand <> 'unknown'
    group by all
)
select d, brand,
       brand = '{{ var("sentiment_our_brand", env_var("DBT_LAKEHOUSE_OUR_BRAND", "Lumio")) }}' as is_our_brand,
       posts,
       posts / sum(posts) over (partition by d) as share_of_voice,
       neg_posts / posts as neg_rate,
       weighted_score
from daily
order by d, brand
