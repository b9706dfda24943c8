"""Training on small simulated data: the model beats rules-only on Average Precision, the
temporal split keeps the past and the future apart, and the registry promotes only a model
that beats the champion on the same validation window."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from fraud.training import (
    DAY_US,
    MODEL_NAME,
    SplitOptions,
    champion_model,
    simulated_history,
    temporal_split,
    train_and_register,
)
from lakehouse.config import Settings
from lakehouse.registry import champion_version

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_temporal_split_orders_fit_calibrate_gap_validation() -> None:
    ts = np.arange(0, 30 * DAY_US, DAY_US // 24)
    split = temporal_split(ts, 30 * DAY_US, SplitOptions(val_days=5, gap_days=2, maturity_days=5))
    assert ts[split.fit].max() < ts[split.calibrate].min()
    assert ts[split.validate].min() - ts[split.calibrate].max() >= 2 * DAY_US
    assert ts[split.validate].max() < 25 * DAY_US  # maturity: the last 5 days are not validated


def test_model_beats_rules_and_promotion_needs_a_better_model(settings: Settings) -> None:
    tx, labels, end = simulated_history(settings, days=24, scale=0.05, seed=3, end=END)
    first = train_and_register(settings, tx, labels, end, source="simulated")
    gbdt = first.metrics["gbdt + rules (challenger)"]
    rules = first.metrics["rules only"]
    forest = first.metrics["isolation forest only"]
    assert gbdt["average_precision"] > rules["average_precision"]
    assert gbdt["average_precision"] > forest["average_precision"]
    assert gbdt["auc_roc"] > 0.9
    for metric in (
        "card_precision_at_100",
        "recall_at_1pct_fpr",
        "fraud_eur_prevented",
        "legit_eur_blocked",
        "friction_rate",
    ):
        assert np.isfinite(gbdt[metric])
    assert "promoted to champion" in first.promotion
    # low base rate: a score ten times the training fraud rate is never simply allowed
    from fraud.rules import load_config
    from fraud.scoring import score_columns
    from fraud.training import _columns, labelled_features

    frame = labelled_features(tx, labels, end)
    config = load_config()
    scored = score_columns(first.model, config, _columns(frame), frame.height, explain=False)
    floor = config.challenge_lift * first.model.base_rate
    assert 0 < floor < 0.5
    assert not ((scored.score >= floor) & (scored.decision == "ALLOW")).any()
    assert ((scored.score >= floor) & (scored.score < 0.5)).any()  # the lift decided those
    client = MlflowClient()
    assert str(champion_version(client, MODEL_NAME)) == first.model.version

    # same data, deterministic training: equal AP on the same window → the champion stays
    second = train_and_register(settings, tx, labels, end, source="simulated")
    assert "kept as challenger" in second.promotion
    assert str(champion_version(client, MODEL_NAME)) == first.model.version
    assert second.metrics[f"champion v{first.model.version}"]["average_precision"] == pytest.approx(
        second.metrics["gbdt + rules (challenger)"]["average_precision"]
    )
    # a crippled challenger (1 boosting round) is not promoted either
    third = train_and_register(
        settings, tx, labels, end, SplitOptions(rounds=1), source="simulated"
    )
    assert "kept as challenger" in third.promotion
    loaded = champion_model(settings)
    assert loaded is not None and loaded.version == first.model.version


def test_no_label_in_the_validation_window_registers_nothing(settings: Settings) -> None:
    from lakehouse.errors import PromotionRefused

    tx, labels, end = simulated_history(settings, days=16, scale=0.03, seed=4, end=END)
    options = SplitOptions(val_days=3, gap_days=1, maturity_days=2, rounds=20)
    split = temporal_split(tx["ts"].dt.epoch("us").to_numpy(), int(end.timestamp() * 1e6), options)
    validate_from = datetime.fromisoformat(split.bounds["validate_from"])
    # the chargebacks of the validation window have not arrived (streaming, before maturity)
    known = labels.join(tx.select("transaction_id", "ts"), on="transaction_id").filter(
        pl.col("ts") < validate_from
    )
    with pytest.raises(PromotionRefused) as refused:
        train_and_register(settings, tx, known.drop("ts"), end, options, source="simulated")
    assert "val_average_precision is nan" in str(refused.value)
    assert MlflowClient().search_registered_models() == []
    assert not (settings.models_dir / "fraud" / "report.json").exists()
