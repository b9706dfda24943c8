"""Supply-chain assets (forecasting/): demand forecast, backtest, safety stock, ROP, reorder
proposals, ETA, KPIs. Tagged `lakehouse/cadence: nightly`: micro-batch jobs never run them; the
`nightly_supply_chain` schedule retrains and re-forecasts. Metrics go to MLflow through
lakehouse.registry. Heavy libraries are imported inside the asset functions."""

import functools

import dagster as dg
import pyarrow as pa
from pydantic import Field

from dagster_project.lineage import lineage_run
from dagster_project.resources import LakehouseResource
from lake.tables import SILVER_TABLES, open_table, silver_uri
from lakehouse.config import Settings

NIGHTLY = {"lakehouse/cadence": "nightly"}
GROUP = "supply_chain"


class SupplyConfig(dg.Config):
    horizon: int = Field(default=28, description="forecast days")
    n_windows: int = Field(default=3, description="rolling-origin backtest windows")
    window: int = Field(default=14, description="days between backtest cutoffs")
    service_level: float = Field(default=0.95, description="cycle service level → z")
    with_prophet: bool = Field(default=False, description="add Prophet (≈ 0.3 s per series)")
    max_series: int = Field(default=0, description="keep the first N series (0 = all)")


def _options(config: SupplyConfig):
    from forecasting.pipeline import ForecastOptions

    return ForecastOptions(
        horizon=config.horizon,
        n_windows=config.n_windows,
        window=config.window,
        service_level=config.service_level,
        with_prophet=config.with_prophet,
        max_series=config.max_series or None,
    )


def _track(settings, run_name: str, params: dict, metrics: dict) -> str:
    """Log a run to the project's MLflow registry; returns the run id."""
    import mlflow

    from lakehouse.registry import configure_mlflow

    configure_mlflow(settings, "supply_chain")
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
        return run.info.run_id


# the gold Delta tables each asset writes (forecasting/pipeline.py write_gold)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "forecast_backtest": (
        "forecast_backtest",
        "forecast_champions",
        "forecast_interval_calibration",
    ),
    "demand_forecast": ("demand_forecast", "demand_forecast_hierarchy"),
    "safety_stock": ("safety_stock",),
    "reorder_point": ("reorder_point",),
    "reorder_proposals": ("reorder_proposals",),
    "eta_predictions": ("eta_predictions", "otif_daily"),
    "transfer_proposals": ("transfer_proposals",),
    "eta_risk": ("eta_risk",),
    "supply_chain_kpis": ("supply_chain_kpis",),
}


def _datasets(settings: Settings, assets: list[str]) -> list[tuple[str, str, pa.Schema | None]]:
    """Delta tables of silver assets and of the forecasting assets above (by storage URI),
    with their schema: the silver contract, or the gold table's current one (none before its
    first write)."""
    refs: list[tuple[str, str, pa.Schema | None]] = []
    for asset in assets:
        if asset in SILVER_TABLES:
            refs.append((asset, silver_uri(settings, asset), SILVER_TABLES[asset][1]))
        for table in OUTPUTS.get(asset, ()):
            uri = settings.table_uri("gold", table)
            existing = open_table(uri, settings)
            schema = existing.schema().to_arrow() if existing is not None else None
            refs.append((table, uri, pa.schema(schema) if schema is not None else None))
    return refs


def _with_lineage(name: str, deps: list[str]):
    """OpenLineage START/COMPLETE/FAIL (and the `_usage` row) around a forecasting asset:
    inputs its silver / upstream gold tables, outputs the gold tables it writes."""

    def decorate(fn):
        @functools.wraps(fn)
        def body(context: dg.AssetExecutionContext, *args, **kwargs):
            settings = Settings.from_env()
            inputs, outputs = _datasets(settings, deps), _datasets(settings, [name])
            with lineage_run(settings, context, inputs, outputs) as handle:
                result = fn(context, *args, **kwargs)
                rows = (result.metadata or {}).get("rows")
                if rows is not None and outputs:
                    handle.set_output_stats(outputs[0][0], int(getattr(rows, "value", rows)))
            return result

        return body

    return decorate


def _asset(name: str, deps: list[str], description: str, engine: str | None = None):
    """A nightly asset; with `engine`, one that runs on it (LAKEHOUSE_ENGINE: the `spark`
    engine's assets need dagster-pyspark's resource and show `spark` as a kind)."""
    spark = engine == "spark"
    # an engine asset names its resources here (it takes no resource parameters)
    resources = {"lakehouse", "pyspark"} if spark else {"lakehouse"}
    asset = dg.asset(
        name=name,
        deps=deps,
        group_name=GROUP,
        tags=NIGHTLY,
        kinds={"python", "delta", *({"spark"} if spark else set())},
        owners=["team:supply-chain"],
        description=description,
        **({"required_resource_keys": resources} if engine else {}),
    )
    return lambda fn: asset(_with_lineage(name, deps)(fn))


