"""Forecasting benchmark: 1 000 SKU×store series × 730 days (20 SKUs × 50 stores, the supply
generator's demand model), written as a silver_orders Delta table in a temporary
LAKEHOUSE_HOME. Times the nightly job's demand steps as the assets run them, with the
default candidates (SeasonalNaive, AutoETS, CrostonOptimized, TSB, global LightGBM):
`run_backtest` (read silver, the 3 × 28-day backtest with its windows built by
`forecast_inputs`, the interval calibration, gold tables), `run_register_demand_model` (the
global LightGBM trained, logged and registered in MLflow), `run_forecast` (the final 28-day
forecast and its hierarchy), safety stock, ROP, reorder and transfer proposals; wall and CPU
seconds (this process and its worker processes) and the load average of each step. Reports
hindsight and out-of-sample champion MASE and interval coverage. Peers measured in the same
run: SeasonalNaive (accuracy), Prophet (fit + forecast on `--prophet-series` series).

    .venv/bin/python bench/supply_chain.py [--series 1000 --days 730 --prophet-series 100]
    .venv/bin/python bench/supply_chain.py --engine spark --series 200   # default vs Spark

(Named supply_chain.py, not forecasting.py: a script's folder comes first on sys.path, and a
bench/forecasting.py would shadow the `forecasting` package.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from deltalake import write_deltalake

from forecasting import backtest as bt
from forecasting.demand import forecast_inputs
from forecasting.models import prophet_model
from forecasting.pipeline import ForecastOptions, candidates
from ingestion.generators.catalog import SKUS, base_prices, promo_matrix
from ingestion.generators.supply import simulate_demand
from lake.tables import SILVER_ORDERS_SCHEMA, silver_uri
from lakehouse.config import Settings

_EPOCH = date(1970, 1, 1)


def synthetic(n_series: int, n_days: int, seed: int = 1) -> pl.DataFrame:
    n_stores = max(n_series // len(SKUS), 1)
    last = date(2026, 11, 25)
    first = last - timedelta(days=n_days - 1)
    days = np.arange((first - _EPOCH).days, (last - _EPOCH).days + 1)
    sku_of = np.repeat(np.arange(len(SKUS)), n_stores)
    store_of = np.tile(np.arange(n_stores), len(SKUS))
    rng = np.random.default_rng(seed)
    base = np.array([0.3 if s.slow else 2.0 + 60.0 / (i + 1) for i, s in enumerate(SKUS)])
    base = base[sku_of] * rng.lognormal(0, 0.5, sku_of.size)
    on, uplift = promo_matrix(days)
    d = simulate_demand(
        seed, days, base, sku_of, store_of, [s.category for s in SKUS], base_prices(), on, uplift
    )
    cities = ["Paris", "Lyon", "Marseille", "Lille", "Bordeaux"]
    n = sku_of.size
    return pl.DataFrame(
        {
            "unique_id": np.repeat(
                [f"{SKUS[k].sku}|st{s:03d}" for k, s in zip(sku_of, store_of, strict=True)],
                days.size,
            ),
            "sku": np.repeat([SKUS[k].sku for k in sku_of], days.size),
            "store_id": np.repeat([f"st{s:03d}" for s in store_of], days.size),
            "city": np.repeat([cities[s % 5] for s in store_of], days.size),
            "ds": pl.Series(np.tile(days, n).astype(np.int32)).cast(pl.Date),
            "y": d.units.T.ravel().astype(float),
            "price": d.price.T.ravel(),
        }
    )


def eta_benchmark(n_days: int, seed: int = 42) -> None:
    """The ETA asset's evaluation (forecasting.eta.evaluate_eta: train on the first 80 % of
    arrived shipments by departure, test on the last 20 %) on generated history, without the
    broker: the generator's shipments and weather tables have the silver columns."""
    from forecasting.eta import eta_features, evaluate_eta, shipment_table
    from ingestion.generators.supply import generate_supply_history

    t = time.perf_counter()
    end = date(2026, 11, 25)
    history = generate_supply_history(end - timedelta(days=n_days), end, seed, scale=0.01)
    weather = history.table("weather").with_columns(pl.col("ts").dt.date().alias("weather_date"))
    ships = shipment_table(history.table("shipments"))
    feats = eta_features(ships, weather)
    print(f"data: {ships.height} shipments over {n_days} days ({time.perf_counter() - t:.1f}s)")
    t = time.perf_counter()
    ev = evaluate_eta(feats).evaluation
    print(f"train + evaluate (3 LightGBM models, twice): {time.perf_counter() - t:.1f}s")
    print(f"test shipments: {ev.n_test}")
    print(
        f"ETA MAE: model {ev.mae_hours:.2f} h, peer 'arrives when promised' "
        f"{ev.mae_promised_hours:.2f} h ({ev.mae_hours / ev.mae_promised_hours - 1:+.0%})"
    )
    print(f"p90 coverage: {ev.p90_coverage:.1%} (target 90 %)")
    print(
        f"P(late) Brier: model {ev.brier:.4f}, peer base rate {ev.brier_base_rate:.4f} "
        f"(skill {1 - ev.brier / ev.brier_base_rate:+.1%})"
    )
    print("calibration by P(late) decile:")
    print(ev.calibration)


