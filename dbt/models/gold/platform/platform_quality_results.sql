-- Every data-quality suite run (the Great Expectations asset checks), with its outcome.
select
    checked_at,
    table_name,
    success,
    rows_checked,
    expectations_evaluated,
    expectations_failed,
    case when success then 1 else 0 end as passed_runs,
    case when success then 0 else 1 end as failed_runs
from {{ source('platform', 'quality_results') }}
