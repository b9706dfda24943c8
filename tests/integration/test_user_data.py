"""The platform on a lake that holds only what a user brought: events written by the test
(not the project's generators), sent through `lakehouse produce`'s reader, then the product's
own paths — the Dagster graph, the sensors after a broker restart, a capped backlog."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from testkit import check_counts

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker, ensure_running
from ingestion.produce_file import read_jsonl_messages
from ingestion.raw import ingest_batch
from lake.gold import read_gold
from lake.silver import build_silver
from lake.tables import dead_letter_uri, open_table, raw_uri
from lakehouse.config import Settings
from lakehouse.runner import materialize_selection, selected_keys

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
CITIES = ("Lyon", "Nice", "Brest")


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def user_orders(n: int) -> list[dict[str, object]]:
    """Orders of a shop that is not the project's: its own SKUs, cities and customers."""
    rng = random.Random(7)
    orders = []
    for i in range(n):
        channel = ("web", "app", "store")[i % 3]
        orders.append(
            {
                "order_id": f"shop-{i:05d}",
                "ts": _iso(T0 + timedelta(minutes=17 * i)),
                "customer_id": f"cust-{rng.randrange(400)}",
                "items": [
                    {"sku": f"ZX-{rng.randrange(40):02d}", "qty": rng.randint(1, 4), "price": 5.5}
                    for _ in range(rng.randint(1, 3))
                ],
                "channel": channel,
                "store_id": "shop-lyon-1" if channel == "store" else None,
                "city": CITIES[i % 3],
                "country": "FR",
            }
        )
    return orders


def produce_file(bootstrap: str, topic: str, path: Path, lines: list[str]) -> int:
    """What `lakehouse produce TOPIC FILE` does: every line sent unchanged, bad ones included."""
    path.write_text("\n".join(lines) + "\n")
    return kafka_client.produce(bootstrap, topic, read_jsonl_messages(topic, path))


