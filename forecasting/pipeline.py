"""The supply-chain steps over the lake: read silver, compute, write gold Delta tables.

Gold tables (Delta, overwritten each nightly run) under `<lake>/gold/`:
forecast_backtest (metrics per series × model), forecast_champions (with the held-out
champion-rule score), forecast_interval_calibration (conformal quantile per horizon step and
the coverage measured on the last backtest window), demand_forecast (28 days, champion,
80/95 % intervals), demand_forecast_hierarchy (sku×store → store → city →
total), safety_stock, reorder_point, reorder_proposals, eta_predictions, otif_daily,
supply_chain_kpis, transfer_proposals (store-to-store re-allocation), eta_risk (open
shipments: P(late), stock-out before arrival, cold chain, re-routing; alerts to the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from deltalake import write_deltalake

from forecasting import backtest as bt
from forecasting.demand import daily_demand, forecast_inputs
from forecasting.inventory import (
    order_up_to_quantity,
    reorder_point,
    stockout_day,
    z_from_service_level,
)
from forecasting.models import MAX_HORIZON, Candidate, default_candidates
from ingestion.generators.catalog import SKUS
from lake.tables import open_table, silver_uri
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

    from lakehouse.registry import Promotion

GOLD_TABLES = (
    "forecast_backtest",
    "forecast_champions",
    "forecast_interval_calibration",
    "demand_forecast",
    "demand_forecast_hierarchy",
    "safety_stock",
    "reorder_point",
    "reorder_proposals",
    "eta_predictions",
    "transfer_proposals",
    "eta_risk",
    "otif_daily",
    "supply_chain_kpis",
)


@dataclass(frozen=True)
class ForecastOptions:
    horizon: int = 28
    n_windows: int = 3
    window: int = 14
    service_level: float = 0.95
    z: float | None = None  # overrides the service level
    lead_window_days: int = 14  # μ_d = mean daily forecast over the next 14 days
    review_days: float = 7.0
    with_prophet: bool = False
    max_series: int | None = None  # keep the first N series (tests, demos)

    @property
    def z_value(self) -> float:
        return self.z if self.z is not None else z_from_service_level(self.service_level)


def gold_uri(settings: Settings, name: str) -> str:
    return settings.table_uri("gold", name)


def read_silver(settings: Settings, name: str) -> pl.DataFrame | None:
    table = open_table(silver_uri(settings, name), settings)
    if table is None:
        return None
    return pl.from_arrow(table.to_pyarrow_table())  # type: ignore[return-value]


def read_gold(settings: Settings, name: str) -> pl.DataFrame:
    table = open_table(gold_uri(settings, name), settings)
    if table is None:
        raise LakehouseError(f"gold table {name} does not exist yet: materialize it first")
    return pl.from_arrow(table.to_pyarrow_table())  # type: ignore[return-value]


def write_gold(settings: Settings, name: str, frame: pl.DataFrame) -> str:
    uri = gold_uri(settings, name)
    data = frame.with_columns(pl.col(pl.String).cast(pl.String)).to_arrow()
    write_deltalake(
        uri,
        data,
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=settings.storage_options or None,
    )
    return uri


@dataclass(frozen=True)
class DemandInputs:
    daily: pl.DataFrame  # unique_id, sku, store_id, city, ds, y, price (zero-filled)
    weather: pl.DataFrame | None  # silver_weather
    history: pl.DataFrame  # daily with the model features, up to the last day
    future: pl.DataFrame  # the next `horizon` days' exogenous rows, as production sees them
    spark_daily: SparkDataFrame | None = None  # the Spark frame `daily` was collected from


EMPTY_ORDERS = "silver_orders is empty: run `lakehouse generate supply` and ingest"


def demand_inputs(
    settings: Settings,
    options: ForecastOptions,
    as_of: date | None = None,
    spark: SparkSession | None = None,
) -> DemandInputs:
    """Demand and weather from silver_orders / silver_weather, as known at the end of `as_of`
    (default: the lake's last day), with `forecast_inputs` (the same function every backtest
    window uses). With a Spark session (the `spark` engine) the daily demand is aggregated by
    Spark (forecasting/spark_forecast.py), kept there for the statistical candidates and
    collected for the driver's features and LightGBM; the frames are the same as without."""
    spark_daily = None
    if spark is not None:
        from forecasting.spark_forecast import collect_daily, spark_daily_demand

        spark_daily = spark_daily_demand(spark, settings, as_of, options.max_series)
        if spark_daily is None:
            raise LakehouseError(EMPTY_ORDERS)
        spark_daily = spark_daily.persist()
        daily = collect_daily(spark_daily)
    else:
        orders = read_silver(settings, "silver_orders")
        if orders is None or orders.height == 0:
            raise LakehouseError(EMPTY_ORDERS)
        # in key order: float sums (mean prices) then do not depend on the order files are read in
        daily = daily_demand(orders.sort("order_id", "line"))
        if as_of is not None:
            daily = daily.filter(pl.col("ds") <= as_of)
        if options.max_series:
            keep = sorted(daily["unique_id"].unique().to_list())[: options.max_series]
            daily = daily.filter(pl.col("unique_id").is_in(keep))
    weather = read_silver(settings, "silver_weather")
    if weather is not None:
        weather = weather.sort("city", "weather_date")
        if as_of is not None:
            weather = weather.filter(pl.col("weather_date") <= as_of)
    days = daily["ds"].n_unique()
    # the first backtest window must leave the global model rows with a 28-day lag to learn from
    needed = (options.n_windows - 1) * options.window + options.horizon + MAX_HORIZON + 28
    if days < needed:
        if spark_daily is not None:
            spark_daily.unpersist()
        raise LakehouseError(
            f"silver_orders holds {days} days of demand; the {options.n_windows} x "
            f"{options.horizon}-day backtest needs at least {needed}: backfill more history "
            "(`lakehouse generate supply --backfill-days 730`) and ingest it"
        )
    history, future = forecast_inputs(daily, weather, options.horizon)
    return DemandInputs(daily, weather, history, future, spark_daily)


