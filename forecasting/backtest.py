"""Rolling-origin backtest, accuracy metrics, champion per series, out-of-sample champion
score, horizon-aware calibrated intervals, and store → city → total reconciliation.

Backtest: `n_windows` cutoffs, `step` days apart, the last one `horizon` days before the end
of data; each window forecasts the `horizon` days after its cutoff (the production horizon,
28 days). A window is built by `forecasting.demand.forecast_inputs` at its cutoff, the same
function the nightly forecast uses: demand and weather up to the cutoff, then the future
exogenous rows production would have had that day (promotion calendar, last regular price,
climatology weather), never the prices or weather observed afterwards.

Metrics per series and model over all backtest days:
  MAPE  = mean(|y − ŷ| / y) over days with y > 0 (undefined on zero days), in %
  sMAPE = mean(2|y − ŷ| / (|y| + |ŷ|)) with 0 when both are 0, in %
  MASE  = MAE / in-sample MAE of the weekly seasonal naive (y_t − y_{t−7}) on the history
          before the first cutoff (scale-free; < 1 beats the naive in-sample)
  bias  = (Σŷ − Σy) / Σy (share of over-forecast; 0 when Σy = 0)
Champion per series = lowest MASE over every window (ties → the first candidate in
declaration order). That minimum is chosen in hindsight, so the score reported for the
champion rule is **out of sample**: for each window w ≥ 1 the champion is picked on the
windows before w and scored on w (`holdout_mase`, the last window's figure).

Intervals: split-conformal per horizon step h = 1..horizon on **held-out** errors (the
errors, on window w, of the model picked on the windows before w: never the errors that chose
it). Errors are scaled by the series' naive MAE and pooled across series; the half-width at
step h is scale × the finite-sample conformal quantile ⌈(n+1)p⌉/n of the scaled |errors| at
steps h−3..h+3, made non-decreasing in h by an isotonic fit. Coverage is measured on the
last window with the quantiles calibrated on the windows before it; the nightly forecast uses
all held-out windows.
σ_d (safety stock) = RMSE of the held-out errors over the first `lead_days` steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from forecasting.demand import forecast_inputs
from forecasting.models import Candidate

LEVELS = (80, 95)


def cutoffs(last_day: date, n_windows: int, horizon: int, step: int | None = None) -> list[date]:
    step = step or horizon
    return [last_day - timedelta(days=horizon + step * k) for k in reversed(range(n_windows))]


def candidate_outputs(
    candidates: list[Candidate], train: pl.DataFrame, future: pl.DataFrame, horizon: int
) -> list[pl.DataFrame]:
    """Each candidate group's output on one split (unique_id, ds, <model columns>), in order.

    The groups run in threads at the same time: LightGBM (called through ctypes) and
    statsforecast's worker processes do not hold the GIL, so the global model trains on one
    core while the per-series models use the others. Each group's output depends on its
    inputs only."""
    from concurrent.futures import ThreadPoolExecutor

    if len(candidates) == 1:
        return [candidates[0](train, future, horizon)]
    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        futures = [pool.submit(c, train, future, horizon) for c in candidates]
        return [f.result() for f in futures]


def join_outputs(outs: list[pl.DataFrame], on: list[str]) -> pl.DataFrame:
    """The groups' outputs joined by key (left on the first): the result does not depend on
    which group finished first."""
    result = outs[0]
    for out in outs[1:]:
        result = result.join(out, on=on, how="left")
    return result


def run_candidates(
    candidates: list[Candidate], train: pl.DataFrame, future: pl.DataFrame, horizon: int
) -> pl.DataFrame:
    """All candidate groups on one split, joined: unique_id, ds, <model columns>."""
    return join_outputs(candidate_outputs(candidates, train, future, horizon), ["unique_id", "ds"])


@runtime_checkable
class WindowedCandidate(Protocol):
    """A candidate group that forecasts every backtest window in one call (the Spark engine's
    statsforecast group, forecasting/spark_forecast.py): unique_id, ds, cutoff, <models>."""

    def forecast_windows(self, cutoffs: Sequence[date], horizon: int) -> pl.DataFrame: ...

    def __call__(self, train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame: ...


def backtest(
    daily: pl.DataFrame,
    candidates: list[Candidate],
    n_windows: int = 3,
    horizon: int = 28,
    step: int | None = None,
    weather: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Rolling-origin forecasts: unique_id, ds, cutoff, h (days after the cutoff), y, <model
    columns> (in the candidates' order). Each window is `forecast_inputs(daily, weather,
    horizon, cutoff)`; a `WindowedCandidate` forecasts all windows at once, in a thread while
    the other groups run window by window."""
    from concurrent.futures import ThreadPoolExecutor

    last = daily["ds"].max()
    cuts = cutoffs(last, n_windows, horizon, step)
    batched = [c for c in candidates if isinstance(c, WindowedCandidate)]
    per_window = [c for c in candidates if not isinstance(c, WindowedCandidate)]
    columns: dict[int, list[str]] = {}  # candidate index → its model columns
    with ThreadPoolExecutor(max_workers=max(len(batched), 1)) as pool:
        pending = [pool.submit(c.forecast_windows, cuts, horizon) for c in batched]
        outs = []
        for cutoff in cuts:
            window = daily.filter(
                (pl.col("ds") > cutoff) & (pl.col("ds") <= cutoff + timedelta(days=horizon))
            ).select("unique_id", "ds", "y")
            if per_window:
                train, future = forecast_inputs(daily, weather, horizon, cutoff)
                groups = candidate_outputs(per_window, train, future, horizon)
                for c, out in zip(per_window, groups, strict=True):
                    columns[candidates.index(c)] = model_columns(out)
                window = join_outputs([window, *groups], ["unique_id", "ds"])
            outs.append(window.with_columns(pl.lit(cutoff).alias("cutoff")))
        preds = pl.concat(outs, how="diagonal_relaxed")
        for c, done in zip(batched, pending, strict=True):
            out = done.result()
            columns[candidates.index(c)] = model_columns(out)
            preds = preds.join(out, on=["unique_id", "ds", "cutoff"], how="left")
    models = [name for i in sorted(columns) for name in columns[i]]
    return preds.select(
        "unique_id",
        "ds",
        "y",
        *models,
        "cutoff",
        (pl.col("ds") - pl.col("cutoff")).dt.total_days().cast(pl.Int32).alias("h"),
    )


