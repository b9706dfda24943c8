"""Register the supply-chain models in the project's MLflow registry (lakehouse/registry.py).

Two registered models:

- `supply_demand_lightgbm_global`: the global LightGBM demand model. Validation window = the
  last `window` days of history (the last backtest window). The challenger is trained on the
  days before it; metric = WAPE = Σ|y − ŷ| / Σy over every series and day of the window.
- `supply_eta_transit_median`: the ETA model (LightGBM quantile 0.5 of transit hours), trained
  on the train split of `forecasting.eta.split_eta`; metric = MAE in hours on the test split.
  The p90 and P(late) boosters are logged in the same run as LightGBM model files (not
  registered).

The registered artifact is the model that was evaluated (trained before the validation
window), not the refit on all data that serves tonight's forecast: its metric is a true
out-of-sample score. `promote_if_better` moves the `champion` alias only if the challenger
beats the current champion **re-evaluated on the challenger's validation window** (a score
stored when the champion was registered measured another window). The champion was trained
before its own, earlier window, so the new window is out of sample for it too as long as data
only grows. A champion whose features differ from today's (the feature set changed) cannot be
scored: the challenger is then promoted. Lower is better for both metrics; ties keep the
champion. mlflow and lightgbm are imported inside the functions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from forecasting.eta import ETA_FEATURES, EtaModels, mae_hours
from forecasting.models import GLOBAL_FEATURES, fit_global, global_features, recent_fit_rows
from lakehouse.config import Settings

if TYPE_CHECKING:
    from lakehouse.registry import Promotion

EXPERIMENT = "supply_chain"
DEMAND_MODEL = "supply_demand_lightgbm_global"
ETA_MODEL = "supply_eta_transit_median"


def demand_validation_split(
    history: pl.DataFrame, window: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(fit rows, validation rows) of global features: validation = the last `window` days.
    Every feature lags y by ≥ 28 days, so with window ≤ 28 no validation y leaks in."""
    if window > 28:
        raise ValueError(f"window {window} > 28: the lag-28 features would see validation y")
    feats = global_features(history)
    cutoff = history["ds"].max() - timedelta(days=window)
    fit_rows = recent_fit_rows(feats, cutoff)  # what the demand candidate fits on
    valid_rows = feats.filter(pl.col("ds") > cutoff)
    return fit_rows, valid_rows


def wape(booster: object, rows: pl.DataFrame) -> float:
    """Σ|y − ŷ| / Σy of a global demand booster on feature rows (lower is better)."""
    x = rows.select(GLOBAL_FEATURES).to_numpy().astype(np.float64)
    yhat = np.maximum(booster.predict(x, num_threads=1), 0.0)  # type: ignore[attr-defined]
    y = rows["y"].to_numpy().astype(np.float64)
    return float(np.abs(y - yhat).sum() / max(y.sum(), 1e-9))


def _champion(model_name: str, features: tuple[str, ...]) -> object | None:
    """The champion booster, or None (fresh registry, or trained on other features)."""
    import mlflow

    from lakehouse.registry import champion_version

    if champion_version(mlflow.MlflowClient(), model_name) is None:
        return None
    booster = mlflow.lightgbm.load_model(f"models:/{model_name}@champion")
    return booster if list(booster.feature_name()) == list(features) else None


def register_demand_model(
    settings: Settings, history: pl.DataFrame, window: int = 14, num_boost_round: int = 150
) -> Promotion:
    """Train the global LightGBM on the days before the validation window, log and register
    it, and make it champion only if its WAPE beats the champion's on the same window."""
    import mlflow

    from lakehouse.registry import configure_mlflow, promote_if_better

    configure_mlflow(settings, EXPERIMENT)
    fit_rows, valid_rows = demand_validation_split(history, window)
    challenger = fit_global(fit_rows, num_boost_round, seed=7)
    value = wape(challenger, valid_rows)
    champion = _champion(DEMAND_MODEL, GLOBAL_FEATURES)
    champion_value = wape(champion, valid_rows) if champion is not None else None
    first, last = valid_rows["ds"].min(), valid_rows["ds"].max()
    with mlflow.start_run(run_name="demand_lightgbm_global"):
        mlflow.log_params(
            {
                "validation_first_day": str(first),
                "validation_last_day": str(last),
                "series": history["unique_id"].n_unique(),
                "num_boost_round": num_boost_round,
            }
        )
        mlflow.log_metric("valid_wape", value)
        if champion_value is not None:
            mlflow.log_metric("champion_valid_wape", champion_value)
        info = mlflow.lightgbm.log_model(challenger, name="model")
    return promote_if_better(
        info.model_uri, DEMAND_MODEL, "valid_wape", value, champion_value, higher_is_better=False
    )


def register_eta_model(settings: Settings, validated: EtaModels, test: pl.DataFrame) -> Promotion:
    """Log the ETA boosters trained on the train split (`EtaRun.validated`) and register the
    median one; champion only if its MAE (hours) on `test` beats the champion's on `test`."""
    import mlflow

    from lakehouse.registry import configure_mlflow, promote_if_better

    configure_mlflow(settings, EXPERIMENT)
    value = mae_hours(validated.median, test)
    champion = _champion(ETA_MODEL, ETA_FEATURES)
    champion_value = mae_hours(champion, test) if champion is not None else None
    with mlflow.start_run(run_name="eta_transit"):
        mlflow.log_params(
            {
                "test_first_departure": str(test["departed_at"].min()),
                "test_shipments": test.height,
            }
        )
        mlflow.log_metric("test_mae_hours", value)
        if champion_value is not None:
            mlflow.log_metric("champion_test_mae_hours", champion_value)
        info = mlflow.lightgbm.log_model(validated.median, name="model")
        # the companions as plain LightGBM model files (lightgbm.Booster(model_file=...))
        mlflow.log_text(validated.p90.model_to_string(), "eta_p90.lgb.txt")  # type: ignore[attr-defined]
        mlflow.log_text(validated.late.model_to_string(), "eta_p_late.lgb.txt")  # type: ignore[attr-defined]
    return promote_if_better(
        info.model_uri, ETA_MODEL, "test_mae_hours", value, champion_value, higher_is_better=False
    )