def demand_frame(
    settings: Settings, options: ForecastOptions, spark: SparkSession | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history with features, future exogenous rows) of tonight's forecast."""
    inputs = demand_inputs(settings, options, spark=spark)
    release(inputs)
    return inputs.history, inputs.future


def candidates(options: ForecastOptions, inputs: DemandInputs | None = None) -> list[Candidate]:
    """The candidate groups; on the Spark engine (inputs with a Spark frame) the statistical
    group runs on Spark (forecasting/spark_forecast.py), LightGBM on the driver."""
    groups = default_candidates(with_prophet=options.with_prophet)
    if inputs is not None and inputs.spark_daily is not None:
        from forecasting.spark_forecast import SparkStatsModels

        groups[0] = SparkStatsModels(inputs.spark_daily)
    return groups


def release(inputs: DemandInputs) -> None:
    """Drop the Spark engine's cached daily demand (no-op on the default engine)."""
    if inputs.spark_daily is not None:
        inputs.spark_daily.unpersist()


def run_backtest(
    settings: Settings,
    options: ForecastOptions,
    as_of: date | None = None,
    spark: SparkSession | None = None,
) -> dict[str, object]:
    inputs = demand_inputs(settings, options, as_of, spark)
    try:
        _, scores, champ, cal = bt.select_champions(
            inputs.daily,
            candidates(options, inputs),
            options.n_windows,
            options.window,
            options.horizon,
            inputs.weather,
            options.lead_window_days,
        )
    finally:
        release(inputs)
    write_gold(settings, "forecast_backtest", scores)
    write_gold(settings, "forecast_champions", champ)
    write_gold(
        settings,
        "forecast_interval_calibration",
        cal.steps.with_columns(
            *(pl.lit(v).alias(k) for k, v in cal.coverage.items()),
            pl.lit(cal.holdout_mase).alias("holdout_champion_mase"),
        ),
    )
    summary = bt.summarise(scores, champ)
    return {
        "series": champ.height,
        "champion_counts": bt.champion_counts(champ),
        "summary": summary,
        "champion_mase": cal.hindsight_mase,
        "holdout_champion_mase": cal.holdout_mase,
        **cal.coverage,
        "champion_mape": bt.mean_metric(champ, "mape"),
        "seasonal_naive_mase": float(
            summary.filter(pl.col("model") == "SeasonalNaive")["mase"].mean() or float("nan")  # type: ignore[arg-type]
        ),
    }