def write_silver_orders(settings: Settings, daily: pl.DataFrame) -> None:
    """silver_orders as the silver step writes it: one store order line per series and day
    with sales (qty = the day's units), so `daily_demand` rebuilds `daily` exactly."""
    sold = daily.filter(pl.col("y") > 0)
    n = sold.height
    ts = sold["ds"].cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    lines = pl.DataFrame(
        {
            "order_id": sold["unique_id"] + "|" + sold["ds"].cast(pl.String),
            "line": pl.Series(np.zeros(n, dtype=np.int32)),
            "ts": ts,
            "order_date": sold["ds"],
            "customer_id_hash": pl.Series(["bench"] * n),
            "channel": pl.Series(["store"] * n),
            "store_id": sold["store_id"],
            "city": sold["city"],
            "country": pl.Series(["FR"] * n),
            "sku": sold["sku"],
            "qty": sold["y"].cast(pl.Int32),
            "price": sold["price"],
            "line_amount": sold["y"] * sold["price"],
            "source_epoch": pl.Series(np.zeros(n, dtype=np.int32)),
            "source_partition": pl.Series(np.zeros(n, dtype=np.int32)),
            "source_offset": pl.Series(np.arange(n, dtype=np.int64)),
            "ingested_at": ts,
        }
    )
    write_deltalake(
        silver_uri(settings, "silver_orders"),
        lines.to_arrow().cast(SILVER_ORDERS_SCHEMA),
        mode="overwrite",
        partition_by=["order_date"],
    )


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def nightly(settings: Settings, options: ForecastOptions, spark: object | None = None) -> float:
    """The demand steps of the nightly job, one after the other as the assets run them (with
    `spark`, the Spark engine's: the session the assets get from dagster-pyspark). Returns
    the total wall seconds."""
    from forecasting import pipeline as p

    steps: list[tuple[str, float, float, str]] = []

    def step(label: str, run):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), _cpu()
        out = run()
        steps.append((label, time.perf_counter() - wall, _cpu() - cpu, _load()))
        print(f"  {label}: {steps[-1][1]:.1f}s wall, {steps[-1][2]:.1f}s CPU, {steps[-1][3]}")
        return out

    engine = "spark" if spark is not None else "default"
    print(f"nightly demand job, {engine} engine, default candidates ({_load()}):", flush=True)
    result = step(
        "forecast_backtest: run_backtest",
        lambda: p.run_backtest(settings, options, spark=spark),  # type: ignore[arg-type]
    )
    promotion = step(
        "forecast_backtest: run_register_demand_model",
        lambda: p.run_register_demand_model(settings, options, spark),  # type: ignore[arg-type]
    )
    fc = step(
        "demand_forecast: run_forecast",
        lambda: p.run_forecast(settings, options, spark=spark),  # type: ignore[arg-type]
    )
    step("safety_stock", lambda: p.run_safety_stock(settings, options))
    step("reorder_point", lambda: p.run_reorder_point(settings))
    step("reorder_proposals", lambda: p.run_reorder_proposals(settings, options))
    step("transfer_proposals", lambda: p.run_transfers(settings))
    wall = sum(s[1] for s in steps)
    cpu = sum(s[2] for s in steps)
    print(
        f"total {wall:.1f}s wall (target < 90 s on 2 cores), {cpu:.1f}s CPU; "
        f"{fc.height} forecast rows; {promotion.describe()}"
    )
    print("| step | wall s | CPU s | load average (1/5/15 min) at its end |")
    print("|---|---:|---:|---|")
    for label, w, c, ld in steps:
        print(f"| {label} | {w:.1f} | {c:.1f} | {ld} |")
    print(f"| **total** | **{wall:.1f}** | {cpu:.1f} | |")
    summary = result["summary"]
    print(summary)
    naive = float(result["seasonal_naive_mase"])  # type: ignore[arg-type]
    holdout = float(result["holdout_champion_mase"])  # type: ignore[arg-type]
    print(
        f"champion MASE: in hindsight {result['champion_mase']:.3f}, out of sample (picked on "
        f"the earlier windows, scored on the last) {holdout:.3f}; SeasonalNaive {naive:.3f}; "
        f"out-of-sample / SeasonalNaive = {holdout / naive:.3f}"
    )
    print(
        f"interval coverage on the last window (calibrated before it): 80 % → "
        f"{result['coverage_80']:.1%}, 95 % → {result['coverage_95']:.1%}"
    )
    print("champions:", result["champion_counts"])
    return wall


