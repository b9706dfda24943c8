"""Replay the lake's own demand through the nightly job's code path, as of a given day.

`lakehouse supply simulate --as-of D --weeks W` replays the W weeks ending on D (default: the
lake's last day of demand). Nothing depends on today's date, and every number comes from the
lake and seeded models: the same command twice gives the same figures.

The forecast policy is what the product ships, run with the information of each day:
- at the cutoff before the replay (D − 7W), `forecasting.pipeline.demand_inputs(as_of=…)` and
  `backtest.select_champions` choose the champion per series, calibrate the per-step interval
  quantiles and σ_d exactly as the nightly `forecast_backtest` asset does;
- every 7 days `forecast_inputs` at that day + `backtest.final_forecast` re-forecast 28 days
  with those champions (the nightly `demand_forecast`); μ_d = mean forecast of the next 14
  days (`safety_stock`); lead times from the receipts known that day (`lead_time_stats`);
- ROP and the order-up-to level come from `forecasting.inventory.reorder_point` with the
  nightly service level (`reorder_point`, `reorder_proposals`).
The peer is a naive fixed reorder policy from the trailing 28-day mean, as is and tuned (in
hindsight) to the forecast policy's stock-out rate (`forecasting.simulate.compare_policies`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from forecasting import backtest as bt
from forecasting.demand import forecast_inputs
from forecasting.pipeline import (
    ForecastOptions,
    candidates,
    demand_inputs,
    lead_time_stats,
    read_silver,
)
from forecasting.simulate import PolicyComparison, SimulationResult, compare_policies
from ingestion.generators.catalog import SKUS
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError


@dataclass(frozen=True)
class ReplayInputs:
    """What the replay's policies see, [days, series] arrays over the replayed days."""

    series: list[str]
    first_day: date
    as_of: date
    demand: np.ndarray  # actual units
    mu_d: np.ndarray  # nightly μ_d as known each morning
    sigma_d: np.ndarray  # held-out σ_d of the champion rule
    lead_days: np.ndarray  # [series] μ_L rounded up, known at the replay's start
    sigma_l: np.ndarray  # [series]
    unit_cost: np.ndarray  # [series] € at cost
    trailing_mean: np.ndarray  # [series] mean demand of the 28 days before the replay
    champions: dict[str, int]
    holdout_mase: float
    forecasts: np.ndarray  # [weeks, series, horizon] the nightly 28-day forecast of each week
    skus: list[str]  # [series]
    stores: list[str]  # [series]


def lake_last_day(settings: Settings) -> date:
    orders = read_silver(settings, "silver_orders")
    if orders is None or orders.height == 0:
        raise LakehouseError("silver_orders is empty: run `lakehouse generate supply` and ingest")
    return orders["order_date"].max()  # type: ignore[return-value]


