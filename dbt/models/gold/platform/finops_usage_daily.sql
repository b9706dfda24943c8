-- Compute usage per day and owner, from the `_usage` rows every asset step writes.
select
    usage_date as d,
    domain,
    team,
    cost_center,
    count(distinct run_id) as runs,
    count(*) as steps,
    cast(sum(case when succeeded then 0 else 1 end) as bigint) as failed_steps,
    cast(sum(cpu_seconds) as double) as cpu_seconds,
    cast(sum(wall_seconds) as double) as wall_seconds,
    cast(max(peak_memory_bytes) / 1e6 as double) as peak_memory_mb,
    cast(sum(bytes_read) as bigint) as bytes_read,
    cast(sum(bytes_written) as bigint) as bytes_written,
    cast(sum(rows) as bigint) as rows_written
from {{ source('platform', 'usage') }}
group by usage_date, domain, team, cost_center