def engines(settings: Settings, options: ForecastOptions, cores: int) -> None:
    """The nightly demand job on the default engine, then on Spark local[cores], on the same
    silver_orders; the two lakes' champions and forecasts are compared."""
    from forecasting.pipeline import read_gold
    from lake.spark_silver import local_spark

    default = nightly(settings, options)
    kept = {t: read_gold(settings, t) for t in ("forecast_champions", "demand_forecast")}
    wall = time.perf_counter()
    spark = local_spark("bench-supply-chain", cores=cores)
    started = time.perf_counter() - wall
    print(f"\nSpark local[{cores}] session started in {started:.1f}s ({_load()})")
    try:
        on_spark = nightly(settings, options, spark)
    finally:
        spark.stop()
    for table, before in kept.items():
        after = read_gold(settings, table)
        keys = ["unique_id", "ds"] if "ds" in before.columns else ["unique_id"]
        same = after.sort(keys).equals(before.sort(keys))
        print(f"{table}: {'identical' if same else 'DIFFERENT'} on both engines")
    print(
        f"| engine | nightly demand job wall s |\n|---|---:|\n| default | {default:.1f} |\n"
        f"| Spark local[{cores}] | {on_spark:.1f} (+ {started:.1f} session start) |"
    )


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Demand forecasting benchmark: the nightly job's work (default candidates, "
        "backtest, calibration, final forecast), fit time per candidate, Prophet peer."
    )
    parser.add_argument("--series", type=int, default=1000, help="SKU×store series")
    parser.add_argument("--days", type=int, default=730, help="days of history")
    parser.add_argument(
        "--prophet-series", type=int, default=100, help="series timed with Prophet (the peer)"
    )
    parser.add_argument(
        "--eta",
        action="store_true",
        help="instead: ETA evaluation (MAE hours vs promised time, Brier vs base rate, "
        "calibration) on the supply generator's shipments",
    )
    parser.add_argument("--eta-days", type=int, default=365, help="days of shipments (--eta)")
    parser.add_argument(
        "--engine",
        choices=("default", "spark"),
        default="default",
        help="spark: the nightly demand job on the default engine, then on Spark local[2], "
        "on the same data (identical champions and forecasts checked)",
    )
    parser.add_argument("--spark-cores", type=int, default=2, help="N of local[N] (--engine)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary LAKEHOUSE_HOME")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    if args.eta:
        eta_benchmark(args.eta_days)
        return
    t = time.perf_counter()
    daily = synthetic(args.series, args.days)
    n = daily["unique_id"].n_unique()
    print(f"data: {n} series × {args.days} days built in {time.perf_counter() - t:.1f}s")
    options = ForecastOptions()
    shipped = candidates(options)  # what the nightly assets run (AutoETS included)
    home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-supply-", dir="/tmp"))
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    try:
        write_silver_orders(settings, daily)
        if args.engine == "spark":
            engines(settings, options, args.spark_cores)
            return
        nightly(settings, options)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    # 2. fit + 28-day forecast per candidate group (one split, the last 28 days)
    cutoff = daily["ds"].max() - timedelta(days=28)
    train, fut = forecast_inputs(daily, None, 28, cutoff)
    print("\n| fit + 28-day forecast, one split | series | wall s | CPU s |\n|---|---:|---:|---:|")
    for name, cand in [
        ("statsforecast SeasonalNaive+AutoETS+Croston+TSB", shipped[0]),
        ("LightGBM global", shipped[1]),
        ("both groups together (`run_candidates`, as shipped)", None),
    ]:
        wall, cpu = time.perf_counter(), _cpu()
        if cand is None:
            bt.run_candidates(shipped, train, fut, 28)
        else:
            cand(train, fut, 28)
        print(f"| {name} | {n} | {time.perf_counter() - wall:.1f} | {_cpu() - cpu:.1f} |")

    # 3. the peer: Prophet on --prophet-series series, and the shipped candidates on the same
    ids = sorted(daily["unique_id"].unique().to_list())[: args.prophet_series]
    sub_train = train.filter(pl.col("unique_id").is_in(ids))
    sub_fut = fut.filter(pl.col("unique_id").is_in(ids))
    for name, cands in [("Prophet (peer)", [prophet_model()]), ("shipped candidates", shipped)]:
        wall, cpu = time.perf_counter(), _cpu()
        bt.run_candidates(cands, sub_train, sub_fut, 28)
        spent = time.perf_counter() - wall
        print(
            f"| {name} | {len(ids)} | {spent:.1f} ({spent / len(ids):.3f} per series) | "
            f"{_cpu() - cpu:.1f} |"
        )
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
