-- Freshness per topic at the latest platform snapshot: newest event (Kafka timestamp) and
-- ingestion time in raw, and their age in minutes at the snapshot (null: nothing yet).
select
    topic,
    newest_event_at,
    newest_ingested_at,
    raw_rows,
    snapshot_at,
    round((epoch_ms(snapshot_at) - epoch_ms(newest_event_at)) / 60000.0, 1) as event_age_minutes,
    round((epoch_ms(snapshot_at) - epoch_ms(newest_ingested_at)) / 60000.0, 1)
        as ingestion_age_minutes
from {{ source('platform', 'freshness') }}
qualify snapshot_at = max(snapshot_at) over ()
