-- Word frequencies of negative posts per brand over the 7 days ending at the latest post
-- (the wordcloud's input). Words come from silver clean_text (stopwords already removed);
-- url, @user, emoji tokens, brand names and words shorter than 3 letters are left out.
with posts as (
    select * from {{ source('sentiment', 'social_sentiment') }}
),
window_end as (select max(ts) as last_ts from posts),
words as (
    select p.brand, unnest(string_split(p.clean_text, ' ')) as word
    from posts p, window_end w
    where p.label = 'neg' and p.ts > w.last_ts - interval 7 day
)
select brand, word, count(*) as occurrences
from words
where length(word) >= 3
  and word not in ('url', '@user')
  and word not like 'emoji\_%' escape '\'
  and word not in (select distinct lower(brand) from posts)
group by all
order by brand, occurrences desc, word
