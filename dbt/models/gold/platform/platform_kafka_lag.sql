-- Kafka lag per topic at every platform snapshot: records on the broker the lake has not
-- read yet, summed over the topic's partitions.
select
    snapshot_at,
    topic,
    cast(sum(high_watermark) as bigint) as high_watermark,
    cast(sum(lake_offset) as bigint) as lake_offset,
    cast(sum(lag) as bigint) as lag
from {{ source('platform', 'kafka_lag') }}
group by snapshot_at, topic
