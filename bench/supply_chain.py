"""Forecasting benchmark: 1 000 SKU×store series × 730 days (20 SKUs × 50 stores, the supply
generator's demand model). Times what the nightly job does with its default candidates
(SeasonalNaive, AutoETS, CrostonOptimized, TSB, global LightGBM): the 3 × 28-day backtest
with its windows built by `forecast_inputs`, the interval calibration, and the final 28-day
forecast; reports hindsight and out-of-sample champion MASE and interval coverage. Peers
measured in the same run: SeasonalNaive (accuracy), Prophet (time per series, on
`--prophet-series` series).

    .venv/bin/python bench/supply_chain.py [--series 1000 --days 730 --prophet-series 100]

(Named supply_chain.py, not forecasting.py: a script's folder comes first on sys.path, and a
bench/forecasting.py would shadow the `forecasting` package.)
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date, timedelta

import numpy as np
import polars as pl

from forecasting import backtest as bt
from forecasting.demand import forecast_inputs
from forecasting.models import prophet_model
from forecasting.pipeline import ForecastOptions, candidates
from ingestion.generators.catalog import SKUS, base_prices, promo_matrix
from ingestion.generators.supply import simulate_demand

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

    # 1. the nightly job's demand work, as `forecast_backtest` + `demand_forecast` run it
    t = time.perf_counter()
    _, scores, champ, cal = bt.select_champions(
        daily,
        shipped,
        options.n_windows,
        options.window,
        options.horizon,
        None,
        options.lead_window_days,
    )
    t_backtest = time.perf_counter() - t
    t = time.perf_counter()
    history, future = forecast_inputs(daily, None, options.horizon)
    fc = bt.final_forecast(history, future, shipped, champ, cal.steps, options.horizon)
    t_final = time.perf_counter() - t
    print(
        f"nightly demand job, default candidates: backtest {options.n_windows} × "
        f"{options.horizon} days + calibration {t_backtest:.1f}s, final 28-day forecast "
        f"{t_final:.1f}s ({fc.height} rows); total {t_backtest + t_final:.1f}s "
        f"(target < 90 s), load average {os.getloadavg()}"
    )
    table = bt.summarise(scores, champ)
    print(table)
    naive = table.filter(pl.col("model") == "SeasonalNaive")["mase"].item()
    print(
        f"champion MASE: in hindsight {cal.hindsight_mase:.3f}, out of sample (picked on the "
        f"earlier windows, scored on the last) {cal.holdout_mase:.3f}; SeasonalNaive "
        f"{naive:.3f}; out-of-sample / SeasonalNaive = {cal.holdout_mase / naive:.3f}"
    )
    print(
        f"interval coverage on the last window (calibrated before it): 80 % → "
        f"{cal.coverage['coverage_80']:.1%}, 95 % → {cal.coverage['coverage_95']:.1%}"
    )
    print("champions:", bt.champion_counts(champ))

    # 2. fit + 28-day forecast per candidate group (one split, the last 28 days)
    cutoff = daily["ds"].max() - timedelta(days=28)
    train, fut = forecast_inputs(daily, None, 28, cutoff)
    for name, cand in [
        ("statsforecast SeasonalNaive+AutoETS+Croston+TSB", shipped[0]),
        ("LightGBM global", shipped[1]),
    ]:
        t = time.perf_counter()
        cand(train, fut, 28)
        print(f"fit + 28-day forecast, {name}: {time.perf_counter() - t:.1f}s")

    # 3. the peer: Prophet, measured on --prophet-series series
    ids = sorted(daily["unique_id"].unique().to_list())[: args.prophet_series]
    t = time.perf_counter()
    prophet_model()(
        train.filter(pl.col("unique_id").is_in(ids)),
        fut.filter(pl.col("unique_id").is_in(ids)),
        28,
    )
    per = (time.perf_counter() - t) / len(ids)
    print(
        f"Prophet (peer) on {len(ids)} series: {per:.2f}s per series "
        f"(fit + 28-day forecast, one split); load average at the end {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
