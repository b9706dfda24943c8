"""The fraud chain on a lake that holds only what a user brought: payments and chargebacks in
the seed's schema, written by the test as JSONL, sent with `lakehouse produce`, run through
the Dagster graph. No project generator, no simulated training behind the user's back."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from fraud.pipeline import decisions_uri, features_uri, read_table
from ingestion.broker import EmbeddedBroker
from lakehouse.cli import app
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.runner import materialize_selection

pytestmark = pytest.mark.integration

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
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
PARIS, MADRID = (48.85, 2.35), (40.42, -3.70)


def payment(i: int, when: datetime, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "transaction_id": f"u_{i}",
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "account_id": f"acc_{i % 40}",
        "card_hash": f"card_{i % 40}",
        "amount": 42.0,
        "currency": "EUR",
        "merchant_id": f"shop_{i % 25}",
        "merchant_category": "grocery",
        "channel": "pos",
        "country": "FR",
        "device_id": f"dev_{i % 40}",
        "ip": f"192.0.2.{i % 40}",
        "lat": PARIS[0],
        "lon": PARIS[1],
    }
    return {**event, **changes}


def produce(tmp_path: Path, topic: str, events: list[dict[str, object]], name: str) -> None:
    """`lakehouse produce TOPIC FILE` with a JSONL file of `events`."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = CliRunner().invoke(app, ["produce", topic, str(path)])
    assert result.exit_code == 0, result.output
    assert f"sent {len(events)} events" in result.output


def card_testing(when: datetime) -> list[dict[str, object]]:
    """Thirty payments of 1-3 € at thirty merchants within a minute on one card, each from
    another device and IP."""
    return [
        payment(
            9000 + i,
            when + timedelta(seconds=2 * i),
            card_hash="card_tested",
            account_id="acc_tested",
            amount=round(1.0 + (i % 21) / 10, 2),
            merchant_id=f"web_{i}",
            merchant_category="digital_goods",
            channel="ecom",
            device_id=f"rig_{i}",
            ip=f"198.51.100.{i}",
        )
        for i in range(30)
    ]