def replay_inputs(
    settings: Settings,
    weeks: int = 8,
    as_of: date | None = None,
    options: ForecastOptions | None = None,
) -> ReplayInputs:
    options = options or ForecastOptions()
    last = lake_last_day(settings)
    as_of = as_of or last
    if as_of > last:
        raise LakehouseError(
            f"--as-of {as_of} is after the lake's last day of demand {last}: pick a day ≤ {last}"
        )
    first = as_of - timedelta(days=7 * weeks - 1)
    start_cutoff = first - timedelta(days=1)
    inputs = demand_inputs(settings, options, as_of)
    daily, weather = inputs.daily, inputs.weather
    # champions, interval calibration and σ_d as the nightly backtest had them at the start
    at_start = demand_inputs(settings, options, start_cutoff)
    _, _, champ, calibration = bt.select_champions(
        at_start.daily,
        candidates(options),
        options.n_windows,
        options.window,
        options.horizon,
        at_start.weather,
        options.lead_window_days,
    )
    series = sorted(champ["unique_id"].to_list())
    champ = champ.sort("unique_id")
    steps = calibration.steps
    days = 7 * weeks
    mu = np.zeros((days, len(series)))
    weekly = np.zeros((weeks, len(series), options.horizon))
    for w in range(weeks):
        cutoff = start_cutoff + timedelta(days=7 * w)
        history, future = forecast_inputs(
            daily.filter(pl.col("unique_id").is_in(series)), weather, options.horizon, cutoff
        )
        fc = bt.final_forecast(history, future, candidates(options), champ, steps, options.horizon)
        mu_d = (
            fc.filter(pl.col("ds") <= cutoff + timedelta(days=options.lead_window_days))
            .group_by("unique_id")
            .agg(pl.col("yhat").mean())
        )
        row = pl.DataFrame({"unique_id": series}).join(mu_d, on="unique_id", how="left")
        mu[7 * w : 7 * (w + 1)] = row["yhat"].fill_null(0.0).to_numpy()[None, :]
        weekly[w] = _matrix(
            fc.rename({"yhat": "y"}),
            series,
            cutoff + timedelta(days=1),
            cutoff + timedelta(days=options.horizon),
        ).T
    actual = _matrix(daily, series, first, as_of)
    trailing = _matrix(daily, series, first - timedelta(days=28), start_cutoff).mean(axis=0)
    keys = (
        pl.DataFrame({"unique_id": series})
        .join(daily.select("unique_id", "sku", "store_id").unique("unique_id"), on="unique_id")
        .sort("unique_id")
    )  # a join keeps no row order: every [series] array follows `series`
    lead = lead_time_stats(settings, start_cutoff)
    if lead["store_id"].null_count() == lead.height:
        lead_rows = keys.join(lead.drop("store_id"), on="sku", how="left")
    else:
        lead_rows = keys.join(lead, on=["sku", "store_id"], how="left")
    lead_rows = (
        lead_rows.unique("unique_id")
        .sort("unique_id")
        .with_columns(
            pl.col("mu_l").fill_null(strategy="mean").fill_null(3.0),
            pl.col("sigma_l").fill_null(0.0),
        )
    )
    return ReplayInputs(
        series=series,
        first_day=first,
        as_of=as_of,
        demand=actual,
        mu_d=mu,
        sigma_d=np.broadcast_to(champ["sigma_d"].to_numpy(), mu.shape).copy(),
        lead_days=np.ceil(lead_rows["mu_l"].to_numpy()),
        sigma_l=lead_rows["sigma_l"].to_numpy(),
        unit_cost=_unit_cost(settings, keys["sku"].to_list()),
        trailing_mean=trailing,
        champions=bt.champion_counts(champ),
        holdout_mase=calibration.holdout_mase,
        forecasts=weekly,
        skus=keys["sku"].to_list(),
        stores=keys["store_id"].to_list(),
    )


def _matrix(daily: pl.DataFrame, series: list[str], first: date, last: date) -> np.ndarray:
    """[days, series] units from `first` to `last` (0 where a series had no row yet)."""
    grid = pl.DataFrame({"ds": pl.date_range(first, last, eager=True)}).join(
        pl.DataFrame({"unique_id": series}), how="cross"
    )
    rows = grid.join(
        daily.select("unique_id", "ds", "y"), on=["unique_id", "ds"], how="left"
    ).with_columns(pl.col("y").fill_null(0.0))
    wide = rows.pivot(on="unique_id", index="ds", values="y").sort("ds")
    return wide.select(series).to_numpy().astype(float)


def _unit_cost(settings: Settings, skus: list[str]) -> np.ndarray:
    po = read_silver(settings, "silver_purchase_orders")
    nominal = {s.sku: s.base_price * 0.45 for s in SKUS}
    paid = (
        dict(po.group_by("sku").agg(pl.col("unit_cost").mean()).iter_rows())
        if po is not None and po.height
        else {}
    )
    # to the cent: a float mean depends on the order the lake's files are read in
    costs = [paid.get(s, nominal.get(s, 1.0)) for s in skus]
    return np.round(np.array(costs, dtype=np.float64), 2)


