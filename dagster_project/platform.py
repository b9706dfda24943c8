"""Platform dashboard inputs: `platform_snapshot` appends rows per table, topic freshness and
Kafka lag to the lake's `_platform/` tables (lake/platform.py) after the raw and silver assets
of a run, so the gold `platform_*` models publish them with the KPIs."""

import dagster as dg

from dagster_project.assets.raw import RAW_ASSETS
from dagster_project.assets.silver import SILVER_ASSETS
from dagster_project.automation import GOLD_REFRESH
from dagster_project.resources import LakehouseResource

# one asset per _platform table (the gold dbt sources map to them one to one)
SNAPSHOT_TABLES = ("table_rows", "freshness", "kafka_lag")


@dg.multi_asset(
    name="platform_snapshot",
    group_name="platform",
    specs=[
        dg.AssetSpec(
            f"_platform_{table}",
            deps=[*(a.key for a in RAW_ASSETS), *(key for a in SILVER_ASSETS for key in a.keys)],
            description=f"<lake>/_platform/{table}: lake/platform.py, one snapshot appended per run",
            automation_condition=GOLD_REFRESH,  # snapshotted with each gold refresh
        )
        for table in SNAPSHOT_TABLES
    ],
)
def platform_snapshot(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    """Rows/files/bytes of every Delta table, newest event and ingestion time per topic, Kafka
    lag per partition (broker high-water mark − next offset the lake reads)."""
    from lake.platform import snapshot_platform

    appended = snapshot_platform(lakehouse.settings())
    context.log.info(f"platform snapshot: {appended}")
    for table in SNAPSHOT_TABLES:
        yield dg.MaterializeResult(
            asset_key=f"_platform_{table}", metadata={"rows_appended": appended[table]}
        )


# Tables written outside any one asset, read by the gold platform models.
EXTERNAL = [
    dg.AssetSpec(
        "_dead_letter",
        group_name="platform",
        description="<lake>/_dead_letter: every event ingestion rejected (the raw assets write "
        "it), with its reason and position.",
    ),
    dg.AssetSpec(
        "_platform_quality_results",
        group_name="platform",
        description="<lake>/_platform/quality_results: one row per Great Expectations suite run "
        "(the blocking asset checks append it).",
    ),
    dg.AssetSpec(
        "fraud_drift_psi_runs",
        group_name="fraud",
        description="<lake>/silver/fraud_drift_psi: the PSI per feature of every drift run (the "
        "nightly fraud_drift asset appends it).",
    ),
]

defs = dg.Definitions(assets=[platform_snapshot, *EXTERNAL])
