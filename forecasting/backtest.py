"""Rolling-origin backtest, accuracy metrics, champion per series, final forecast with
intervals, and store → city → total reconciliation.

Backtest: `n_windows` cutoffs, each `step` days apart, the last one `horizon` days before the
end of data; each window trains on days ≤ cutoff and forecasts the next `horizon` days. The
candidate only receives `split_at(frame, cutoff)`: history up to the cutoff and the future
exogenous rows **without y**.

Metrics per series and model over all backtest days:
  MAPE  = mean(|y − ŷ| / y) over days with y > 0 (undefined on zero days), in %
  sMAPE = mean(2|y − ŷ| / (|y| + |ŷ|)) with 0 when both are 0, in %
  MASE  = MAE / in-sample MAE of the weekly seasonal naive (y_t − y_{t−7}) on the history
          before the first cutoff (scale-free; < 1 beats the naive in-sample)
  bias  = (Σŷ − Σy) / Σy (share of over-forecast; 0 when Σy = 0)
Champion per series = lowest MASE (ties → the first candidate in declaration order).

Intervals (any model, including LightGBM and Croston): split-conformal from the champion's
backtest errors of the series: ŷ ± q_p(|y − ŷ|) with p = 0.80 and 0.95, lower bounds clipped
at 0. σ_d (for safety stock) = RMSE of those errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from forecasting.demand import split_at
from forecasting.models import Candidate

LEVELS = (80, 95)


def cutoffs(last_day: date, n_windows: int, horizon: int, step: int | None = None) -> list[date]:
    step = step or horizon
    return [last_day - timedelta(days=horizon + step * k) for k in reversed(range(n_windows))]


def run_candidates(
    candidates: list[Candidate], train: pl.DataFrame, future: pl.DataFrame, horizon: int
) -> pl.DataFrame:
    """All candidate groups on one split, joined: unique_id, ds, <model columns>."""
    result: pl.DataFrame | None = None
    for fit_predict in candidates:
        out = fit_predict(train, future, horizon)
        result = out if result is None else result.join(out, on=["unique_id", "ds"], how="left")
    assert result is not None
    return result


def backtest(
    frame: pl.DataFrame,
    candidates: list[Candidate],
    n_windows: int = 3,
    horizon: int = 14,
) -> pl.DataFrame:
    """Rolling-origin forecasts: unique_id, ds, cutoff, y, <model columns>."""
    last = frame["ds"].max()
    outs = []
    for cutoff in cutoffs(last, n_windows, horizon):
        train, future = split_at(frame, cutoff)
        future = future.filter(pl.col("ds") <= cutoff + timedelta(days=horizon))
        preds = run_candidates(candidates, train, future, horizon)
        actual = frame.filter(
            (pl.col("ds") > cutoff) & (pl.col("ds") <= cutoff + timedelta(days=horizon))
        ).select("unique_id", "ds", "y")
        outs.append(
            actual.join(preds, on=["unique_id", "ds"], how="left").with_columns(
                pl.lit(cutoff).alias("cutoff")
            )
        )
    return pl.concat(outs, how="diagonal_relaxed")


def model_columns(preds: pl.DataFrame) -> list[str]:
    return [c for c in preds.columns if c not in ("unique_id", "ds", "cutoff", "y")]


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
    long = preds.unpivot(
        index=["unique_id", "ds", "cutoff", "y"],
        on=models,
        variable_name="model",
        value_name="yhat",
    ).with_columns(pl.col("yhat").fill_null(0.0).clip(0.0))
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


def error_quantiles(preds: pl.DataFrame, champ: pl.DataFrame) -> pl.DataFrame:
    """Per series: q80, q95 of |y − ŷ_champion| and sigma_d (RMSE) over the backtest."""
    models = model_columns(preds)
    long = preds.unpivot(
        index=["unique_id", "ds", "y"], on=models, variable_name="model", value_name="yhat"
    ).join(champ.select("unique_id", pl.col("champion").alias("model")), on=["unique_id", "model"])
    e = pl.col("yhat").fill_null(0.0).clip(0.0) - pl.col("y")
    return long.group_by("unique_id").agg(
        e.abs().quantile(0.80, "linear").alias("q80"),
        e.abs().quantile(0.95, "linear").alias("q95"),
        (e**2).mean().sqrt().alias("sigma_d"),
    )


@dataclass(frozen=True)
class ForecastResult:
    forecast: pl.DataFrame  # unique_id, sku, store_id, city, ds, model, yhat, lo/hi 80/95
    backtest: pl.DataFrame  # per-window predictions
    scores: pl.DataFrame  # metrics per series and model
    champions: pl.DataFrame  # champion per series + sigma_d, q80, q95


def forecast_with_champions(
    frame: pl.DataFrame,
    future: pl.DataFrame,
    candidates: list[Candidate],
    n_windows: int = 3,
    window: int = 14,
    horizon: int = 28,
) -> ForecastResult:
    """Backtest, pick champions, refit everything on all history, keep each series' champion."""
    preds, scores, champ = select_champions(frame, candidates, n_windows, window)
    fc = final_forecast(frame, future, candidates, champ, horizon)
    return ForecastResult(fc, preds, scores, champ)


def select_champions(
    frame: pl.DataFrame, candidates: list[Candidate], n_windows: int = 3, window: int = 14
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(backtest predictions, metrics per series × model, champions with q80/q95/sigma_d)."""
    preds = backtest(frame, candidates, n_windows, window)
    scores = metrics(preds, frame)
    best = champions(scores)
    return preds, scores, best.join(error_quantiles(preds, best), on="unique_id")


def final_forecast(
    frame: pl.DataFrame,
    future: pl.DataFrame,
    candidates: list[Candidate],
    champ: pl.DataFrame,
    horizon: int = 28,
) -> pl.DataFrame:
    """Refit the candidates on all history; keep each series' champion with its intervals."""
    final = run_candidates(candidates, frame, future, horizon)
    models = model_columns(final)
    long = final.unpivot(
        index=["unique_id", "ds"], on=models, variable_name="model", value_name="yhat"
    )
    chosen = long.join(
        champ.select("unique_id", pl.col("champion").alias("model"), "q80", "q95"),
        on=["unique_id", "model"],
    ).with_columns(pl.col("yhat").fill_null(0.0).clip(0.0))
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
