"""Replay the last N weeks of generated demand under two policies (forecast vs naive fixed).

The forecast policy re-forecasts every Monday from the history before it (statsforecast
SeasonalExponentialSmoothingOptimized, weekly season, refit weekly: cheap enough for a
replay), with σ_d = the sd of its one-week-ahead errors over the previous weeks (the trailing
28-day demand sd until 2 weeks of errors exist). Promotions are known in advance: a promo day's
forecast is multiplied by the mean promo uplift measured on the history. The naive policy
fixes its reorder point and quantity at the start from the trailing 28-day mean. Both face the
same demand and lead times (the suppliers' mean, rounded up).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np

from forecasting.simulate import PolicyComparison, SimulationResult, compare_policies
from ingestion.generators.catalog import SKUS
from ingestion.generators.supply import N_STORES, SUPPLIERS, catalog_demand


def weekly_forecasts(history: np.ndarray, promo: np.ndarray, weeks: int) -> np.ndarray:
    """history [days, series] including the replay weeks; returns μ_d [weeks*7, series] for
    the last `weeks` weeks, each week forecast from the days before it."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalExponentialSmoothingOptimized

    total, n = history.shape
    start = total - weeks * 7
    out = np.zeros((weeks * 7, n))
    for w in range(weeks):
        cut = start + w * 7
        past = history[:cut]
        off = ~promo[:cut]
        warnings.simplefilter("ignore", RuntimeWarning)
        uplift = np.where(
            (promo[:cut].sum(0) > 0) & (past[off].mean(0) > 0) if off.any() else False,
            np.nanmean(np.where(promo[:cut], past, np.nan), axis=0)
            / np.maximum(np.nanmean(np.where(off, past, np.nan), axis=0), 1e-9),
            1.0,
        )
        clean = np.where(promo[:cut], past / np.where(uplift > 0, uplift, 1.0), past)
        df = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n), cut),
                "ds": np.tile(pd.date_range("2020-01-01", periods=cut), n),
                "y": clean.T.ravel(),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf = StatsForecast(models=[SeasonalExponentialSmoothingOptimized(7)], freq="D")
            fc = sf.forecast(df=df, h=7)
        block = fc.iloc[:, -1].to_numpy().reshape(n, 7).T
        block = np.maximum(block, 0) * np.where(promo[cut : cut + 7], uplift, 1.0)
        out[w * 7 : (w + 1) * 7] = block
    return out


def replay(
    weeks: int = 8, seed: int = 42, history_days: int = 365, scale: float = 0.01
) -> PolicyComparison:
    """Forecast-driven vs naive (as is, and at equal service) on the last `weeks` weeks."""
    end = datetime.now(UTC).date()
    first = end - timedelta(days=history_days)
    days = np.arange(
        (first - datetime(1970, 1, 1).date()).days, (end - datetime(1970, 1, 1).date()).days
    )
    demand = catalog_demand(seed, days, scale)
    units, promo = demand.units.astype(float), demand.promo
    mu = weekly_forecasts(units, promo, weeks)
    replay_days = weeks * 7
    actual = units[-replay_days:]
    err = actual - mu
    sigma = np.empty_like(mu)
    base_sd = units[-replay_days - 28 : -replay_days].std(axis=0)
    for w in range(weeks):
        past = err[: w * 7]
        sd = np.sqrt((past**2).mean(axis=0)) if w >= 2 else base_sd
        sigma[w * 7 : (w + 1) * 7] = sd
    sup = [SUPPLIERS[s.category] for s in SKUS]
    lead_mean = np.repeat([(s.prep_mean_h + 12) / 24 for s in sup], N_STORES)
    lead_sd = np.repeat([s.prep_sd_h / 24 for s in sup], N_STORES)
    cost = np.repeat([s.base_price * 0.45 for s in SKUS], N_STORES)
    trailing = units[-replay_days - 28 : -replay_days].mean(axis=0)
    return compare_policies(actual, mu, sigma, np.ceil(lead_mean), lead_sd, cost, trailing)


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


def replay_report(weeks: int = 8, seed: int = 42) -> str:
    return f"replay of the last {weeks} weeks, {len(SKUS) * N_STORES} series\n" + describe(
        replay(weeks, seed)
    )