def run_register_demand_model(
    settings: Settings, options: ForecastOptions, spark: SparkSession | None = None
) -> Promotion:
    """Register tonight's global LightGBM; champion only if it beats the current champion on
    the same (last backtest) window (forecasting/model_registry.py)."""
    from forecasting.model_registry import register_demand_model

    history, _ = demand_frame(settings, options, spark)
    return register_demand_model(settings, history, options.window)


def run_forecast(
    settings: Settings,
    options: ForecastOptions,
    as_of: date | None = None,
    spark: SparkSession | None = None,
) -> pl.DataFrame:
    champ = read_gold(settings, "forecast_champions")
    steps = read_gold(settings, "forecast_interval_calibration").select("h", "q80", "q95")
    inputs = demand_inputs(settings, options, as_of, spark)
    try:
        fc = bt.final_forecast(
            inputs.history,
            inputs.future,
            candidates(options, inputs),
            champ,
            steps,
            options.horizon,
        )
    finally:
        release(inputs)
    write_gold(settings, "demand_forecast", fc)
    write_gold(settings, "demand_forecast_hierarchy", bt.reconcile(fc))
    return fc


def lead_time_stats(settings: Settings, as_of: date | None = None) -> pl.DataFrame:
    """μ_L, σ_L (days) per SKU × store from receipts (receipt ts − order ts), falling back to
    the supplier's figures, then to the catalogue's nominal lead time with σ_L = 0. With
    `as_of`, only the receipts received by the end of that day count."""
    po = read_silver(settings, "silver_purchase_orders")
    rc = read_silver(settings, "silver_receipts")
    if as_of is not None and rc is not None:
        rc = rc.filter(pl.col("ts").dt.date() <= as_of)
    nominal = pl.DataFrame(
        {"sku": [s.sku for s in SKUS], "nominal": [float(s.lead_time_days) for s in SKUS]}
    )
    if po is None or rc is None or rc.height == 0:
        return nominal.with_columns(
            pl.lit(None, pl.String).alias("store_id"),
            pl.lit(None, pl.String).alias("supplier_id"),  # no purchase order yet: unknown
            pl.col("nominal").alias("mu_l"),
            pl.lit(0.0).alias("sigma_l"),
            pl.lit(0).alias("receipts"),
        )
    lead = rc.join(po.select("po_id", pl.col("ts").alias("ordered_at")), on="po_id").with_columns(
        ((pl.col("ts") - pl.col("ordered_at")).dt.total_seconds() / 86400).alias("lead_days")
    )
    per_series = lead.group_by("sku", "store_id", "supplier_id").agg(
        pl.col("lead_days").mean().alias("mu_series"),
        pl.col("lead_days").std().alias("sd_series"),
        pl.len().alias("receipts"),
    )
    per_supplier = lead.group_by("supplier_id").agg(
        pl.col("lead_days").mean().alias("mu_sup"), pl.col("lead_days").std().alias("sd_sup")
    )
    return (
        per_series.join(per_supplier, on="supplier_id")
        .join(nominal, on="sku", how="left")
        .with_columns(
            pl.when(pl.col("receipts") >= 5).then("mu_series").otherwise("mu_sup").alias("mu_l"),
            pl.when(pl.col("receipts") >= 5)
            .then("sd_series")
            .otherwise("sd_sup")
            .fill_null(0.0)
            .alias("sigma_l"),
        )
        .select("sku", "store_id", "supplier_id", "mu_l", "sigma_l", "receipts")
    )


