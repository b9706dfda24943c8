"""Lineage end to end, from the emitted OpenLineage events alone: the upstream graph of gold
`daily_sales` reaches Kafka topic `orders`, and that of `fraud_decisions` reaches topics
`transactions` and `fraud_labels`, as do the fraud model's; the sentiment topics and tables
reach `social_raw`, the sentiment head its labelled files; every dbt model run is its own job with its refs and
sources as inputs, the contract's schema and its dbt tests as data-quality assertions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from openlineage_schema import validate_event
from sentiment_kit import install_models
from testkit import SEED_TRANSACTION, LineageNode, check_counts, order_message
from testkit import lineage_upstream as upstream

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings
from lakehouse.generate import backfill
from lakehouse.runner import materialize_selection
from sentiment.generator import generate_social

pytestmark = pytest.mark.integration

SELECTION = " or ".join(
    f"key:{k}"
    for k in (
        "raw_orders",
        "silver_orders",
        "skus",  # the seeds and the models the seed's relationship tests read
        "stores",
        "daily_sales",
        "top_sku_7d",
        "stock_cover_days",
        "raw_transactions",
        "raw_fraud_labels",
        "silver_transactions",
        "silver_fraud_labels",
        "fraud_features",
        "fraud_decisions",
    )
)

END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _by_symlink(events: list[dict[str, Any]], name: str) -> LineageNode:
    for event in events:
        for d in event["outputs"]:
            identifiers = d["facets"].get("symlinks", {}).get("identifiers", [])
            if any(i["name"] == name for i in identifiers):
                return (d["namespace"], d["name"])
    raise AssertionError(f"no event outputs {name}")


def test_upstream_graphs_from_the_events_alone(settings: Settings, broker: EmbeddedBroker) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(30)])
    payment = {**SEED_TRANSACTION, "transaction_id": "tx_l1", "timestamp": "2026-11-02T11:00:05Z"}
    kafka_client.produce(
        broker.bootstrap, "transactions", [(b"tx_l1", json.dumps(payment).encode())]
    )
    label = {"transaction_id": "tx_l1", "is_fraud": True, "reported_at": "2026-11-04T09:00:00Z"}
    kafka_client.produce(broker.bootstrap, "fraud_labels", [(b"tx_l1", json.dumps(label).encode())])
    summary = materialize_selection(settings, SELECTION)
    assert check_counts(summary)[1] == 0, summary

    events = [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]
    # every event, and every facet in it, is valid against the OpenLineage JSON Schemas
    facets = sum(validate_event(e) for e in events)
    assert facets > 5 * len(events), (facets, len(events))
    kafka = f"kafka://{settings.bootstrap}"
    daily_sales = _by_symlink(events, "daily_sales")
    assert daily_sales[0].startswith("duckdb://") and daily_sales[1] == "gold.main.daily_sales"
    sales_up = upstream(events, daily_sales)
    raw_orders = _by_symlink(events, "raw_orders")
    silver_orders = _by_symlink(events, "silver_orders")
    assert {(kafka, "orders"), raw_orders, silver_orders} <= sales_up
    assert not any(ns == kafka and name != "orders" for ns, name in sales_up)

    decisions_up = upstream(events, _by_symlink(events, "fraud_decisions"))
    assert {(kafka, "transactions"), (kafka, "fraud_labels")} <= decisions_up
    assert _by_symlink(events, "silver_fraud_labels") in decisions_up
    assert (kafka, "orders") not in decisions_up

    # the dbt model is its own job, a child of the Dagster run, with facets from dbt
    (start, complete) = [e for e in events if e["job"]["name"] == "dbt.daily_sales"]
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert complete["run"]["facets"]["parent"]["job"]["name"].startswith("dagster.")
    (output,) = complete["outputs"]
    fields = {f["name"]: f["type"] for f in output["facets"]["schema"]["fields"]}
    assert fields == {
        "d": "date",
        "city": "varchar",
        "sku": "varchar",
        "units": "bigint",
        "revenue": "double",
    }
    assertions = output["facets"]["dataQualityAssertions"]["assertions"]
    assert {(a["assertion"], a.get("column"), a["success"]) for a in assertions} >= {
        ("not_null", "d", True),
        ("unique_combination", None, True),
        ("in_range", "units", True),
    }
    assert output["outputFacets"]["outputStatistics"]["rowCount"] > 0
    # column lineage silver -> gold, traced in the compiled SQL
    silver_ns, silver_name = silver_orders
    columns = {
        out: {(f["namespace"], f["name"], f["field"]) for f in spec["inputFields"]}
        for out, spec in output["facets"]["columnLineage"]["fields"].items()
    }
    assert columns["revenue"] == {
        (silver_ns, silver_name, "price"),
        (silver_ns, silver_name, "qty"),
    }
    assert columns["d"] == {(silver_ns, silver_name, "order_date")}
    assert columns["units"] == {(silver_ns, silver_name, "qty")}
    # Great Expectations results as data-quality assertions on the table they validated
    (gx,) = [
        e
        for e in events
        if e["job"]["name"] == "silver_orders_expectations" and e["eventType"] == "COMPLETE"
    ]
    (validated,) = gx["inputs"]
    assert (validated["namespace"], validated["name"]) == silver_orders
    outcomes = validated["facets"]["dataQualityAssertions"]["assertions"]
    assert len(outcomes) > 5 and all(a["success"] for a in outcomes)
    assert ("ExpectColumnValuesToNotBeNull", "order_id", True) in {
        (a["assertion"], a.get("column"), a["success"]) for a in outcomes
    }
    assert gx["job"]["facets"]["jobType"]["jobType"] == "DATA_QUALITY"
    # raw's input is the topic with the contract's fields
    (raw_complete,) = [
        e for e in events if e["job"]["name"] == "raw_transactions" and e["eventType"] == "COMPLETE"
    ]
    (topic,) = raw_complete["inputs"]
    topic_fields = [f["name"] for f in topic["facets"]["schema"]["fields"]]
    assert topic["namespace"] == kafka and "three_ds_status" in topic_fields


def test_model_lineage_reaches_the_topics(
    settings: Settings, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fraud model trained by its asset, the decisions it scores, the sentiment head and
    the topics the sentiment assets publish: each one's upstream graph reaches its topics."""
    # a temporal split (validation, gap, label maturity) a week of lake history can fill
    for name in ("LAKEHOUSE_FRAUD_VAL_DAYS", "LAKEHOUSE_FRAUD_GAP_DAYS"):
        monkeypatch.setenv(name, "2")
    monkeypatch.setenv("LAKEHOUSE_FRAUD_MATURITY_DAYS", "1")
    backfill(
        broker.bootstrap, 8, 7, 0.05, ("transactions", "fraud_labels"), end=END, fraud_rate=0.02
    )
    install_models(settings.models_dir)  # the served head, as the classifier trains on first need
    social = generate_social(END - timedelta(hours=1), END, seed=5, scale=0.05)
    kafka_client.produce(broker.bootstrap, "social_raw", social.messages())
    for selection in (
        "key:raw_transactions or key:raw_fraud_labels or key:silver_transactions or "
        "key:silver_fraud_labels",
        "key:fraud_model",  # the nightly retraining, on the lake's labels
        "key:fraud_features or key:fraud_decisions",
        "key:raw_social_raw or key:silver_social or key:silver_social_sentiment or "
        "key:silver_sentiment_index",
    ):
        summary = materialize_selection(settings, selection)
        assert check_counts(summary)[1] == 0, summary
    from dagster_project.definitions import defs

    with dg.DagsterInstance.ephemeral() as instance:
        assert (
            defs.resolve_job_def("train_sentiment_model")
            .execute_in_process(instance=instance)
            .success
        )

    events = [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]
    assert sum(validate_event(e) for e in events) > 5 * len(events)
    kafka = f"kafka://{settings.bootstrap}"

    # fraud: the registered model version is the training's output, named in its registry
    (trained,) = [
        e for e in events if e["job"]["name"] == "fraud_model" and e["eventType"] == "COMPLETE"
    ]
    (model,) = trained["outputs"]
    assert model["namespace"] == settings.mlflow_tracking_uri
    assert model["name"] == "models/fraud_gbdt/1"
    assert {"amount", "km_per_min"} <= {f["name"] for f in model["facets"]["schema"]["fields"]}
    model_node = (model["namespace"], model["name"])
    assert {(kafka, "transactions"), (kafka, "fraud_labels")} <= upstream(events, model_node)
    # ... and an input of the decisions it scored
    decisions_up = upstream(events, _by_symlink(events, "fraud_decisions"))
    assert model_node in decisions_up
    assert {(kafka, "transactions"), (kafka, "fraud_labels")} <= decisions_up

    # sentiment: the topics it publishes come from topic social_raw through the served head
    head = _by_symlink(events, "sentiment_head_static")  # written by the retraining
    for topic in ("social_clean", "social_sentiment"):
        assert (kafka, "social_raw") in upstream(events, (kafka, topic)), topic
    sentiment_up = upstream(events, (kafka, "social_sentiment"))
    assert head in sentiment_up and head[0] == "file"
    assert (kafka, "social_raw") in upstream(events, _by_symlink(events, "silver_sentiment_index"))
    # the retraining: the shipped labelled files in, the registered head (and its file) out
    (retrained,) = [
        e
        for e in events
        if e["job"]["name"] == "train_sentiment_model" and e["eventType"] == "COMPLETE"
    ]
    outputs = {(d["namespace"], d["name"]) for d in retrained["outputs"]}
    assert outputs == {(settings.mlflow_tracking_uri, "models/sentiment_head_static/1"), head}
    files = {d["name"].rsplit("/", 1)[-1] for d in retrained["inputs"]}
    assert files == {"vader_tweets.tsv", "vader_amazon.tsv", "train_en.tsv", "train_fr.tsv"} | {
        "eval_en.tsv",
        "eval_fr.tsv",
    }
    assert all(d["facets"]["schema"]["fields"] for d in retrained["inputs"])
    assert {(d["namespace"], d["name"]) for d in retrained["inputs"]} <= upstream(events, head)
