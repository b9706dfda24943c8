"""Great Expectations suites (lake/quality.py) as blocking Dagster asset checks."""

import dagster as dg

from dagster_project.lineage import emitter
from dagster_project.monitoring import deliver
from dagster_project.resources import LakehouseResource
from lake.platform import record_quality_result
from lake.quality import SUITES, NoDataYet, QualityReport, load_for_check, run_suite
from lake.tables import SILVER_TABLES, silver_uri
from lakehouse.config import Settings
from lakehouse.lineage import (
    ParentRun,
    delta_dataset,
    duckdb_dataset,
    with_quality_assertions,
)
from monitoring.failures import check_condition


def emit_quality_lineage(
    settings: Settings, context: dg.AssetCheckExecutionContext, report: QualityReport
) -> None:
    """The validation as an OpenLineage run `<table>_expectations` whose input is the table,
    with every expectation's outcome as a dataQualityAssertions facet."""
    table = report.table
    if table in SILVER_TABLES:
        checked = delta_dataset(
            settings, table, silver_uri(settings, table), SILVER_TABLES[table][1]
        )
    else:
        checked = duckdb_dataset(settings, table)
    op = context.op_execution_context
    parent = ParentRun(f"dagster.{op.job_name}", op.run_id)
    with emitter(settings).run(
        f"{table}_expectations",
        [with_quality_assertions(checked, report.assertions())],
        [],
        parent=parent,
        job_type="DATA_QUALITY",
    ):
        pass


def quality_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(table),
        name=f"{table}_expectations",
        blocking=True,
        description=f"Great Expectations suite `{table}` (lake/quality.py): not-null, domains, "
        "ranges and key uniqueness; a failure stops downstream assets in the run.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
    ) -> dg.AssetCheckResult:
        settings = lakehouse.settings()
        try:
            frame = load_for_check(settings, table)
        except NoDataYet as empty:  # a topic that never received data blocks nothing
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"status": "no data yet", "reason": str(empty)},
            )
        report = run_suite(table, frame)
        emit_quality_lineage(settings, context, report)
        # a failure alerts (check_failure), the next pass resolves it
        name = f"{table}_expectations"
        deliver(settings, [check_condition(name, table, report.success, report.summary())])
        record_quality_result(  # the Platform dashboard's data-quality history
            settings,
            table,
            report.success,
            report.rows,
            report.evaluated,
            len(report.failed),
        )
        return dg.AssetCheckResult(
            passed=report.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=report.to_metadata(),
        )

    return _check


QUALITY_CHECKS = [quality_check(table) for table in SUITES]
