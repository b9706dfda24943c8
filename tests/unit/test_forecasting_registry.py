"""Model registration through lakehouse/registry.py on a real local MLflow SQLite registry
(under the test's LAKEHOUSE_HOME): a challenger becomes champion only if it beats the current
champion re-evaluated on the challenger's own validation window."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting.demand import calendar_features
from forecasting.eta import ETA_FEATURES, split_eta, train_eta
from forecasting.model_registry import (
    DEMAND_MODEL,
    ETA_MODEL,
    demand_validation_split,
    register_demand_model,
    register_eta_model,
    wape,
)
from lakehouse.config import Settings

START = date(2025, 1, 6)


def _history(n_days: int, n_series: int = 4, seed: int = 3) -> pl.DataFrame:
    """Weekly-seasonal Poisson demand: a real model beats a 1-round one by a wide margin."""
    rng = np.random.default_rng(seed)
    days = [START + timedelta(days=i) for i in range(n_days)]
    weekly = np.array([1.0, 0.8, 0.9, 1.0, 1.3, 2.0, 1.6])
    frames = []
    for k in range(n_series):
        level = 4.0 + 3 * k
        y = rng.poisson(level * weekly[np.arange(n_days) % 7]).astype(float)
        frames.append(
            pl.DataFrame(
                {
                    "unique_id": f"S{k}|st{k % 2}",
                    "sku": f"S{k}",
                    "store_id": f"st{k % 2}",
                    "city": "Paris",
                    "ds": days,
                    "y": y,
                    "price": 10.0,
                }
            )
        )
    return calendar_features(pl.concat(frames))


def _champion_version(model_name: str) -> str:
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_by_alias(model_name, "champion").version)


def test_demand_model_promotion_compares_on_the_same_window(settings: Settings) -> None:
    history = _history(140)
    weak = register_demand_model(settings, history, window=14, num_boost_round=1)
    assert weak.promoted and weak.champion_value is None  # fresh registry
    assert (settings.home / "mlflow" / "mlflow.db").exists()

    strong = register_demand_model(settings, history, window=14, num_boost_round=60)
    # the champion (weak) was re-scored on this window: exactly its own score, same window
    assert strong.champion_value == pytest.approx(weak.value)
    assert strong.value < strong.champion_value and strong.promoted
    assert _champion_version(DEMAND_MODEL) == strong.version

    again = register_demand_model(settings, history, window=14, num_boost_round=1)
    assert again.champion_value == pytest.approx(strong.value)
    assert not again.promoted  # worse than the champion: kept as challenger
    assert _champion_version(DEMAND_MODEL) == strong.version

    # 14 more days: the champion is evaluated on the new window, not on its stored score
    import mlflow

    champion = mlflow.lightgbm.load_model(f"models:/{DEMAND_MODEL}@champion")
    later = _history(154)
    _, valid = demand_validation_split(later, 14)
    assert valid["ds"].min() > history["ds"].max()  # a window the champion never saw
    next_night = register_demand_model(settings, later, window=14, num_boost_round=60)
    assert next_night.champion_value == pytest.approx(wape(champion, valid))
    assert next_night.champion_value != pytest.approx(strong.value)
    assert next_night.promoted == (next_night.value < next_night.champion_value)


def _shipments(n: int, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    departed = (np.datetime64("2025-01-01T00:00") + np.arange(n) * np.timedelta64(3, "h")).astype(
        "datetime64[ms]"
    )
    distance = rng.uniform(50, 900, n)
    transit = distance / 60 + rng.gamma(2.0, 1.5, n)
    promised = distance / 60 + 4
    frame = pl.DataFrame(
        {
            "departed_at": departed,
            "arrived_at": departed + (transit * 3600_000).astype("timedelta64[ms]"),
            "distance_km": distance,
            "promised_h": promised,
            "transit_h": transit,
            "late": (transit > promised).astype(float),
        }
    )
    zeros = [pl.lit(0.0).alias(c) for c in ETA_FEATURES if c not in frame.columns]
    return frame.with_columns(zeros)


def test_eta_model_promotion(settings: Settings) -> None:
    ships = _shipments(600)
    train, test = split_eta(ships)
    first = register_eta_model(settings, train_eta(train, rounds=1), test)
    assert first.promoted and first.champion_value is None
    better = register_eta_model(settings, train_eta(train, rounds=80), test)
    assert better.champion_value == pytest.approx(first.value)
    assert better.promoted and better.value < first.value
    worse = register_eta_model(settings, train_eta(train, rounds=1), test)
    assert not worse.promoted and worse.champion_value == pytest.approx(better.value)
    assert _champion_version(ETA_MODEL) == better.version
