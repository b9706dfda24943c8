-- Rows, files and bytes per Delta table and zone at the latest platform snapshot.
select zone, table_name, rows, files, bytes, version, snapshot_at
from {{ source('platform', 'table_rows') }}
qualify snapshot_at = max(snapshot_at) over ()
