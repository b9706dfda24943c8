"""The fraud chain through Dagster on small simulated data: generator → Kafka → raw →
silver_transactions / silver_fraud_labels → fraud_features → fraud_decisions, with the
model trained and registered first; then the nightly retraining and drift assets."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from fraud.pipeline import decisions_uri, features_uri, read_table
from ingestion.broker import EmbeddedBroker
from lake.gold import read_gold
from lake.tables import silver_uri
from lakehouse.config import Settings
from lakehouse.generate import backfill
from lakehouse.runner import materialize_selection

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
CHAIN = " or ".join(
    f"key:{k}"
    for k in (
        "raw_transactions",
        "raw_fraud_labels",
        "silver_transactions",
        "silver_fraud_labels",
        "fraud_features",
        "fraud_decisions",
    )
)


def test_chain_materializes_and_decides_every_transaction(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    from fraud.training import simulated_history, train_and_register

    tx, labels, end = simulated_history(settings, days=21, scale=0.04, seed=5, end=END)
    first = train_and_register(settings, tx, labels, end, source="simulated")
    assert "promoted to champion" in first.promotion

    sent = backfill(broker.bootstrap, 2, 11, 0.02, ("transactions", "fraud_labels"), end=END)
    summary = materialize_selection(settings, CHAIN)
    assert "failed" not in summary.split("checks (")[1].split(")")[0] or "(0 failed)" in summary

    silver = read_table(settings, silver_uri(settings, "silver_transactions"))
    assert silver is not None and silver.height == sent["transactions"]
    # PII pseudonymised with the project's HMAC: 64 hex characters, no raw account ids
    assert silver["account_hash"].str.len_chars().unique().to_list() == [64]
    assert not silver["account_hash"].str.starts_with("acc_").any()
    features = read_table(settings, features_uri(settings))
    decisions = read_table(settings, decisions_uri(settings))
    assert features is not None and decisions is not None
    assert decisions.height == features.height == silver.height
    assert set(decisions["decision"].unique()) <= {"ALLOW", "CHALLENGE", "BLOCK"}
    assert decisions["model_version"].unique().to_list() == [first.model.version]
    flagged = decisions.filter(pl.col("decision") != "ALLOW")
    assert flagged.height > 0 and flagged["reasons"].list.len().min() >= 1
    assert (decisions["lag_ms"] >= 0).all()

    # a re-run with nothing new adds nothing (markers in the Delta commits)
    materialize_selection(settings, CHAIN)
    again = read_table(settings, decisions_uri(settings))
    assert again is not None and again.height == decisions.height

    # gold: fraud KPIs per day from the decisions and the labels known so far
    gold = materialize_selection(settings, "key:fraud_kpis")
    assert "(0 failed)" in gold
    kpis = read_gold(settings, "SELECT * FROM fraud_kpis ORDER BY d").to_pandas()
    assert int(kpis["transactions"].sum()) == decisions.height
    assert int((kpis["allowed"] + kpis["challenged"] + kpis["blocked"]).sum()) == decisions.height
    assert kpis["friction_rate"].between(0, 1).all()

    # nightly: too few lake labels and a champion exists → no retraining; drift checks run
    nightly = materialize_selection(settings, "key:fraud_model or key:fraud_drift")
    assert "2 assets materialized" in nightly
