"""Great Expectations suites (lake/quality.py) as blocking Dagster asset checks."""

import dagster as dg

from dagster_project.resources import LakehouseResource
from lake.platform import record_quality_result
from lake.quality import SUITES, NoDataYet, load_for_check, run_suite


def quality_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(table),
        name=f"{table}_expectations",
        blocking=True,
        description=f"Great Expectations suite `{table}` (lake/quality.py): not-null, domains, "
        "ranges and key uniqueness; a failure stops downstream assets in the run.",
    )
    def _check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        try:
            frame = load_for_check(lakehouse.settings(), table)
        except NoDataYet as empty:  # a topic that never received data blocks nothing
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"status": "no data yet", "reason": str(empty)},
            )
        report = run_suite(table, frame)
        record_quality_result(  # the Platform dashboard's data-quality history
            lakehouse.settings(),
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
