"""The fraud chain through Dagster on small simulated data: generator → Kafka → raw →
silver_transactions / silver_fraud_labels → fraud_features → fraud_decisions, with the
model trained and registered first; then the nightly retraining and drift assets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from testkit import SEED_TRANSACTION, check_counts

from fraud.pipeline import decisions_uri, features_uri, read_table
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.produce_file import read_jsonl_messages
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


SEED_EVENT = {**SEED_TRANSACTION, "transaction_id": "ext_1", "timestamp": "2026-11-02T11:00:05Z"}
FOREIGN = [
    SEED_EVENT,
    {
        **SEED_EVENT,
        "transaction_id": "ext_2",
        "timestamp": "2026-11-02T11:00:35Z",
        "device_id": None,
        "ip": None,
        "lat": None,
        "lon": None,
        "currency": "CHF",
        "channel": "pos",
    },
    {
        **SEED_EVENT,
        "transaction_id": "ext_3",
        "timestamp": "2026-11-02T11:01:00Z",
        "amount": 20000.0,
    },
]


def _lineage(settings: Settings, job: str) -> list[dict]:
    """The OpenLineage events of one asset, in the order they were written."""
    events = [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]
    return [e for e in events if e["job"]["name"] == job]


def _names(datasets: list[dict]) -> list[str]:
    """Logical table names (symlinks facet) of an event's inputs or outputs."""
    return [d["facets"]["symlinks"]["identifiers"][0]["name"] for d in datasets]


def test_chain_materializes_and_decides_every_transaction(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    from fraud.training import simulated_history, train_and_register

    tx, labels, end = simulated_history(settings, days=21, scale=0.04, seed=5, end=END)
    first = train_and_register(settings, tx, labels, end, source="simulated")
    assert "promoted to champion" in first.promotion

    sent = backfill(broker.bootstrap, 2, 11, 0.02, ("transactions", "fraud_labels"), end=END)
    # someone else's data, in the seed's schema, through `lakehouse produce`
    foreign = tmp_path / "payments.jsonl"
    foreign.write_text("\n".join(json.dumps(e) for e in FOREIGN) + "\n")
    labels_file = tmp_path / "chargebacks.jsonl"
    labels_file.write_text(
        json.dumps(
            {"transaction_id": "ext_2", "is_fraud": True, "reported_at": "2026-11-05T09:00:00Z"}
        )
        + "\n"
    )
    kafka_client.produce(
        broker.bootstrap, "transactions", read_jsonl_messages("transactions", foreign)
    )
    kafka_client.produce(
        broker.bootstrap, "fraud_labels", read_jsonl_messages("fraud_labels", labels_file)
    )
    sent["transactions"] += len(FOREIGN)
    summary = materialize_selection(settings, CHAIN)
    assert check_counts(summary)[1] == 0, summary

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
    external = {
        r["transaction_id"]: r
        for r in decisions.filter(pl.col("transaction_id").str.starts_with("ext_")).to_dicts()
    }
    assert set(external) == {"ext_1", "ext_2", "ext_3"}
    assert external["ext_3"]["decision"] == "BLOCK"
    assert external["ext_3"]["rule_ids"] == ["R001_amount_cap", "R004_ecom_without_3ds"]
    assert "rule R001_amount_cap" in external["ext_3"]["reasons"]
    labels = read_table(settings, silver_uri(settings, "silver_fraud_labels"))
    assert labels is not None and "ext_2" in labels["transaction_id"].to_list()

    # OpenLineage: START + COMPLETE per fraud asset, its inputs and outputs, the rows written;
    # the decisions' COMPLETE adds the model version that scored them (known once loaded)
    champion = f"fraud_gbdt/{first.model.version}"
    for job, inputs, scored_with, rows in (
        ("fraud_features", ["silver_transactions", "silver_fraud_labels"], [], features),
        ("fraud_decisions", ["fraud_features", "silver_transactions"], [champion], decisions),
    ):
        events = _lineage(settings, job)
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"], job
        assert _names(events[0]["inputs"]) == inputs
        assert _names(events[1]["inputs"]) == inputs + scored_with
        for event in events:
            assert _names(event["outputs"]) == [job]
            assert event["outputs"][0]["name"].endswith(f"/silver/{job}")
            assert event["outputs"][0]["facets"]["schema"]["fields"]
            assert all(d["facets"]["schema"]["fields"] for d in event["inputs"])
        stats = events[1]["outputs"][0]["outputFacets"]["outputStatistics"]
        assert stats["rowCount"] == rows.height

    # the decision service's `--warm`: the store loaded from this silver, column-wise
    from fraud.service import warm_store
    from fraud.store import InMemoryStore

    store = InMemoryStore()
    assert warm_store(settings, store) == silver.height
    assert set(store.last_card) == set(silver["card_hash"].unique())
    assert sum(store.tx_count[("m", m)] for m in silver["merchant_id"].unique()) == silver.height

    # a re-run with nothing new adds nothing (markers in the Delta commits)
    materialize_selection(settings, CHAIN)
    again = read_table(settings, decisions_uri(settings))
    assert again is not None and again.height == decisions.height

    # gold: fraud KPIs per day from the decisions and the labels known so far
    gold = materialize_selection(settings, "key:fraud_kpis")
    assert check_counts(gold)[1] == 0, gold
    kpis = read_gold(settings, "SELECT * FROM fraud_kpis ORDER BY d").to_pandas()
    assert int(kpis["transactions"].sum()) == decisions.height
    assert int((kpis["allowed"] + kpis["challenged"] + kpis["blocked"]).sum()) == decisions.height
    assert kpis["friction_rate"].between(0, 1).all()

    # nightly: too few lake labels and a champion exists → no retraining; drift checks run
    nightly = materialize_selection(settings, "key:fraud_model or key:fraud_drift")
    assert "2 assets materialized" in nightly
    # the re-run emitted its own START/COMPLETE (0 rows); no retraining: no model version out;
    # the drift report appends its PSI rows
    assert [e["eventType"] for e in _lineage(settings, "fraud_decisions")] == [
        "START",
        "COMPLETE",
    ] * 2
    rerun = _lineage(settings, "fraud_decisions")[3]["outputs"][0]["outputFacets"]
    assert rerun["outputStatistics"]["rowCount"] == 0
    for job, inputs, outputs in (
        ("fraud_model", ["silver_transactions", "silver_fraud_labels"], []),
        (
            "fraud_drift",
            ["fraud_features", "fraud_decisions", "silver_fraud_labels"],
            ["fraud_drift_psi"],
        ),
    ):
        events = _lineage(settings, job)
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"], job
        assert _names(events[1]["inputs"]) == inputs and _names(events[1]["outputs"]) == outputs