def replay(
    settings: Settings,
    weeks: int = 8,
    as_of: date | None = None,
    options: ForecastOptions | None = None,
) -> tuple[ReplayInputs, PolicyComparison]:
    options = options or ForecastOptions()
    inputs = replay_inputs(settings, weeks, as_of, options)
    comparison = compare_policies(
        inputs.demand,
        inputs.mu_d,
        inputs.sigma_d,
        inputs.lead_days,
        inputs.sigma_l,
        inputs.unit_cost,
        inputs.trailing_mean,
        z=options.z_value,
        review_days=options.review_days,
    )
    return inputs, comparison


def describe(result: PolicyComparison) -> str:
    fc, naive, equal = result.forecast, result.naive, result.naive_equal_service
    lines = [_table(fc, naive, equal), _verdict(fc, naive)]
    if not result.matched:
        lines.append(
            f"equal service: the naive rule does not reach {fc.stockout_rate:.2%} stock-outs "
            f"even with a reorder-point buffer of {result.naive_equal_service_buffer:.1f}"
        )
        return "\n".join(lines)
    wc = fc.working_capital / equal.working_capital - 1
    winner = "forecast-driven policy" if wc < 0 else "naive fixed policy"
    lines.append(
        f"at equal service (naive reorder point buffer {result.naive_equal_service_buffer:.0%} "
        f"over lead-time demand: stock-outs {equal.stockout_rate:.2%} vs {fc.stockout_rate:.2%}"
        f"): {winner} needs less working capital — forecast {wc:+.1%} vs naive "
        f"({fc.working_capital:,.0f} € vs {equal.working_capital:,.0f} €), inventory turns "
        f"{fc.inventory_turns:.1f} vs {equal.inventory_turns:.1f}"
    )
    return "\n".join(lines)


def _table(fc: SimulationResult, naive: SimulationResult, equal: SimulationResult) -> str:
    rows = [
        ("stock-out rate (series-days)", "stockout_rate", "{:.2%}"),
        ("fill rate", "fill_rate", "{:.2%}"),
        ("mean stock (units/series)", "mean_stock_units", "{:.1f}"),
        ("mean stock value €", "mean_stock_value", "{:,.0f}"),
        ("inventory turns (/year)", "inventory_turns", "{:.1f}"),
        ("working capital €", "working_capital", "{:,.0f}"),
        ("orders placed", "orders_placed", "{:d}"),
    ]
    lines = [f"{'KPI':32} {'forecast':>12} {'naive fixed':>12} {'naive, =service':>16}"]
    for label, attr, fmt in rows:
        cells = [fmt.format(getattr(r, attr)) for r in (fc, naive, equal)]
        lines.append(f"{label:32} {cells[0]:>12} {cells[1]:>12} {cells[2]:>16}")
    return "\n".join(lines)


def _verdict(fc: SimulationResult, naive: SimulationResult) -> str:
    wc = fc.working_capital / naive.working_capital - 1
    so = fc.stockout_rate - naive.stockout_rate
    if wc <= 0 and so <= 0:
        winner = "forecast-driven policy wins on both"
    elif so < 0:
        winner = "forecast-driven policy: fewer stock-outs, at a working-capital cost"
    else:
        winner = "naive policy: fewer stock-outs"
    return (
        f"{winner}: stock-out rate {so * 100:+.2f} points "
        f"({so / max(naive.stockout_rate, 1e-12):+.0%}), working capital {wc:+.1%} vs naive fixed"
    )


def replay_report(
    settings: Settings,
    weeks: int = 8,
    as_of: date | None = None,
    options: ForecastOptions | None = None,
) -> str:
    from forecasting.replay_actions import compare_actions, describe_actions

    inputs, comparison = replay(settings, weeks, as_of, options)
    actions = compare_actions(settings, inputs, options)
    head = (
        f"replay {inputs.first_day} .. {inputs.as_of} ({weeks} weeks), {len(inputs.series)} "
        f"series from the lake; champions at the start {inputs.champions}, out-of-sample "
        f"champion MASE {inputs.holdout_mase:.3f}"
    )
    return "\n".join(
        [
            head,
            describe(comparison),
            "",
            "supply actions on the same demand, initial stock and carrier delays:",
            describe_actions(actions),
        ]
    )
