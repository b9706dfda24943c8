"""The sentiment head's confidence: temperature scaling, reliability / ECE, and the MLflow
champion rule of the nightly retraining (register, promote only a better head, serve only the
champion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentiment_kit import install_models, trained_models

from lakehouse.config import Settings
from sentiment import datasets
from sentiment.classifier import (
    fit_temperature,
    load_head,
    reliability,
    softmax,
)
from sentiment.datasets import Labelled


def _sample(rng: np.random.Generator, n: int, true_t: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / true_t): a head whose logits are
    true_t times too sharp."""
    logits = rng.normal(0.0, 3.0, (n, 3))
    p = softmax(logits / true_t)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return logits, labels


def test_temperature_recovers_the_overconfidence_and_lowers_ece_on_new_data() -> None:
    rng = np.random.default_rng(5)
    logits, labels = _sample(rng, 6000, true_t=2.5)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    # on a fresh sample of the same head: calibrated confidence matches accuracy
    fresh, truth = _sample(rng, 6000, true_t=2.5)
    raw, scaled = softmax(fresh), softmax(fresh / t)
    correct = raw.argmax(axis=1) == truth  # T changes no label
    assert (scaled.argmax(axis=1) == raw.argmax(axis=1)).all()
    before = reliability(raw.max(axis=1), correct)
    after = reliability(scaled.max(axis=1), correct)
    assert before.ece > 0.15 and after.ece < 0.03


def test_reliability_table_and_ece_hand_computed() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.35])
    correct = np.array([True, False, True, True, False, False])
    r = reliability(conf, correct, n_bins=10)
    assert [(round(lo, 6), n) for lo, _, n, _, _ in r.bins] == [(0.3, 1), (0.5, 3), (0.9, 2)]
    expected = (1 * abs(0 - 0.35) + 3 * abs(2 / 3 - 0.55) + 2 * abs(0.5 - 0.95)) / 6
    assert r.ece == pytest.approx(expected) and r.n == 6


def test_served_confidence_is_the_temperature_scaled_probability() -> None:
    models = trained_models()
    head = load_head(models, "static")
    assert head is not None and head.temperature > 0 and head.temperature != 1.0
    texts = ["Colis perdu, service client injoignable", "Love the new jacket!"]
    labels, confidence = head.predict(texts, ["fr", "en"], models)
    from sentiment.classifier import features

    z = head.model.decision_function(features(texts, ["fr", "en"], "static", models))
    expected = softmax(np.asarray(z) / head.temperature)
    assert confidence == pytest.approx(expected.max(axis=1))
    assert labels == [head.model.classes_[i] for i in expected.argmax(axis=1)]


def test_nightly_retraining_registers_and_serves_only_a_better_head(settings: Settings) -> None:
    from sentiment.classifier import train_head
    from sentiment.model_registry import model_name, register_head

    install_models(settings.models_dir)
    served = Path(settings.models_dir) / "sentiment" / "static" / "head.joblib"
    good = load_head(trained_models(), "static")
    assert good is not None
    first = register_head(settings, good)
    assert first.promotion.promoted and first.promotion.version == "1" and first.served
    assert first.promotion.model_name == model_name("static") == "sentiment_head_static"
    assert first.promotion.value == pytest.approx(np.mean([e.macro_f1 for e in first.evaluations]))
    assert {c.lang for c in first.calibration} == {"fr", "en"}
    for report in first.calibration:
        assert report.before.n == report.after.n >= 150
        assert 0 <= report.after.ece <= 1 and 0 <= report.before.ece <= 1
    before = served.read_bytes()
    # the same head again: a tie keeps the champion
    tie = register_head(settings, good)
    assert tie.promotion.version == "2" and not tie.promotion.promoted and not tie.served
    assert tie.promotion.champion_value == pytest.approx(first.promotion.value)
    # a head fitted on shuffled labels: far worse on the held-out sets, registered, not served
    data = datasets.training_set()
    rows = list(range(0, len(data), 9))
    shuffled = list(np.random.default_rng(1).permutation([data.labels[i] for i in rows]))
    noise = Labelled(
        [data.texts[i] for i in rows], shuffled, [data.langs[i] for i in rows], [""] * len(rows)
    )
    weak = train_head(settings.models_dir, "static", data=noise, save=False)
    third = register_head(settings, weak)
    assert third.promotion.version == "3"
    assert third.promotion.value < first.promotion.value - 0.2
    assert not third.promotion.promoted and not third.served
    assert served.read_bytes() == before  # the champion is still the head served


def test_nightly_sentiment_retraining_is_on_by_default() -> None:
    import dagster as dg

    from dagster_project.sentiment import defs

    [schedule] = [s for s in defs.schedules or [] if s.name == "train_sentiment_model_nightly"]
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "train_sentiment_model"
    assert schedule.cron_schedule == "30 2 * * *"