def run_safety_stock(settings: Settings, options: ForecastOptions) -> pl.DataFrame:
    fc = read_gold(settings, "demand_forecast")
    champ = read_gold(settings, "forecast_champions")
    start = fc["ds"].min()
    mu_d = (
        fc.filter(pl.col("ds") < start + timedelta(days=options.lead_window_days))
        .group_by("unique_id", "sku", "store_id")
        .agg(pl.col("yhat").mean().alias("mu_d"))
    )
    lead = lead_time_stats(settings)
    joined = mu_d.join(champ.select("unique_id", "sigma_d", "champion"), on="unique_id")
    if lead["store_id"].null_count() == lead.height:
        joined = joined.join(lead.drop("store_id"), on="sku", how="left")
    else:
        joined = joined.join(lead, on=["sku", "store_id"], how="left")
    joined = joined.with_columns(
        pl.col("mu_l").fill_null(strategy="mean"), pl.col("sigma_l").fill_null(0.0)
    )
    rp = reorder_point(
        joined["mu_d"].to_numpy(),
        joined["sigma_d"].to_numpy(),
        joined["mu_l"].to_numpy(),
        joined["sigma_l"].to_numpy(),
        options.z_value,
    )
    out = joined.with_columns(
        pl.lit(options.z_value).alias("z"),
        pl.Series("sigma", rp.sigma),
        pl.Series("safety_stock_exact", rp.safety_stock_exact),
        pl.Series("safety_stock", rp.safety_stock),
    ).sort("unique_id")
    write_gold(settings, "safety_stock", out)
    return out


def run_reorder_point(settings: Settings) -> pl.DataFrame:
    ss = read_gold(settings, "safety_stock")
    mu = ss["mu_d"].to_numpy() * ss["mu_l"].to_numpy()
    out = ss.with_columns(
        pl.Series("mu", mu),
        (pl.Series(np.ceil(mu - 1e-9)).cast(pl.Int64) + pl.col("safety_stock")).alias("rop"),
    )
    write_gold(settings, "reorder_point", out)
    return out


def run_reorder_proposals(settings: Settings, options: ForecastOptions) -> pl.DataFrame:
    rop = read_gold(settings, "reorder_point")
    stock = read_silver(settings, "silver_inventory_current")
    if stock is None:
        stock = pl.DataFrame(
            schema={
                "sku": pl.String,
                "store_id": pl.String,
                "on_hand": pl.Int64,
                "on_order": pl.Int64,
            }
        )
    fc = read_gold(settings, "demand_forecast")
    joined = (
        rop.join(
            stock.select("sku", "store_id", "on_hand", "on_order"),
            on=["sku", "store_id"],
            how="left",
        )
        .with_columns(pl.col("on_hand").fill_null(0), pl.col("on_order").fill_null(0))
        .sort("unique_id")
    )
    qty = order_up_to_quantity(
        joined["on_hand"].to_numpy(),
        joined["on_order"].to_numpy(),
        joined["rop"].to_numpy(),
        joined["mu_d"].to_numpy(),
        options.review_days,
    )
    _ids, matrix = _forecast_matrix(fc, joined["unique_id"].to_list())
    day = stockout_day(joined["on_hand"].to_numpy(), matrix)
    first = fc["ds"].min()
    out = (
        joined.with_columns(
            (pl.col("on_hand") + pl.col("on_order")).alias("position"),
            pl.Series("proposed_qty", qty),
            pl.Series("stockout_in_days", day),
        )
        .with_columns(
            (pl.col("position") <= pl.col("rop")).alias("reorder_now"),
            pl.when(pl.col("stockout_in_days") > 0)
            .then(pl.lit(first) + pl.duration(days=pl.col("stockout_in_days") - 1))
            .alias("predicted_stockout_date"),
            (pl.col("rop") + pl.col("mu_d") * options.review_days)
            .ceil()
            .cast(pl.Int64)
            .alias("order_up_to"),
        )
        .select(
            "sku",
            "store_id",
            "supplier_id",
            "on_hand",
            "on_order",
            "position",
            "mu_d",
            "sigma_d",
            "mu_l",
            "sigma_l",
            "safety_stock",
            "rop",
            "order_up_to",
            "reorder_now",
            "proposed_qty",
            "predicted_stockout_date",
            "champion",
        )
    )
    write_gold(settings, "reorder_proposals", out)
    return out


