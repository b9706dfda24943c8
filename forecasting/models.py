"""Candidate demand models. Each *candidate group* is a function

    (train: history with y, future: exogenous rows of the next days WITHOUT y, horizon)
        -> frame (unique_id, ds, <one column per model>)

so the backtest hands a model nothing from after its cutoff (the future frame has no `y`).

- statsforecast: SeasonalNaive(7) (the benchmark), AutoETS (model "ANA": additive error and
  weekly season; the full automatic search costs ≈ 0.2 s per series here, ANA ≈ 0.04 s),
  CrostonOptimized and TSB for intermittent series. AutoARIMA is left out (≈ 1.2 s/series).
- LightGBM global: one model over all series, direct multi-horizon (every lag ≥ 28 days, so
  one model serves days 1..28 without recursion), features = lags 28/35/42/49/56/364,
  rolling means ending 28 days back, calendar (weekday, day of year, month), FR holidays,
  promotion, price ratio, weather; Tweedie objective (counts with many zeros).
- Prophet: per series, weekly + yearly seasonality, FR holidays, promotion and price ratio
  as regressors (≈ 0.3 s per series: optional).
Both groups fit on the most recent year (`FIT_DAYS`): an ETS state and Croston's smoothed
demand forget older days anyway (their cost grows with the length), and every LightGBM row
of that year still has its 364-day lag, computed from the whole history. Halving the rows
halves the fit's CPU (bench/supply_chain.py, docs/benchmarks.md).
Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import polars as pl

from forecasting.demand import EXOG

Candidate = Callable[[pl.DataFrame, pl.DataFrame, int], pl.DataFrame]
MAX_HORIZON = 28
FIT_DAYS = 364  # days of history each candidate fits on (features still see all of it)
LAGS = (28, 35, 42, 49, 56, 364)
STAT_MODELS = ("SeasonalNaive", "AutoETS", "CrostonOptimized", "TSB")
GLOBAL_FEATURES = (
    *(f"lag{k}" for k in LAGS),
    "mean7_28",
    "mean28_28",
    "mean91_28",
    "zero28_28",
    "dow",
    "doy",
    "month",
    "sku_code",
    "store_code",
    *EXOG,
)


PARALLEL_MIN_SERIES = 200  # below this, starting worker processes costs more than it saves


def statsforecast_models(
    names: tuple[str, ...] = STAT_MODELS, n_jobs: int | None = None
) -> Candidate:
    """The statsforecast candidates in one StatsForecast call. `n_jobs` None: every core
    (statsforecast's worker processes) from PARALLEL_MIN_SERIES series up, else one."""

    def fit_predict(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        from statsforecast import StatsForecast

        models = stat_models(names)
        recent = train.filter(pl.col("ds") > train["ds"].max() - timedelta(days=FIT_DAYS))
        df = recent.select("unique_id", "ds", "y").to_pandas()
        jobs = n_jobs
        if jobs is None:
            jobs = -1 if train["unique_id"].n_unique() >= PARALLEL_MIN_SERIES else 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf = StatsForecast(models=models, freq="D", n_jobs=jobs)
            out = sf.forecast(df=df, h=horizon)
        frame = pl.from_pandas(out.reset_index() if "unique_id" not in out else out)
        frame = frame.with_columns(pl.col("ds").cast(pl.Date))
        return named_columns(frame, models, names).select("unique_id", "ds", *names)

    return fit_predict


def stat_models(names: tuple[str, ...]) -> list[object]:
    """The statsforecast model objects of the candidates `names` (in that order)."""
    from statsforecast.models import TSB, AutoETS, CrostonOptimized, SeasonalNaive

    catalogue = {
        "SeasonalNaive": lambda: SeasonalNaive(season_length=7),
        "AutoETS": lambda: AutoETS(season_length=7, model="ANA"),
        "CrostonOptimized": CrostonOptimized,
        "TSB": lambda: TSB(alpha_d=0.1, alpha_p=0.1),
    }
    return [catalogue[n]() for n in names]


def named_columns(
    frame: pl.DataFrame, models: list[object], names: tuple[str, ...]
) -> pl.DataFrame:
    """statsforecast's output columns (each model's repr) renamed to the candidate names."""
    rename = {str(m): n for m, n in zip(models, names, strict=True)}
    return frame.rename({k: v for k, v in rename.items() if k in frame.columns})


def global_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Lag/rolling/calendar features over history + future rows (y null in the future).
    Every lag is ≥ 28 days: a row's features only use y from 28+ days before it."""
    lagged = pl.col("y").shift(28).over("unique_id")
    return frame.sort("unique_id", "ds").with_columns(
        *(pl.col("y").shift(k).over("unique_id").alias(f"lag{k}") for k in LAGS),
        lagged.rolling_mean(7, min_samples=1).over("unique_id").alias("mean7_28"),
        lagged.rolling_mean(28, min_samples=1).over("unique_id").alias("mean28_28"),
        lagged.rolling_mean(91, min_samples=1).over("unique_id").alias("mean91_28"),
        (lagged == 0)
        .cast(pl.Float64)
        .rolling_mean(28, min_samples=1)
        .over("unique_id")
        .alias("zero28_28"),
        pl.col("ds").dt.weekday().alias("dow"),
        pl.col("ds").dt.ordinal_day().alias("doy"),
        pl.col("ds").dt.month().alias("month"),
        # codes by sorted value, not by first appearance: stable across processes, so a
        # registered model scores new feature rows the way it was trained (model_registry.py)
        (pl.col("sku").rank("dense") - 1).cast(pl.Int64).alias("sku_code"),
        (pl.col("store_id").rank("dense") - 1).cast(pl.Int64).alias("store_code"),
    )


def lightgbm_global(num_boost_round: int = 150, seed: int = 7) -> Candidate:
    """The global LightGBM candidate (column `LightGBM`)."""

    def fit_predict(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        import lightgbm as lgb

        if horizon > MAX_HORIZON:
            raise ValueError(f"horizon {horizon} > {MAX_HORIZON}: lags would need future y")
        both = pl.concat(
            [train, future.with_columns(pl.lit(None, dtype=pl.Float64).alias("y"))],
            how="diagonal_relaxed",
        )
        feats = global_features(both)
        cutoff = train["ds"].max()
        fit_rows = recent_fit_rows(feats, cutoff)
        pred_rows = feats.filter(pl.col("ds") > cutoff)
        booster = fit_global(fit_rows, num_boost_round, seed, lgb)
        x = pred_rows.select(GLOBAL_FEATURES).to_numpy().astype(np.float64)
        yhat = np.maximum(booster.predict(x), 0.0)
        return pred_rows.select("unique_id", "ds").with_columns(pl.Series("LightGBM", yhat))

    return fit_predict


def recent_fit_rows(feats: pl.DataFrame, cutoff: date) -> pl.DataFrame:
    """The global model's training rows: the `FIT_DAYS` days up to `cutoff` that have their
    28-day lag."""
    return feats.filter(
        (pl.col("ds") <= cutoff)
        & (pl.col("ds") > cutoff - timedelta(days=FIT_DAYS))
        & pl.col("lag28").is_not_null()
    )


def fit_global(rows: pl.DataFrame, num_boost_round: int, seed: int, lgb=None):
    """Train the LightGBM booster on feature rows (returns lightgbm.Booster)."""
    if lgb is None:
        import lightgbm as lgb
    x = rows.select(GLOBAL_FEATURES).to_numpy().astype(np.float64)
    y = rows["y"].to_numpy().astype(np.float64)
    params = {
        "objective": "tweedie",
        "tweedie_variance_power": 1.2,
        "learning_rate": 0.08,
        "num_leaves": 31,
        "min_data_in_leaf": 50,
        "max_bin": 63,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        # one OpenMP thread: its workers spin-wait, and on a 2-core machine with other work
        # running two threads cost 10-17x the CPU of one (bench/supply_chain.py, 134,800 rows:
        # 34 s vs 2 s of CPU for 150 rounds); row-wise histograms suit 20 dense features
        "num_threads": 1,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }
    data = lgb.Dataset(x, y, feature_name=list(GLOBAL_FEATURES), free_raw_data=True)
    return lgb.train(params, data, num_boost_round=num_boost_round)


def prophet_model(max_series: int | None = None) -> Candidate:
    """Prophet per series (column `Prophet`); series beyond `max_series` get no forecast."""

    def fit_predict(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        import pandas as pd
        from prophet import Prophet

        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        logging.getLogger("prophet").setLevel(logging.WARNING)
        ids = sorted(train["unique_id"].unique().to_list())[:max_series]
        holiday_days = train.filter(pl.col("holiday") > 0)["ds"].unique().to_list()
        holiday_days += future.filter(pl.col("holiday") > 0)["ds"].unique().to_list()
        hol = pd.DataFrame(
            {"holiday": "fr_public", "ds": pd.to_datetime(sorted(set(holiday_days)))}
        )
        outs = []
        for uid in ids:
            hist = train.filter(pl.col("unique_id") == uid)
            fut = future.filter(pl.col("unique_id") == uid)
            m = Prophet(
                weekly_seasonality=True,
                yearly_seasonality=hist.height >= 365,
                daily_seasonality=False,
                holidays=hol if len(hol) else None,
                uncertainty_samples=0,
            )
            m.add_regressor("promo")
            m.add_regressor("price_ratio")
            pdf = hist.select("ds", "y", "promo", "price_ratio").to_pandas()
            pdf["ds"] = pd.to_datetime(pdf["ds"])
            m.fit(pdf)
            fdf = fut.select("ds", "promo", "price_ratio").to_pandas()
            fdf["ds"] = pd.to_datetime(fdf["ds"])
            yhat = np.maximum(m.predict(fdf)["yhat"].to_numpy(), 0.0)
            outs.append(fut.select("unique_id", "ds").with_columns(pl.Series("Prophet", yhat)))
        if not outs:
            return pl.DataFrame(
                schema={"unique_id": pl.String, "ds": pl.Date, "Prophet": pl.Float64}
            )
        return pl.concat(outs)

    return fit_predict


def default_candidates(with_prophet: bool = False, n_jobs: int | None = None) -> list[Candidate]:
    groups: list[Candidate] = [statsforecast_models(n_jobs=n_jobs), lightgbm_global()]
    if with_prophet:
        groups.append(prophet_model())
    return groups