def model_columns(preds: pl.DataFrame) -> list[str]:
    return [c for c in preds.columns if c not in ("unique_id", "ds", "cutoff", "h", "y")]


def naive_scale(frame: pl.DataFrame, before: date, season: int = 7) -> pl.DataFrame:
    """In-sample MAE of the seasonal naive per series on days < before (MASE denominator)."""
    return (
        frame.filter(pl.col("ds") < before)
        .sort("unique_id", "ds")
        .with_columns((pl.col("y") - pl.col("y").shift(season).over("unique_id")).abs().alias("e"))
        .group_by("unique_id")
        .agg(pl.col("e").mean().alias("scale"))
    )


def metrics(preds: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """One row per (unique_id, model): mape, smape, mase, bias, mae, rmse, n."""
    models = model_columns(preds)
    long = (
        preds.select("unique_id", "ds", "cutoff", "y", *models)
        .unpivot(
            index=["unique_id", "ds", "cutoff", "y"],
            on=models,
            variable_name="model",
            value_name="yhat",
        )
        .with_columns(pl.col("yhat").fill_null(0.0).clip(0.0))
    )
    scale = naive_scale(frame, preds["cutoff"].min())
    err = (pl.col("yhat") - pl.col("y")).abs()
    out = (
        long.group_by("unique_id", "model")
        .agg(
            (err / pl.col("y")).filter(pl.col("y") > 0).mean().mul(100).alias("mape"),
            pl.when((pl.col("y") + pl.col("yhat")) > 0)
            .then(2 * err / (pl.col("y").abs() + pl.col("yhat").abs()))
            .otherwise(0.0)
            .mean()
            .mul(100)
            .alias("smape"),
            err.mean().alias("mae"),
            ((pl.col("yhat") - pl.col("y")) ** 2).mean().sqrt().alias("rmse"),
            pl.when(pl.col("y").sum() > 0)
            .then((pl.col("yhat").sum() - pl.col("y").sum()) / pl.col("y").sum())
            .otherwise(0.0)
            .alias("bias"),
            pl.len().alias("n"),
        )
        .join(scale, on="unique_id", how="left")
        .with_columns(
            pl.when(pl.col("scale") > 0)
            .then(pl.col("mae") / pl.col("scale"))
            .otherwise(pl.col("mae"))
            .alias("mase")
        )
    )
    order = {m: i for i, m in enumerate(models)}
    return out.with_columns(
        pl.col("model").replace_strict(order, return_dtype=pl.Int64).alias("model_rank")
    ).sort("unique_id", "model_rank")


def champions(scores: pl.DataFrame) -> pl.DataFrame:
    """unique_id → champion model (lowest MASE, ties by declaration order) and its metrics."""
    return (
        scores.sort("unique_id", "mase", "model_rank")
        .group_by("unique_id", maintain_order=True)
        .first()
        .rename({"model": "champion"})
    )


def long_errors(preds: pl.DataFrame) -> pl.DataFrame:
    """unique_id, cutoff, h, model, e = ŷ − y (ŷ clipped at 0, missing → 0)."""
    models = model_columns(preds)
    return preds.unpivot(
        index=["unique_id", "ds", "cutoff", "h", "y"],
        on=models,
        variable_name="model",
        value_name="yhat",
    ).with_columns((pl.col("yhat").fill_null(0.0).clip(0.0) - pl.col("y")).alias("e"))


def held_out_errors(preds: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Errors of the champion *rule* out of sample: for each window w ≥ 1, the model with the
    lowest MASE on windows < w, on window w. unique_id, cutoff, h, model, e, scale."""
    cuts = sorted(preds["cutoff"].unique().to_list())
    errors = long_errors(preds)
    scale = naive_scale(frame, cuts[0])
    outs = []
    for k in range(1, len(cuts)):
        picked = champions(metrics(preds.filter(pl.col("cutoff") < cuts[k]), frame))
        outs.append(
            errors.filter(pl.col("cutoff") == cuts[k]).join(
                picked.select("unique_id", pl.col("champion").alias("model")),
                on=["unique_id", "model"],
            )
        )
    if not outs:
        raise ValueError("held-out errors need at least two backtest windows")
    return (
        pl.concat(outs)
        .join(scale, on="unique_id", how="left")
        .with_columns(pl.col("scale").fill_null(0.0))
        .select("unique_id", "cutoff", "h", "model", "e", "scale")
    )


def conformal_quantile(values: np.ndarray, level: float) -> float:
    """Split-conformal quantile: the ⌈(n+1)·level⌉-th smallest of n scores (finite-sample
    valid; +inf when n is too small for the level)."""
    n = values.size
    rank = math.ceil((n + 1) * level)
    if n == 0 or rank > n:
        return float("inf")
    return float(np.partition(values, rank - 1)[rank - 1])


def isotonic(values: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in least squares (pool adjacent
    violators). Unlike a running maximum, one noisy early step does not raise every later
    one: a running maximum of noisy quantiles is biased upward and over-covers."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values.astype(float):
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            prev = blocks[-1]
            prev[0] = (prev[0] * prev[1] + mean * count) / (prev[1] + count)
            prev[1] += count
    return np.concatenate([np.full(int(count), mean) for mean, count in blocks])


def calibrate_steps(errors: pl.DataFrame, horizon: int, neighbours: int = 3) -> pl.DataFrame:
    """h, q80, q95: conformal quantiles of |e| / scale at each horizon step, pooled over series
    (series with a zero naive scale, always-constant demand, are left out) and over the steps
    h − neighbours .. h + neighbours, then made non-decreasing in h (`isotonic`)."""
    usable = errors.filter(pl.col("scale") > 0).with_columns(
        (pl.col("e").abs() / pl.col("scale")).alias("score")
    )
    scores_h = usable["h"].to_numpy()
    scores = usable["score"].to_numpy()
    quantiles = {lv: np.empty(horizon) for lv in LEVELS}
    for h in range(1, horizon + 1):
        near = scores[np.abs(scores_h - h) <= neighbours]
        for lv in LEVELS:
            quantiles[lv][h - 1] = conformal_quantile(near, lv / 100)
    return pl.DataFrame(
        {"h": pl.Series(range(1, horizon + 1), dtype=pl.Int32)}
        | {f"q{lv}": isotonic(q) for lv, q in quantiles.items()}
    )


def coverage(errors: pl.DataFrame, calibration: pl.DataFrame, y: pl.DataFrame) -> dict[str, float]:
    """Share of (series, day) whose actual y lies inside the 80 / 95 % interval built from
    `calibration` (lower bound clipped at 0, as served). `errors`: held-out errors of the
    window to score, with y joined from the backtest predictions."""
    rows = errors.join(calibration, on="h").join(y, on=["unique_id", "cutoff", "h"])
    yhat = pl.col("y") + pl.col("e")
    out = {}
    for lv in LEVELS:
        half = pl.col("scale") * pl.col(f"q{lv}")
        inside = (pl.col("y") >= (yhat - half).clip(0.0)) & (pl.col("y") <= yhat + half)
        out[f"coverage_{lv}"] = float(rows.select(inside.mean()).item())
    return out


@dataclass(frozen=True)
class Calibration:
    steps: pl.DataFrame  # h, q80, q95 (scaled by the series' naive MAE), all held-out windows
    coverage: dict[str, float]  # on the last window, calibrated on the windows before it
    holdout_mase: float  # mean MASE, last window, of the champion picked before it
    hindsight_mase: float  # mean MASE of the champion picked on every window (optimistic)


def calibrate(
    preds: pl.DataFrame, frame: pl.DataFrame, champ: pl.DataFrame, horizon: int
) -> tuple[Calibration, pl.DataFrame]:
    """(calibration, per-series held-out figures: holdout_model, holdout_mase, scale)."""
    errors = held_out_errors(preds, frame)
    cuts = sorted(errors["cutoff"].unique().to_list())
    last = errors.filter(pl.col("cutoff") == cuts[-1])
    y = preds.select("unique_id", "cutoff", "h", "y")
    if len(cuts) > 1:
        earlier = calibrate_steps(errors.filter(pl.col("cutoff") < cuts[-1]), horizon)
        cov = coverage(last, earlier, y)
    else:  # two windows: nothing left to calibrate on before the last one
        cov = {f"coverage_{lv}": float("nan") for lv in LEVELS}
    # in key order: the float means below then do not depend on a group_by's output order
    per_series = (
        last.sort("unique_id", "h")
        .group_by("unique_id", maintain_order=True)
        .agg(
            pl.col("model").first().alias("holdout_model"),
            pl.col("e").abs().mean().alias("holdout_mae"),
            pl.col("scale").first(),
        )
        .with_columns(
            pl.when(pl.col("scale") > 0)
            .then(pl.col("holdout_mae") / pl.col("scale"))
            .otherwise(pl.col("holdout_mae"))
            .alias("holdout_mase")
        )
    )
    cal = Calibration(
        steps=calibrate_steps(errors, horizon),
        coverage=cov,
        holdout_mase=float(per_series["holdout_mase"].mean()),  # type: ignore[arg-type]
        hindsight_mase=mean_metric(champ, "mase"),
    )
    return cal, per_series.drop("holdout_mae", "scale")


def sigma_from_errors(errors: pl.DataFrame, lead_days: int) -> pl.DataFrame:
    """unique_id → sigma_d: RMSE of held-out errors over the first `lead_days` steps."""
    return (
        errors.filter(pl.col("h") <= lead_days)
        .group_by("unique_id")
        .agg((pl.col("e") ** 2).mean().sqrt().alias("sigma_d"))
    )


@dataclass(frozen=True)
class ForecastResult:
    forecast: pl.DataFrame  # unique_id, sku, store_id, city, ds, model, yhat, lo/hi 80/95
    backtest: pl.DataFrame  # per-window predictions
    scores: pl.DataFrame  # metrics per series and model
    champions: pl.DataFrame  # champion per series + sigma_d, scale, holdout figures
    calibration: Calibration


def forecast_with_champions(
    daily: pl.DataFrame,
    candidates: list[Candidate],
    n_windows: int = 3,
    step: int = 14,
    horizon: int = 28,
    weather: pl.DataFrame | None = None,
) -> ForecastResult:
    """Backtest, pick champions, refit everything on all history, keep each series' champion."""
    preds, scores, champ, cal = select_champions(
        daily, candidates, n_windows, step, horizon, weather
    )
    history, future = forecast_inputs(daily, weather, horizon)
    fc = final_forecast(history, future, candidates, champ, cal.steps, horizon)
    return ForecastResult(fc, preds, scores, champ, cal)


def select_champions(
    daily: pl.DataFrame,
    candidates: list[Candidate],
    n_windows: int = 3,
    step: int = 14,
    horizon: int = 28,
    weather: pl.DataFrame | None = None,
    lead_days: int = 14,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, Calibration]:
    """(backtest predictions, metrics per series × model, champions with sigma_d, scale and
    the held-out figures, the interval calibration)."""
    preds = backtest(daily, candidates, n_windows, horizon, step, weather)
    scores = metrics(preds, daily)
    best = champions(scores)
    cal, held = calibrate(preds, daily, best, horizon)
    sigma = sigma_from_errors(held_out_errors(preds, daily), lead_days)
    champ = best.join(held, on="unique_id", how="left").join(sigma, on="unique_id", how="left")
    champ = champ.with_columns(pl.col("sigma_d").fill_null(0.0), pl.col("scale").fill_null(0.0))
    return preds, scores, champ, cal


def final_forecast(
    frame: pl.DataFrame,
    future: pl.DataFrame,
    candidates: list[Candidate],
    champ: pl.DataFrame,
    steps: pl.DataFrame,
    horizon: int = 28,
) -> pl.DataFrame:
    """Refit the candidates on all history; keep each series' champion with its intervals
    (half-width at step h = the series' naive scale × the step's calibrated quantile)."""
    final = run_candidates(candidates, frame, future, horizon)
    models = model_columns(final)
    last = frame.group_by("unique_id").agg(pl.col("ds").max().alias("last"))
    long = final.unpivot(
        index=["unique_id", "ds"], on=models, variable_name="model", value_name="yhat"
    )
    chosen = (
        long.join(
            champ.select("unique_id", pl.col("champion").alias("model"), "scale"),
            on=["unique_id", "model"],
        )
        .join(last, on="unique_id")
        .with_columns(
            pl.col("yhat").fill_null(0.0).clip(0.0),
            (pl.col("ds") - pl.col("last")).dt.total_days().cast(pl.Int32).alias("h"),
        )
        .join(steps, on="h", how="left")
        .with_columns(
            (pl.col("scale") * pl.col("q80")).alias("q80"),
            (pl.col("scale") * pl.col("q95")).alias("q95"),
        )
    )
    keys = frame.select("unique_id", "sku", "store_id", "city").unique("unique_id")
    fc = (
        chosen.join(keys, on="unique_id", how="left")
        .with_columns(
            (pl.col("yhat") - pl.col("q80")).clip(0.0).alias("lo_80"),
            (pl.col("yhat") + pl.col("q80")).alias("hi_80"),
            (pl.col("yhat") - pl.col("q95")).clip(0.0).alias("lo_95"),
            (pl.col("yhat") + pl.col("q95")).alias("hi_95"),
        )
        .select(
            "unique_id",
            "sku",
            "store_id",
            "city",
            "ds",
            "model",
            "yhat",
            "lo_80",
            "hi_80",
            "lo_95",
            "hi_95",
        )
        .sort("unique_id", "ds")
    )
    return fc


def reconcile(forecast: pl.DataFrame) -> pl.DataFrame:
    """Bottom-up hierarchy sku×store → store → city → total (coherent by construction: each
    level is the sum of the level below). Interval half-widths add in quadrature (errors
    assumed independent across series): q_parent = sqrt(Σ q_child²).
    Returns level, node, ds, yhat, lo_80, hi_80, lo_95, hi_95."""
    base = forecast.with_columns(
        (pl.col("hi_80") - pl.col("yhat")).alias("q80"),
        (pl.col("hi_95") - pl.col("yhat")).alias("q95"),
    )

    def level(name: str, node: pl.Expr) -> pl.DataFrame:
        return (
            base.with_columns(node.alias("node"))
            .group_by("node", "ds")
            .agg(
                pl.col("yhat").sum(),
                (pl.col("q80") ** 2).sum().sqrt().alias("q80"),
                (pl.col("q95") ** 2).sum().sqrt().alias("q95"),
            )
            .with_columns(pl.lit(name).alias("level"))
        )

    bottom = base.select(
        pl.lit("sku_store").alias("level"),
        pl.col("unique_id").alias("node"),
        "ds",
        "yhat",
        "q80",
        "q95",
    )
    levels = [
        bottom,
        level("store", pl.col("store_id")),
        level("city", pl.col("city")),
        level("total", pl.lit("total")),
    ]
    out = pl.concat([f.select("level", "node", "ds", "yhat", "q80", "q95") for f in levels])
    return (
        out.with_columns(
            (pl.col("yhat") - pl.col("q80")).clip(0.0).alias("lo_80"),
            (pl.col("yhat") + pl.col("q80")).alias("hi_80"),
            (pl.col("yhat") - pl.col("q95")).clip(0.0).alias("lo_95"),
            (pl.col("yhat") + pl.col("q95")).alias("hi_95"),
        )
        .drop("q80", "q95")
        .sort("level", "node", "ds")
    )


def summarise(scores: pl.DataFrame, champ: pl.DataFrame) -> pl.DataFrame:
    """Mean metrics per model plus the per-series champion row ('champion')."""
    per_model = (
        scores.group_by("model", "model_rank")
        .agg(
            pl.col("mase").mean(),
            pl.col("mape").mean(),
            pl.col("smape").mean(),
            pl.col("bias").mean(),
        )
        .sort("model_rank")
        .drop("model_rank")
    )
    best = champ.select(
        pl.lit("champion").alias("model"),
        pl.col("mase").mean(),
        pl.col("mape").mean(),
        pl.col("smape").mean(),
        pl.col("bias").mean(),
    )
    return pl.concat([per_model, best])


def champion_counts(champ: pl.DataFrame) -> dict[str, int]:
    counts = champ.group_by("champion").len()
    return dict(zip(counts["champion"].to_list(), counts["len"].to_list(), strict=True))


def mean_metric(champ: pl.DataFrame, name: str) -> float:
    value = champ[name].drop_nulls().mean()
    return float(value) if value is not None else float("nan")  # type: ignore[arg-type]