def _latest_metadata(settings: Settings, asset: str) -> dict[str, object]:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_lake_without_enough_labels_decides_with_rules_only(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # a quiet week of payments, one chargeback, a card-testing burst, then card_7 in Paris
    week = [payment(i, T0 + timedelta(minutes=37 * i)) for i in range(240)]
    produce(tmp_path, "transactions", [*week, *card_testing(T0 + timedelta(days=6))], "week")
    chargeback = {"transaction_id": "u_3", "is_fraud": True, "reported_at": "2026-09-05T10:00:00Z"}
    produce(tmp_path, "fraud_labels", [chargeback], "labels")
    summary = materialize_selection(settings, CHAIN)
    assert "6 assets materialized" in summary, summary

    decisions = read_table(settings, decisions_uri(settings))
    assert decisions is not None and decisions.height == 270
    assert decisions["model_version"].unique().to_list() == ["rules-only"]
    metadata = _latest_metadata(settings, "fraud_decisions")
    assert metadata["model_version"] == "rules-only"
    assert str(metadata["model_status"]).startswith(
        "rules only, no fraud model: the lake holds 1 fraud labels (a model needs at least 20)"
    )
    # batch = online: the burst is stopped by the same velocity rules as in the service
    burst = decisions.filter(pl.col("card_hash").is_in(_hashed(decisions, "card_tested")))
    ordered = burst.sort("ts")["decision"].to_list()
    assert ordered[:4] == ["ALLOW"] * 4 and ordered[9:] == ["BLOCK"] * 21
    assert set(ordered[4:9]) <= {"CHALLENGE", "BLOCK"}
    # nothing was trained, on the lake or on simulated data; the nightly asset says why
    nightly = materialize_selection(settings, "key:fraud_model")
    assert "1 assets materialized" in nightly, nightly
    skipped = str(_latest_metadata(settings, "fraud_model")["skipped"])
    assert skipped.startswith("the lake holds 1 fraud labels (a model needs at least 20)")
    assert MlflowClient().search_registered_models() == []

    # card_7 last paid in Paris; forty days later it pays in Madrid, in a later micro-batch:
    # its previous payment lies in the summarised history, not in the batch's context
    paris = week[-33]
    assert paris["card_hash"] == "card_7"
    madrid = payment(
        7,
        datetime.fromisoformat(str(paris["timestamp"])) + timedelta(days=40),
        transaction_id="u_madrid",
        country="ES",
        lat=MADRID[0],
        lon=MADRID[1],
    )
    produce(tmp_path, "transactions", [madrid], "madrid")
    materialize_selection(settings, CHAIN)
    features = read_table(settings, features_uri(settings))
    assert features is not None
    row = features.filter(pl.col("transaction_id") == "u_madrid").to_dicts()[0]
    assert row["dist_prev_km"] == pytest.approx(1051.7, abs=0.1)
    assert row["country_changed"] == 1.0
    assert row["km_per_min"] == pytest.approx(1051.7 / (40 * 1440), rel=1e-3)


def _hashed(decisions: pl.DataFrame, card: str) -> list[str]:
    """The pseudonym of a raw card id, as silver stores it."""
    from governance.pii import pseudonym

    return [pseudonym(card, Settings.from_env().pii_hash_key)]  # type: ignore[list-item]


def labelled_history(days: int, per_day: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A user's payments and chargebacks: night-time electronics payments from new devices are
    fraud, reported one to three days later."""
    rng = random.Random(seed)
    payments, labels = [], []
    for i in range(days * per_day):
        when = T0 + timedelta(seconds=rng.uniform(0, days * 86400))
        fraud = rng.random() < 0.05
        event = payment(i, when, amount=round(rng.uniform(5, 120), 2))
        if fraud:
            event |= {
                "timestamp": when.replace(hour=rng.randint(1, 4))
                .isoformat()
                .replace("+00:00", "Z"),
                "amount": round(rng.uniform(300, 900), 2),
                "merchant_category": "electronics",
                "channel": "ecom",
                "device_id": f"new_{i}",
            }
            reported = when + timedelta(days=rng.uniform(1, 3))
            if reported < T0 + timedelta(days=days):
                labels.append(
                    {
                        "transaction_id": event["transaction_id"],
                        "is_fraud": True,
                        "reported_at": reported.isoformat().replace("+00:00", "Z"),
                    }
                )
        payments.append(event)
    return payments, labels


def test_a_lake_with_labelled_history_trains_its_first_champion_on_itself(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, days in (("VAL", "3"), ("GAP", "1"), ("MATURITY", "3")):
        monkeypatch.setenv(f"LAKEHOUSE_FRAUD_{name}_DAYS", days)
    payments, labels = labelled_history(12, 150, seed=3)
    produce(tmp_path, "transactions", payments, "payments")
    produce(tmp_path, "fraud_labels", labels, "chargebacks")
    summary = materialize_selection(settings, CHAIN)
    assert "6 assets materialized" in summary, summary
    decisions = read_table(settings, decisions_uri(settings))
    assert decisions is not None and decisions.height == len(payments)
    assert decisions["model_version"].unique().to_list() == ["1"]
    metadata = _latest_metadata(settings, "fraud_decisions")
    assert metadata["model_status"] == "champion fraud_gbdt v1 (trained on the lake)"
    client = MlflowClient()
    version = client.get_model_version_by_alias("fraud_gbdt", "champion")
    params = client.get_run(version.run_id).data.params
    assert params["source"] == "lake"
    # the configured label delay shaped the split: validation ends 3 days before as-of
    as_of = datetime.fromisoformat(params["as_of"])
    assert datetime.fromisoformat(params["validate_until"]) == as_of - timedelta(days=3)
    assert datetime.fromisoformat(params["validate_from"]) == as_of - timedelta(days=6)

    # `fraud report --as-of`: the window the user chooses, with the labels known then
    report = CliRunner().invoke(app, ["fraud", "report", "--as-of", "2026-09-11"])
    assert report.exit_code == 0, report.output
    assert "validation window 2026-09-05T00:00:00+00:00 → 2026-09-08T00:00:00+00:00" in (
        report.output
    )
    assert "frauds known as of 2026-09-11T00:00:00+00:00" in report.output
    early = CliRunner().invoke(app, ["fraud", "report", "--as-of", "2026-09-03"])
    assert isinstance(early.exception, ConfigError)
    assert "not enough history for the temporal split" in str(early.exception)