def _spark_session(context: dg.AssetExecutionContext, engine: str):
    """The session of dagster-pyspark's resource on the `spark` engine, else None (local)."""
    return context.resources.pyspark.spark_session if engine == "spark" else None


BACKTEST_DESCRIPTION = (
    "Rolling-origin backtest (3 windows of 28 days, cutoffs 14 days apart, each built as the "
    "nightly forecast would have been that day) of SeasonalNaive, AutoETS, CrostonOptimized, TSB "
    "and the global LightGBM (optional Prophet): MAPE, sMAPE, MASE, bias per series and model; "
    "champion per series = lowest MASE, its out-of-sample score (picked on earlier windows, "
    "scored on the last), conformal quantiles per horizon step on held-out errors and their "
    "coverage on the last window (gold forecast_backtest, forecast_champions, "
    "forecast_interval_calibration). Registers "
    "the global LightGBM in MLflow (champion only if it beats the current one on the last "
    "window). On the spark engine the demand aggregation and the statistical candidates run "
    "on Spark, LightGBM on the driver."
)


def _backtest(
    context: dg.AssetExecutionContext, config: SupplyConfig, engine: str
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_backtest, run_register_demand_model

    settings = context.resources.lakehouse.settings()
    spark = _spark_session(context, engine)
    result = run_backtest(settings, _options(config), spark=spark)
    promotion = run_register_demand_model(settings, _options(config), spark)
    context.log.info(promotion.describe())
    summary = result["summary"]
    counts = result["champion_counts"]
    metrics = {
        "champion_mase": result["champion_mase"],
        "holdout_champion_mase": result["holdout_champion_mase"],
        "coverage_80": result["coverage_80"],
        "coverage_95": result["coverage_95"],
        "champion_mape": result["champion_mape"],
        "seasonal_naive_mase": result["seasonal_naive_mase"],
        **{f"champions_{k}": v for k, v in counts.items()},
    }
    run_id = _track(settings, "forecast_backtest", config.model_dump(), metrics)
    return dg.MaterializeResult(
        metadata={
            "series": result["series"],
            "champion_counts": dg.MetadataValue.json(counts),
            "champion_mase": round(float(result["champion_mase"]), 4),
            "holdout_champion_mase": round(float(result["holdout_champion_mase"]), 4),
            "coverage_80": round(float(result["coverage_80"]), 4),
            "coverage_95": round(float(result["coverage_95"]), 4),
            "champion_mape_pct": round(float(result["champion_mape"]), 2),
            "seasonal_naive_mase": round(float(result["seasonal_naive_mase"]), 4),
            "accuracy": dg.MetadataValue.md(summary.to_pandas().round(3).to_markdown(index=False)),
            "mlflow_run_id": run_id,
            "registered_model": f"{promotion.model_name} v{promotion.version}",
            "promoted_to_champion": promotion.promoted,
            "valid_wape": round(promotion.value, 4),
            "champion_valid_wape": -1.0
            if promotion.champion_value is None
            else round(promotion.champion_value, 4),
        }
    )


FORECAST_DESCRIPTION = (
    "28-day daily forecast per SKU × store from each series' champion, with 80 % and 95 % "
    "intervals (split-conformal per horizon step on held-out backtest errors), plus the bottom-up reconciled hierarchy "
    "sku×store → store → city → total (gold demand_forecast, demand_forecast_hierarchy)."
)


def _forecast(
    context: dg.AssetExecutionContext, config: SupplyConfig, engine: str
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_forecast

    settings = context.resources.lakehouse.settings()
    fc = run_forecast(settings, _options(config), spark=_spark_session(context, engine))
    return dg.MaterializeResult(
        metadata={
            "rows": fc.height,
            "series": fc["unique_id"].n_unique(),
            "first_day": str(fc["ds"].min()),
            "total_units_28d": round(float(fc["yhat"].sum()), 1),
        }
    )


def engine_assets(engine: str) -> list[dg.AssetsDefinition]:
    """forecast_backtest and demand_forecast on `engine` (LAKEHOUSE_ENGINE): same keys, deps
    and config on both; on `spark` they take the session of dagster-pyspark's resource."""

    @_asset("forecast_backtest", ["silver_orders", "silver_weather"], BACKTEST_DESCRIPTION, engine)
    def forecast_backtest(
        context: dg.AssetExecutionContext, config: SupplyConfig
    ) -> dg.MaterializeResult:
        return _backtest(context, config, engine)

    @_asset("demand_forecast", ["forecast_backtest"], FORECAST_DESCRIPTION, engine)
    def demand_forecast(
        context: dg.AssetExecutionContext, config: SupplyConfig
    ) -> dg.MaterializeResult:
        return _forecast(context, config, engine)

    return [forecast_backtest, demand_forecast]


forecast_backtest, demand_forecast = engine_assets(Settings.from_env().engine)


@_asset(
    "safety_stock",
    ["demand_forecast", "silver_receipts", "silver_purchase_orders"],
    "Per SKU × store: μ_d (mean forecast, next 14 days), σ_d (held-out RMSE of the champion rule, steps 1-14), μ_L/σ_L "
    "(lead time from receipts), σ = sqrt(μ_L·σ_d² + μ_d²·σ_L²), safety stock = ⌈z·σ⌉.",
)
def safety_stock(
    context: dg.AssetExecutionContext, config: SupplyConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_safety_stock

    out = run_safety_stock(lakehouse.settings(), _options(config))
    return dg.MaterializeResult(
        metadata={"series": out.height, "total_safety_stock": int(out["safety_stock"].sum())}
    )


@_asset("reorder_point", ["safety_stock"], "ROP = ⌈μ_d·μ_L⌉ + safety stock, per SKU × store.")
def reorder_point(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_reorder_point

    out = run_reorder_point(lakehouse.settings())
    return dg.MaterializeResult(
        metadata={"series": out.height, "mean_rop": float(out["rop"].mean())}
    )


@_asset(
    "reorder_proposals",
    ["reorder_point", "silver_inventory_current", "demand_forecast"],
    "Reorder proposals: when on hand + on order ≤ ROP, order up to S = ROP + μ_d·7 days; "
    "predicted stock-out date per SKU × store from the forecast.",
)
def reorder_proposals(
    context: dg.AssetExecutionContext, config: SupplyConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_reorder_proposals

    out = run_reorder_proposals(lakehouse.settings(), _options(config))
    return dg.MaterializeResult(
        metadata={
            "proposals": int(out["reorder_now"].sum()),
            "units_proposed": int(out["proposed_qty"].sum()),
            "predicted_stockouts_28d": int(out["predicted_stockout_date"].is_not_null().sum()),
        }
    )


@_asset(
    "eta_predictions",
    ["silver_shipments", "silver_weather", "silver_receipts"],
    "LightGBM ETA (quantile 0.5/0.9 of transit hours) and P(late) for open shipments; "
    "evaluation (MAE hours, Brier, calibration); gold eta_predictions and otif_daily.",
)
def eta_predictions(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_eta

    settings = lakehouse.settings()
    result = run_eta(settings)
    ev = result["evaluation"]
    metrics = {
        "eta_mae_hours": ev.mae_hours,
        "promised_mae_hours": ev.mae_promised_hours,
        "p90_coverage": ev.p90_coverage,
        "brier": ev.brier,
        "brier_base_rate": ev.brier_base_rate,
    }
    run_id = _track(settings, "eta", {"test_share": 0.2}, metrics)
    from forecasting.model_registry import register_eta_model

    promotion = register_eta_model(settings, result["validated"], result["test"])
    context.log.info(promotion.describe())
    return dg.MaterializeResult(
        metadata={
            **{k: round(v, 4) for k, v in metrics.items()},
            "open_shipments": result["open_shipments"],
            "calibration": dg.MetadataValue.md(
                ev.calibration.to_pandas().round(3).to_markdown(index=False)
            ),
            "mlflow_run_id": run_id,
            "registered_model": f"{promotion.model_name} v{promotion.version}",
            "promoted_to_champion": promotion.promoted,
        }
    )


@_asset(
    "transfer_proposals",
    ["reorder_proposals", "demand_forecast", "eta_risk"],
    "Store-to-store re-allocation: a store whose predicted stock-out comes before its next "
    "receipt (its open order's predicted arrival, from eta_risk) gets units from a store "
    "within LAKEHOUSE_SUPPLY_TRANSFER_MAX_KM holding cover beyond its own need until its next "
    "receipt; quantity, stock-outs avoided, transfer cost vs lost margin "
    "(gold transfer_proposals → dbt sc_transfer_proposals).",
)
def transfer_proposals(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_transfers

    out = run_transfers(lakehouse.settings())
    return dg.MaterializeResult(
        metadata={
            "transfers": out.height,
            "units": int(out["qty"].sum()),
            "stockout_cost_avoided_eur": round(float(out["stockout_cost_avoided_eur"].sum()), 2),
            "transfer_cost_eur": round(float(out["transfer_cost_eur"].sum()), 2),
        }
    )


@_asset(
    "eta_risk",
    ["eta_predictions", "reorder_proposals", "silver_shipment_readings", "silver_purchase_orders"],
    "Open shipments: predicted arrival, P(late), whether they land after the destination's "
    "predicted stock-out, cold-chain excursions, and a re-routing suggestion (the carrier the "
    "ETA model predicts fastest on the lane); P(late) ≥ LAKEHOUSE_SUPPLY_ETA_ALERT_P_LATE or a "
    "cold-chain breach alerts the store (webhook + alerts table, 24 h cooldown).",
)
def eta_risk(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_eta_risk

    result = run_eta_risk(lakehouse.settings())
    risk, alerts = result["risk"], result["alerts"]
    return dg.MaterializeResult(
        metadata={
            "open_shipments": risk.height,  # type: ignore[attr-defined]
            "at_risk": int(risk["alert"].sum()),  # type: ignore[index]
            "land_after_stockout": int(risk["lands_after_stockout"].sum()),  # type: ignore[index]
            "cold_chain_breaches": int(risk["cold_chain_breach"].sum()),  # type: ignore[index]
            "reroute_suggestions": int(risk["reroute_carrier"].is_not_null().sum()),  # type: ignore[index]
            "alerts_raised": len(alerts),  # type: ignore[arg-type]
        }
    )


@_asset(
    "supply_chain_kpis",
    ["reorder_proposals", "eta_predictions", "silver_inventory"],
    "Headline KPIs: forecast MAPE/MASE, stock-out rate, mean stock, inventory turns, working "
    "capital €, OTIF (definitions in dbt/models/gold/supply_chain/).",
)
def supply_chain_kpis(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from forecasting.pipeline import run_kpis

    out = run_kpis(lakehouse.settings())
    values = dict(zip(out["kpi"].to_list(), out["value"].to_list(), strict=True))
    return dg.MaterializeResult(metadata={k: round(float(v), 4) for k, v in values.items()})


@dg.asset_check(asset=demand_forecast, description="No negative forecast; lo95≤lo80≤ŷ≤hi80≤hi95.")
def forecast_sane(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    import polars as pl

    from forecasting.pipeline import read_gold

    fc = read_gold(lakehouse.settings(), "demand_forecast")
    negative = fc.filter(pl.col("yhat") < 0).height
    disordered = fc.filter(
        (pl.col("lo_95") > pl.col("lo_80"))
        | (pl.col("lo_80") > pl.col("yhat"))
        | (pl.col("yhat") > pl.col("hi_80"))
        | (pl.col("hi_80") > pl.col("hi_95"))
    ).height
    return dg.AssetCheckResult(
        passed=negative == 0 and disordered == 0,
        metadata={"negative_forecasts": negative, "disordered_intervals": disordered},
    )


@dg.asset_check(asset=reorder_point, description="ROP ≥ μ (lead-time demand) for every series.")
def rop_covers_mean(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    from forecasting.pipeline import read_gold

    rp = read_gold(lakehouse.settings(), "reorder_point")
    bad = int((rp["rop"].cast(float) < rp["mu"] - 1e-9).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rop_below_mu": bad})


SUPPLY_ASSETS = [
    forecast_backtest,
    demand_forecast,
    safety_stock,
    reorder_point,
    reorder_proposals,
    eta_predictions,
    transfer_proposals,
    eta_risk,
    supply_chain_kpis,
]
nightly_job = dg.define_asset_job(
    name="nightly_supply_chain",
    # .downstream(): the dbt models over the tables these assets write
    # (dbt/models/gold/supply_chain/), rebuilt right after them, not by the 15-minute refresh.
    selection=dg.AssetSelection.assets(*SUPPLY_ASSETS).downstream(),
    description="Retrain, backtest and re-forecast demand; ROP, proposals, ETA, KPIs; then the "
    "supply-chain dbt gold models.",
)
nightly_schedule = dg.ScheduleDefinition(
    name="nightly_supply_chain_at_2am",
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/Paris",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=SUPPLY_ASSETS,
    asset_checks=[forecast_sane, rop_covers_mean],
    jobs=[nightly_job],
    schedules=[nightly_schedule],
)
