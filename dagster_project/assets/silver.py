"""silver_* assets: typed, deduplicated (MERGE on the business key), PII treated per contract.

The engine (LAKEHOUSE_ENGINE) picks the function each asset calls: lake.silver on DuckDB, or
lake.spark_silver on the session of dagster-pyspark's resource (`pyspark`). Same keys, same
checks, same metadata; the engine is the asset's first kind in the UI.
"""

from collections.abc import Callable

import dagster as dg

from dagster_project.lineage import lineage_run
from governance.policy import access_note
from lake.silver import SPECS, SilverResult, build_inventory_current, build_silver
from lake.tables import SILVER_TABLES, raw_schema, raw_uri, silver_uri
from lakehouse.config import Settings

DESCRIPTIONS = {
    "silver_orders": (
        "One row per order item (items exploded), typed (UTC ts, integer qty, double price), "
        "deduplicated by MERGE on (order_id, line), customer_id replaced by an HMAC-SHA256 "
        "pseudonym; partitioned by order_date. Late events (older than the watermark) are "
        "accepted and counted."
    ),
    "silver_sessions": "One row per shopping session (MERGE on session_id), customer pseudonymised.",
    "silver_inventory": "Every stock update per SKU × store (MERGE on sku, store_id, ts, type).",
    "silver_inventory_current": "Latest stock update per SKU × store (upsert by event time).",
    "silver_purchase_orders": "Purchase orders to suppliers (MERGE on po_id), by order_date.",
    "silver_receipts": "Goods receipts against purchase orders (MERGE on receipt_id).",
    "silver_shipments": "Shipment status events departed/arrived (MERGE on shipment_id, status).",
    "silver_shipment_readings": "In-transit temperature/position readings (shipment_id, ts).",
    "silver_weather": "Daily weather per city (MERGE on city, ts).",
    "silver_transactions": (
        "One row per card transaction (seed schema, typed: UTC ts, double amount), MERGE on "
        "transaction_id; card_hash, account_id, device_id and ip replaced by HMAC-SHA256 "
        "pseudonyms (card_hash, account_hash, device_id, ip_hash), lat/lon on a 0.01° grid; "
        "partitioned by tx_date."
    ),
    "silver_fraud_labels": (
        "Confirmed fraud labels (chargebacks, resolved disputes) as reported: MERGE on "
        "(transaction_id, reported_at); partitioned by report_date."
    ),
}


def _metadata(result: SilverResult, uri: str) -> dict[str, object]:
    status = "no data yet: its source holds no rows" if result.raw_version_to is None else "ok"
    return {
        "status": status,
        "rows_inserted": result.rows_inserted,
        "rows_in_batch": result.rows_in_batch,
        "source_rows_read": result.raw_rows_read,
        "duplicates_skipped": result.duplicates_skipped,
        "late_events": result.late_events,
        "late_before": result.late_watermark or "",
        "source_version_from": -1 if result.raw_version_from is None else result.raw_version_from,
        "source_version_to": -1 if result.raw_version_to is None else result.raw_version_to,
        "delta_version": -1 if result.table_version is None else result.table_version,
        "seconds": round(result.seconds, 3),
        "path": dg.MetadataValue.path(uri),
        **{k: v for k, v in result.extra.items() if isinstance(v, int | float | str)},
    }


def _kinds(engine: str) -> set[str]:
    return {engine, "delta"}


def _session(context: dg.AssetExecutionContext) -> object:
    return context.resources.pyspark.spark_session


def _builder(
    engine: str, name: str
) -> Callable[[dg.AssetExecutionContext, Settings], SilverResult]:
    """The build of silver table `name` on `engine` (plain functions of lake/)."""
    if engine == "spark":
        from lake.spark_silver import build_inventory_current_spark, build_silver_spark

        if name == "silver_inventory_current":
            return lambda context, settings: build_inventory_current_spark(
                settings, _session(context)
            )
        return lambda context, settings: build_silver_spark(settings, _session(context), name)
    if name == "silver_inventory_current":
        return lambda context, settings: build_inventory_current(settings)
    return lambda context, settings: build_silver(settings, name)


def silver_asset(name: str, engine: str) -> dg.AssetsDefinition:
    spec = SPECS[name]
    build = _builder(engine, name)

    @dg.asset(
        name=name,
        deps=[f"raw_{spec.topic}"],
        group_name="silver",
        kinds=_kinds(engine),
        owners=["team:data-platform"],
        pool=name,
        required_resource_keys={"lakehouse", *({"pyspark"} if engine == "spark" else set())},
        # who may read which column, from governance/policy.yaml and the contracts
        description=DESCRIPTIONS[name]
        + "\n\n"
        + access_note(f"silver.{SILVER_TABLES[name][0]}", SILVER_TABLES[name][1].names),
    )
    def _silver(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = context.resources.lakehouse.settings()
        uri = silver_uri(settings, name)
        inputs = [(f"raw_{spec.topic}", raw_uri(settings, spec.topic), raw_schema(spec.topic))]
        with lineage_run(settings, context, inputs, [(name, uri, SILVER_TABLES[name][1])]) as h:
            result = build(context, settings)
            h.set_output_stats(name, result.rows_inserted)
        context.log.info(result.summary())
        return dg.MaterializeResult(metadata=_metadata(result, uri))

    return _silver


def inventory_current_asset(engine: str) -> dg.AssetsDefinition:
    name = "silver_inventory_current"
    build = _builder(engine, name)

    @dg.asset(
        name=name,
        deps=["silver_inventory"],
        group_name="silver",
        kinds=_kinds(engine),
        owners=["team:data-platform"],
        pool=name,
        required_resource_keys={"lakehouse", *({"pyspark"} if engine == "spark" else set())},
        description=DESCRIPTIONS[name],
    )
    def _current(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = context.resources.lakehouse.settings()
        uri = silver_uri(settings, name)
        source = silver_uri(settings, "silver_inventory")
        with lineage_run(
            settings,
            context,
            [("silver_inventory", source, SILVER_TABLES["silver_inventory"][1])],
            [(name, uri, SILVER_TABLES[name][1])],
        ) as handle:
            result = build(context, settings)
            handle.set_output_stats(name, result.rows_in_batch)
        context.log.info(result.summary())
        return dg.MaterializeResult(metadata=_metadata(result, uri))

    return _current


def silver_assets(engine: str) -> list[dg.AssetsDefinition]:
    """Every silver asset, computed by `engine` (duckdb or spark)."""
    return [silver_asset(name, engine) for name in SPECS] + [inventory_current_asset(engine)]


def pyspark_resource(settings: Settings) -> dg.ConfigurableResource:
    """dagster-pyspark's resource, configured from the settings; the session (the JVM) starts
    when the first Spark asset of a run asks for it, not when the code location loads."""
    from dagster_pyspark import LazyPySparkResource

    from lake.spark_silver import spark_config

    return LazyPySparkResource(spark_config=spark_config(settings, "lakehouse-silver"))


SILVER_ASSETS = silver_assets(Settings.from_env().engine)
