-- Dead letters per ingestion day, topic and reason kind (the reason's text before its first
-- ':' — e.g. "invalid JSON", "schema" — so positions and values do not split the counts).
select
    ingest_date as d,
    topic,
    trim(split_part(reason, ':', 1)) as reason_kind,
    count(*) as dead_letters,
    cast(sum(payload_bytes) as bigint) as payload_bytes
from {{ source('platform', 'dead_letter') }}
group by all