def _forecast_matrix(fc: pl.DataFrame, ids: list[str]) -> tuple[list[str], np.ndarray]:
    wide = fc.pivot(on="ds", index="unique_id", values="yhat", sort_columns=True)
    order = pl.DataFrame({"unique_id": ids})
    wide = order.join(wide, on="unique_id", how="left").fill_null(0.0)
    return ids, wide.drop("unique_id").to_numpy().astype(float)


def run_eta(settings: Settings) -> dict[str, object]:
    from forecasting.eta import (
        eta_features,
        eta_predictions,
        evaluate_eta,
        otif_daily,
        shipment_table,
    )

    events = read_silver(settings, "silver_shipments")
    if events is None or events.height == 0:
        raise LakehouseError(
            "silver_shipments is empty: run `lakehouse generate supply` and ingest"
        )
    ships = shipment_table(events)
    feats = eta_features(ships, read_silver(settings, "silver_weather"))
    run = evaluate_eta(feats)
    preds = eta_predictions(run.final, feats)
    write_gold(settings, "eta_predictions", preds)
    receipts = read_silver(settings, "silver_receipts")
    otif = otif_daily(ships, receipts) if receipts is not None else pl.DataFrame()
    if otif.height:
        write_gold(settings, "otif_daily", otif)
    return {
        "evaluation": run.evaluation,
        "open_shipments": preds.height,
        "otif": otif,
        "validated": run.validated,
        "test": run.test,
    }


def run_transfers(settings: Settings) -> pl.DataFrame:
    """Gold transfer_proposals from tonight's reorder proposals and forecast; a store whose
    open order travels on a shipment expects it on the shipment's predicted arrival day
    (gold eta_risk), not ⌈μ_L⌉ days from today."""
    from forecasting.actions import transfer_proposals

    proposals = read_gold(settings, "reorder_proposals")
    forecast = read_gold(settings, "demand_forecast")
    try:
        risk = read_gold(settings, "eta_risk")
    except LakehouseError:  # the ETA steps have not run on this lake
        risk = None
    if risk is not None and risk.height:
        first = forecast["ds"].min()
        soonest = (
            risk.rename({"destination": "store_id"})
            .group_by("sku", "store_id")
            .agg(pl.col("eta").min().dt.date().alias("eta_day"))
            .with_columns(
                ((pl.col("eta_day") - pl.lit(first)).dt.total_days() + 1)
                .clip(lower_bound=1)
                .cast(pl.Int64)
                .alias("next_receipt_in_days")
            )
        )
        proposals = proposals.join(
            soonest.select("sku", "store_id", "next_receipt_in_days"),
            on=["sku", "store_id"],
            how="left",
        )
    out = transfer_proposals(proposals, forecast, settings.supply_transfer_max_km)
    write_gold(settings, "transfer_proposals", out)
    return out