def test_orders_only_lake_builds_gold_and_reports_the_empty_topics(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    orders = user_orders(2000)
    malformed = ['{"order_id": 1, "bad": true}', "not json", '{"order_id": "x"}'] + [
        json.dumps({**orders[0], "order_id": f"neg-{i}", "items": [{"sku": "A", "qty": -1}]})
        for i in range(5)
    ]
    lines = [json.dumps(o) for o in orders] + malformed
    assert produce_file(broker.bootstrap, "orders", tmp_path / "orders.jsonl", lines) == 2008

    summary = materialize_selection(settings, None)
    checks, failed, _ = check_counts(summary)
    assert failed == 0 and checks > 50, summary
    expected = sum(it["qty"] * it["price"] for o in orders for it in o["items"])  # type: ignore[union-attr]
    revenue = read_gold(settings, "SELECT sum(revenue) AS r FROM daily_sales")
    assert revenue.column("r")[0].as_py() == pytest.approx(expected, abs=0.05)
    top = read_gold(settings, "SELECT count(*) AS n FROM top_sku_7d")
    assert top.column("n")[0].as_py() > 0
    # the KPIs of topics that never received data are empty, not errors
    for model in ("stock_cover_days", "fraud_kpis", "sentiment_daily"):
        rows = read_gold(settings, f"SELECT count(*) AS n FROM {model}")
        assert rows.column("n")[0].as_py() == 0, model
    # orders without sessions: conversion is undefined (null), not zero and not an error
    conversion = read_gold(
        settings,
        "SELECT sum(sessions) AS s, count(conversion_rate) AS rated, sum(orders) AS o "
        "FROM conversion_by_channel",
    ).to_pylist()[0]
    assert conversion == {"s": 0, "rated": 0, "o": 2000}
    dead = open_table(dead_letter_uri(settings), settings)
    assert dead is not None and dead.to_pyarrow_table().num_rows == 8

    # the empty topics' checks say so, without failing
    from dagster_project.definitions import defs  # noqa: F401  (the instance's code location)

    with dg.DagsterInstance.get() as instance:
        key = dg.AssetCheckKey(dg.AssetKey("silver_sessions"), "silver_sessions_expectations")
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        check = evaluation.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert check.passed and check.metadata["status"].value == "no data yet"

    # a downstream selection from a raw asset stays a streaming run
    again = materialize_selection(settings, "key:raw_orders+")
    assert check_counts(again)[1] == 0, again


def test_selections_from_a_raw_asset_never_pull_nightly_assets_in() -> None:
    downstream = {k.to_user_string() for k in selected_keys("key:raw_transactions+")}
    assert {"raw_transactions", "silver_transactions", "fraud_features"} <= downstream
    assert "fraud_decisions" in downstream
    assert not downstream & {"fraud_model", "fraud_drift"}
    supply = {k.to_user_string() for k in selected_keys("key:raw_orders+")}
    assert "daily_sales" in supply and "demand_forecast" not in supply
    # named directly, a nightly asset runs
    assert {k.to_user_string() for k in selected_keys("key:fraud_model")} == {"fraud_model"}
    nightly = {k.to_user_string() for k in selected_keys("group:supply_chain")}
    assert "demand_forecast" in nightly


def test_a_fresh_embedded_broker_opens_new_epochs_and_sensors_stay_calm(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_project.definitions import defs
    from dagster_project.resources import LakehouseResource

    lines = [json.dumps(o) for o in user_orders(300)]
    produce_file(broker.bootstrap, "orders", tmp_path / "orders.jsonl", lines)
    ingest_batch(settings, "orders", broker.bootstrap)
    broker.stop()  # what `make demo` does at its end: the memory log is gone

    ensure_running(settings)  # what `lakehouse ui` / `lakehouse materialize` do first
    sensor = defs.get_sensor_def("orders_new_offsets")
    resources = {"lakehouse": LakehouseResource()}
    calm = sensor(dg.build_sensor_context(resources=resources))
    assert isinstance(calm, dg.SkipReason)
    assert "no new offsets" in (calm.skip_message or "")
    raw = open_table(raw_uri(settings, "orders"), settings)
    assert raw is not None and raw.transaction_version("orders-epoch") == 1

    # new data after the restart is requested from offset 0 of the new epoch
    produce_file(broker.bootstrap, "orders", tmp_path / "more.jsonl", lines[:30])
    result = sensor(dg.build_sensor_context(resources=resources))
    [request] = result.run_requests  # type: ignore[union-attr]
    assert request.run_key.startswith("orders@1:")
    assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 30

    # an external broker whose log is behind the lake lost data: ingestion stays stopped
    broker.stop()
    broker.start()
    broker.ensure_topics()
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BOOTSTRAP", broker.bootstrap)
    external = Settings.from_env()
    assert not external.embedded_broker
    ensure_running(external)
    lost = sensor(dg.build_sensor_context(resources=resources))
    assert isinstance(lost, dg.SkipReason)
    assert "lost data" in (lost.skip_message or "") and "--new-epoch" in (lost.skip_message or "")


def user_payments(n: int) -> list[dict[str, object]]:
    """Card payments of a user's processor, in event-time order, many cards and merchants."""
    rng = random.Random(11)
    rows = []
    for i in range(n):
        card = rng.randrange(120)
        rows.append(
            {
                "transaction_id": f"pay-{i:06d}",
                "timestamp": _iso(T0 + timedelta(seconds=40 * i)),
                "account_id": f"acct-{card}",
                "card_hash": f"card-{card}",
                "amount": round(rng.lognormvariate(3.5, 1.0), 2),
                "currency": "EUR",
                "merchant_id": f"merch-{rng.randrange(60)}",
                "merchant_category": rng.choice(["grocery", "travel", "electronics"]),
                "channel": rng.choice(["pos", "ecom"]),
                "country": rng.choice(["FR", "FR", "FR", "ES"]),
                "device_id": f"dev-{card}",
                "ip": f"10.0.{card}.{rng.randrange(1, 250)}",
                "lat": round(43.0 + rng.random() * 6, 4),
                "lon": round(-1.0 + rng.random() * 7, 4),
            }
        )
    return rows


def test_a_capped_backlog_is_read_in_step_and_gives_the_features_of_a_recompute(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    from fraud.features import FEATURES, batch_features
    from fraud.pipeline import build_features, features_uri, read_table
    from fraud.training import TX_COLUMNS
    from lake.tables import silver_uri

    payments = user_payments(6000)
    lines = [json.dumps(p) for p in payments]
    produce_file(broker.bootstrap, "transactions", tmp_path / "payments.jsonl", lines)

    batches = []
    while True:
        batch = ingest_batch(settings, "transactions", broker.bootstrap, max_records=1000)
        if not batch.records_read:
            break
        assert batch.records_read <= 1000
        silver = build_silver(settings, "silver_transactions")
        assert silver.late_events == 0  # in step: no partition runs behind another
        build_features(settings)
        batches.append(batch)
    assert len(batches) >= 6
    assert [b.left_at_cap > 0 for b in batches[:-1]] == [True] * (len(batches) - 1)
    assert "stopped at the batch cap" in batches[0].summary()

    raw = open_table(raw_uri(settings, "transactions"), settings).to_pyarrow_table()  # type: ignore[union-attr]
    assert raw.num_rows == 6000
    assert raw.group_by(["partition", "offset"]).aggregate([]).num_rows == 6000
    # every batch ends at one Kafka time across partitions: the next starts at or after it
    frame = pl.from_arrow(raw.select(["batch_id", "kafka_timestamp"]))
    spans = frame.group_by("batch_id").agg(
        pl.col("kafka_timestamp").min().alias("lo"), pl.col("kafka_timestamp").max().alias("hi")
    )
    spans = spans.sort("lo")
    assert (spans["hi"].head(-1) <= spans["lo"].tail(-1)).all()

    stored = read_table(settings, features_uri(settings))
    history = read_table(settings, silver_uri(settings, "silver_transactions"), TX_COLUMNS)
    assert stored is not None and history is not None and stored.height == 6000
    stored = stored.sort("ts", "transaction_id")
    expected = batch_features(history).sort("ts", "transaction_id")
    assert stored["transaction_id"].to_list() == expected["transaction_id"].to_list()
    for name in FEATURES:
        a = stored[name].fill_null(np.nan).to_numpy()
        b = expected[name].fill_null(np.nan).to_numpy()
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), name


def test_posts_only_lake_with_the_users_brands(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentiment_kit import install_models

    monkeypatch.setenv("LAKEHOUSE_SENTIMENT_BRANDS", "Acme, Rival")
    settings = Settings.from_env()
    install_models(settings.models_dir)
    texts = [
        "Acme delivery was late again, very disappointed",
        "Love my new Acme headphones, great sound",
        "Rival support never answered my emails",
        "Livraison Acme rapide, très contente !",
        "Rival prices went up, not worth it anymore",
    ]
    posts = [
        {
            "post_id": f"p-{i}",
            "ts": _iso(T0 + timedelta(minutes=3 * i)),
            "source": ("forum", "reviews")[i % 2],
            "lang": None,
            "text": f"{texts[i % len(texts)]} #{i}",
            "engagement": {"likes": i % 7, "replies": i % 3},
        }
        for i in range(200)
    ]
    lines = [json.dumps(p) for p in posts] + ['{"post_id": "p-x", "text": 5}']
    assert produce_file(broker.bootstrap, "social_raw", tmp_path / "posts.jsonl", lines) == 201

    summary = materialize_selection(settings, None)
    assert check_counts(summary)[1] == 0, summary
    brands = read_gold(
        settings,
        "SELECT brand, bool_or(is_our_brand) AS ours FROM sentiment_competitors GROUP BY 1",
    ).to_pylist()
    assert sorted((b["brand"], b["ours"]) for b in brands) == [("Acme", True), ("Rival", False)]
    daily = read_gold(settings, "SELECT sum(posts) AS n FROM sentiment_daily").to_pylist()[0]
    assert daily["n"] > 0
    sales = read_gold(settings, "SELECT count(*) AS n FROM daily_sales").to_pylist()[0]
    assert sales["n"] == 0
