"""Annex C thresholds, rule overrides, the shipped config, the simulator's contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from fraud.rules import (
    ALLOW,
    BLOCK,
    CHALLENGE,
    decide,
    load_config,
    rules_only_score,
    score_decisions,
)
from fraud.simulator import generate_transactions
from ingestion.contracts import contract
from ingestion.validation import validate
from lakehouse.errors import ConfigError


def columns(n: int, **changes: object) -> dict[str, np.ndarray]:
    base: dict[str, object] = {
        "amount": 50.0,
        "channel": "pos",
        "country": "FR",
        "merchant_id": "m_1",
        "merchant_category": "grocery",
        "count_tx_1m_card": 1.0,  # the velocity overrides read these features
        "uniq_merchant_1h_card": 1.0,
        "three_ds_status": None,  # a v1 event: no 3-D Secure result
    }
    base.update(changes)
    return {
        k: np.array([v] * n, dtype=object if v is None or isinstance(v, str) else np.float64)
        for k, v in base.items()
    }


def test_annex_c_thresholds() -> None:
    scores = np.array([0.0, 0.4999, 0.5, 0.65, 0.8, 0.8001, 1.0])
    assert score_decisions(scores, 0.5, 0.8).tolist() == [
        ALLOW,
        ALLOW,
        CHALLENGE,
        CHALLENGE,
        CHALLENGE,
        BLOCK,
        BLOCK,
    ]
    config = load_config()
    assert (config.challenge, config.block) == (0.5, 0.8)
    stricter = config.with_thresholds(0.3, 0.6)
    assert score_decisions(np.array([0.35, 0.7]), stricter.challenge, stricter.block).tolist() == [
        CHALLENGE,
        BLOCK,
    ]
    with pytest.raises(ConfigError):
        config.with_thresholds(0.9, 0.5)


def test_rules_override_the_score_and_never_lower_it() -> None:
    config = load_config()
    n = 5
    cols = columns(n)
    cols["amount"] = np.array([50.0, 20_000.0, 50.0, 800.0, 800.0])
    cols["country"] = np.array(["FR", "FR", "IR", "FR", "FR"], dtype=object)
    cols["channel"] = np.array(["pos", "pos", "pos", "ecom", "ecom"], dtype=object)
    score = np.array([0.1, 0.1, 0.1, 0.1, 0.95])
    out = decide(config, score, np.zeros(n), 1.0, cols)
    assert out.decision.tolist() == [ALLOW, BLOCK, BLOCK, CHALLENGE, BLOCK]
    assert out.fired_rules == [
        [],
        ["R001_amount_cap"],
        ["R002_blocked_country"],
        ["R004_ecom_without_3ds"],
        ["R004_ecom_without_3ds"],
    ]
    sanctioned = columns(1, merchant_id="m_sanctioned_001")
    assert decide(config, np.array([0.0]), np.zeros(1), 1.0, sanctioned).decision.tolist() == [
        BLOCK
    ]


def test_r004_challenges_only_ecom_payments_without_3ds_authentication() -> None:
    """transactions v2: Y (authenticated) and A (attempted) need no step-up; N, U, R and no
    result (a v1 event) over the threshold are challenged; other channels never by R004."""
    config = load_config()
    statuses = ["Y", "A", "N", "U", "R", None, None]
    n = len(statuses)
    cols = columns(n)
    cols["channel"] = np.array(["ecom"] * 6 + ["pos"], dtype=object)
    cols["amount"] = np.array([800.0] * n)
    cols["three_ds_status"] = np.array(statuses, dtype=object)
    out = decide(config, np.full(n, 0.01), np.zeros(n), 1.0, cols)
    assert out.decision.tolist() == [ALLOW, ALLOW, *[CHALLENGE] * 4, ALLOW]
    assert [("R004_ecom_without_3ds" in r) for r in out.fired_rules] == [
        False,
        False,
        True,
        True,
        True,
        True,
        False,
    ]
    # the batch path evaluates whole columns through polars (> 64 rows): same answers
    many = columns(70 * n)
    many["channel"] = np.tile(cols["channel"], 70)
    many["amount"] = np.full(70 * n, 800.0)
    many["three_ds_status"] = np.tile(cols["three_ds_status"], 70)
    batch = decide(config, np.full(70 * n, 0.01), np.zeros(70 * n), 1.0, many)
    assert batch.decision.tolist() == out.decision.tolist() * 70
    assert config.version == "rules-v2"


def test_velocity_rules_override_a_low_score() -> None:
    config = load_config()
    cols = columns(4)
    cols["count_tx_1m_card"] = np.array([4.0, 5.0, 9.0, np.nan])
    cols["uniq_merchant_1h_card"] = np.array([4.0, 5.0, 10.0, np.nan])
    out = decide(config, np.full(4, 0.02), np.zeros(4), 1.0, cols)
    assert out.decision.tolist() == [ALLOW, CHALLENGE, BLOCK, ALLOW]
    assert out.fired_rules == [
        [],
        ["R005_card_payments_per_minute"],
        ["R005_card_payments_per_minute", "R006_card_merchants_per_hour"],
        [],
    ]


def test_anomaly_raises_allow_to_challenge() -> None:
    config = load_config()
    out = decide(config, np.array([0.1, 0.1, 0.9]), np.array([0.7, 0.3, 0.7]), 0.6, columns(3))
    assert out.decision.tolist() == [CHALLENGE, ALLOW, BLOCK]
    assert out.anomalous.tolist() == [True, False, False]


def test_rules_only_baseline_scores() -> None:
    config = load_config()
    cols = columns(3)
    cols.update(
        count_tx_5m_card=np.array([1.0, 8.0, 1.0]),
        km_per_min=np.array([0.0, 0.0, np.nan]),
        amount_zscore_7d=np.array([0.0, 0.0, 5.0]),
        new_device_for_account=np.array([0.0, 0.0, 0.0]),
        country_changed=np.array([0.0, 0.0, 0.0]),
        accounts_per_device=np.array([1.0, 1.0, 1.0]),
    )
    assert rules_only_score(config, cols, 3).tolist() == [0.0, 0.9, 0.6]


def test_bad_config_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: x\nthresholds: {challenge: 0.9, block: 0.5}\n")
    with pytest.raises(ConfigError):
        load_config(bad)
    bad.write_text(
        "version: x\nthresholds: {challenge: 0.5, block: 0.8}\noverrides: [{id: a, when: [{field: amount, op: like, value: 1}]}]\n"
    )
    with pytest.raises(ConfigError):
        load_config(bad)


def test_simulator_follows_the_seed_schema_and_rates() -> None:
    start = datetime(2025, 8, 1, tzinfo=UTC)
    stream = generate_transactions(
        start, start + timedelta(days=10), seed=1, scale=0.05, fraud_rate=0.01
    )
    again = generate_transactions(
        start, start + timedelta(days=10), seed=1, scale=0.05, fraud_rate=0.01
    )
    assert stream.transactions.equals(again.transactions) and stream.labels.equals(again.labels)
    rate = stream.transactions["is_fraud"].mean()
    assert 0.008 < rate < 0.012  # type: ignore[operator]
    assert set(stream.transactions["scenario"].unique()) == {
        "legit",
        "card_testing",
        "account_takeover",
        "compromised_merchant",
        "amount_anomaly",
        "fraud_ring",
    }
    # the scenarios vary: card testing from many devices, rings sharing a few, slow takeovers
    frauds = stream.transactions.filter(pl.col("is_fraud"))
    testing = frauds.filter(pl.col("scenario") == "card_testing")
    assert testing["device_id"].n_unique() > testing.height / 3
    ring = frauds.filter(pl.col("scenario") == "fraud_ring")
    assert ring["account_id"].n_unique() >= 2 * ring["device_id"].n_unique()
    takeover = frauds.filter(pl.col("scenario") == "account_takeover")
    assert 0 < takeover.filter(pl.col("ip").str.starts_with("83.")).height < takeover.height
    messages = stream.messages("transactions")
    schema_fields = list(contract("transactions").schema_for(1)["properties"])
    first = json.loads(messages[0][1])
    assert list(first) == schema_fields  # exactly the seed's fields (v1), in order
    assert messages[0][0] == first["transaction_id"].encode()
    assert _reasons("transactions", messages[:2000]) == [None]
    labels = stream.labels
    assert labels.height > 0 and _reasons("fraud_labels", stream.messages("fraud_labels")) == [None]
    # chargebacks arrive days later, inside the window only
    joined = labels.join(stream.transactions, on="transaction_id")
    delay = (joined["reported_at"] - joined["timestamp"]).dt.total_seconds() / 86400
    assert delay.min() >= 1 and joined["reported_at"].max() < start + timedelta(days=10)  # type: ignore[operator]
    with pytest.raises(ConfigError):
        generate_transactions(start, start + timedelta(days=1), fraud_rate=0.5)


def _reasons(topic: str, messages: list[tuple[bytes, bytes]]) -> list[object]:
    batch = pa.table({"key": [k for k, _ in messages], "value": [v for _, v in messages]})
    return sorted(set(validate(batch, contract(topic).schema).to_pylist()), key=str)


def test_fast_isolation_forest_equals_sklearn() -> None:
    from sklearn.ensemble import IsolationForest

    from fraud.model import FastForest

    rng = np.random.default_rng(0)
    train = rng.normal(size=(2000, 6))
    forest = IsolationForest(n_estimators=30, max_samples=128, random_state=1).fit(train)
    probe = np.vstack([rng.normal(size=(50, 6)), rng.normal(5, 3, size=(50, 6))])
    assert np.allclose(
        FastForest(forest).anomaly(probe), -forest.score_samples(probe), rtol=0, atol=1e-12
    )