def run_eta_risk(settings: Settings) -> dict[str, object]:
    """Gold eta_risk for the open shipments, and the store alerts it calls for (webhook +
    `alerts` table, cooldown: forecasting/store_alerts.py)."""
    from forecasting.actions import EtaRiskInputs, cold_chain_excursions, eta_risk
    from forecasting.eta import eta_features, eta_predictions, shipment_table, train_eta
    from forecasting.store_alerts import raise_store_alerts

    events = read_silver(settings, "silver_shipments")
    po = read_silver(settings, "silver_purchase_orders")
    if events is None or events.height == 0 or po is None:
        raise LakehouseError(
            "silver_shipments is empty: run `lakehouse generate supply` and ingest"
        )
    ships = shipment_table(events).join(po.select("po_id", "sku"), on="po_id", how="left")
    feats = eta_features(ships, read_silver(settings, "silver_weather"))
    models = train_eta(feats.filter(pl.col("arrived_at").is_not_null()))
    open_rows = feats.filter(pl.col("arrived_at").is_null())
    readings = read_silver(settings, "silver_shipment_readings")
    if readings is None:
        readings = pl.DataFrame(
            schema={
                "shipment_id": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "temperature_c": pl.Float64,
            }
        )
    risk = eta_risk(
        models,
        EtaRiskInputs(
            open_features=open_rows,
            predictions=eta_predictions(models, feats),
            proposals=read_gold(settings, "reorder_proposals"),
            excursions=cold_chain_excursions(readings, ships),
        ),
        settings.supply_eta_alert_p_late,
    )
    write_gold(settings, "eta_risk", risk)
    run_at = events["ts"].max()
    alerts = raise_store_alerts(settings, risk, run_at, settings.supply_eta_alert_p_late)  # type: ignore[arg-type]
    return {"risk": risk, "alerts": alerts}


def run_kpis(settings: Settings) -> pl.DataFrame:
    """One row of headline KPIs (definitions in dbt/models/gold/supply_chain/)."""
    champ = read_gold(settings, "forecast_champions")
    props = read_gold(settings, "reorder_proposals")
    rows: dict[str, float] = {
        "forecast_mape_pct": bt.mean_metric(champ, "mape"),
        "forecast_mase": bt.mean_metric(champ, "mase"),
        "forecast_holdout_mase": bt.mean_metric(champ, "holdout_mase"),
        "series": float(champ.height),
        "reorder_proposals": float(props["reorder_now"].sum()),
        "predicted_stockouts_28d": float(props["predicted_stockout_date"].is_not_null().sum()),
    }
    inv = read_silver(settings, "silver_inventory")
    po = read_silver(settings, "silver_purchase_orders")
    cost = (
        po.group_by("sku").agg(pl.col("unit_cost").mean())
        if po is not None
        else pl.DataFrame(
            {"sku": [s.sku for s in SKUS], "unit_cost": [s.base_price * 0.45 for s in SKUS]}
        )
    )
    if inv is not None and inv.height:
        snaps = inv.filter(pl.col("update_type") == "snapshot").join(cost, on="sku", how="left")
        days = max(snaps["update_date"].n_unique(), 1)
        rows["stockout_rate"] = float((snaps["on_hand"] == 0).mean() or 0.0)  # type: ignore[arg-type]
        rows["mean_stock_units"] = float(snaps["on_hand"].mean() or 0.0)  # type: ignore[arg-type]
        stock_value = float((snaps["on_hand"] * snaps["unit_cost"]).sum()) / days
        wc = float(((snaps["on_hand"] + snaps["on_order"]) * snaps["unit_cost"]).sum()) / days
        cogs = float((snaps["sold_qty"] * snaps["unit_cost"]).sum()) / days * 365
        rows["mean_stock_value_eur"] = stock_value
        rows["working_capital_eur"] = wc
        rows["inventory_turns"] = cogs / stock_value if stock_value else float("nan")
    try:
        otif = read_gold(settings, "otif_daily")
        total = float(otif["deliveries"].sum())
        rows["otif_rate"] = float((otif["otif_rate"] * otif["deliveries"]).sum()) / total
    except LakehouseError:
        pass
    out = pl.DataFrame({"kpi": list(rows), "value": list(rows.values())})
    write_gold(settings, "supply_chain_kpis", out)
    return out
