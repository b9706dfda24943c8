"""Delta table maintenance as a Dagster job (lake/maintenance.py does the work): OPTIMIZE,
z-order of the hot tables, checkpoints, VACUUM within the retention; nightly at 03:30 UTC.
Its op touches no asset, so the micro-batch sensors keep running while it does."""

import dagster as dg

from dagster_project.resources import LakehouseResource
from lakehouse.ownership import owner_of


@dg.op(
    description="OPTIMIZE + checkpoint + VACUUM every Delta table; files and bytes before/after."
)
def maintain_delta_tables(context: dg.OpExecutionContext, lakehouse: LakehouseResource) -> None:
    from lake.maintenance import maintain_lake

    report = maintain_lake(lakehouse.settings(), progress=context.log.info)
    context.log_event(
        dg.AssetObservation(
            asset_key="lake_maintenance",
            metadata={
                "tables": len(report.tables),
                "files_before": report.files_before,
                "files_after": report.files_after,
                "summary": report.summary(),
                "skipped": dg.MetadataValue.json(
                    {t.table: t.error for t in report.tables if t.error}
                ),
            },
        )
    )
    skipped = [t.table for t in report.tables if t.error]
    if skipped:
        raise dg.Failure(
            f"maintenance skipped {', '.join(skipped)} (a concurrent writer won the commit): "
            "the next run retries them"
        )


@dg.job(tags=owner_of("_maintenance").tags())
def lake_maintenance() -> None:
    maintain_delta_tables()


maintenance_schedule = dg.ScheduleDefinition(
    name="lake_maintenance_nightly",
    job=lake_maintenance,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(jobs=[lake_maintenance], schedules=[maintenance_schedule])
