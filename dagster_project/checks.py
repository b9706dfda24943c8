"""Great Expectations suites (lake/quality.py) as blocking Dagster asset checks."""

import dagster as dg

from dagster_project.resources import LakehouseResource
from lake.quality import SUITES, load_for_check, run_suite


def quality_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(table),
        name=f"{table}_expectations",
        blocking=True,
        description=f"Great Expectations suite `{table}` (lake/quality.py): not-null, domains, "
        "ranges and key uniqueness; a failure stops downstream assets in the run.",
    )
    def _check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        frame = load_for_check(lakehouse.settings(), table)
        report = run_suite(table, frame)
        return dg.AssetCheckResult(
            passed=report.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=report.to_metadata(),
        )

    return _check


QUALITY_CHECKS = [quality_check(table) for table in SUITES]
