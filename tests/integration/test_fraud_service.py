"""The decision service over real HTTP (uvicorn on a free port) with the Redis feature store,
on a registry whose first champion the service trained itself on simulated data."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from testkit import SEED_TRANSACTION, free_port

from fraud.features import online_features
from fraud.rules import load_config
from fraud.service import DecisionEngine, create_app, ensure_champion
from fraud.store import RedisStore, to_silver
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

SEED_EVENT = SEED_TRANSACTION


@dataclass
class Service:
    url: str
    engine: DecisionEngine
    store: RedisStore
    settings: Settings
    said: list[str]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    import uvicorn

    home = Path(tmp_path_factory.mktemp("fraud-service"))
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "LAKEHOUSE_REDIS_URL",
            "LAKEHOUSE_MLFLOW_TRACKING_URI",
            "LAKEHOUSE_KAFKA_BOOTSTRAP",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("LAKEHOUSE_HOME", str(home))
        mp.setenv("LAKEHOUSE_REDIS_URL", "redis://127.0.0.1:6379/14")
        settings = Settings.from_env()
        said: list[str] = []
        model = ensure_champion(settings, said.append, days=21, scale=0.04)
        store = RedisStore(
            settings.redis_url or "", prefix=f"test:fraud-service:{uuid.uuid4().hex}:"
        )
        engine = DecisionEngine(settings, model, store, load_config())
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(engine, reload_seconds=0),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        try:
            yield Service(f"http://127.0.0.1:{port}", engine, store, settings, said)
        finally:
            server.should_exit = True
            thread.join(10)
            store.clear()
            store.client.close()


def test_fresh_install_trains_a_champion_first_and_says_so(service: Service) -> None:
    assert any("no fraud model in the registry yet" in line for line in service.said)
    assert any("promoted to champion" in line for line in service.said)
    assert service.engine.model.version == "1"


def test_decision_contract_for_the_seed_example(service: Service) -> None:
    reply = httpx.post(f"{service.url}/v1/decisions", json=SEED_EVENT, timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["decision"] in {"ALLOW", "CHALLENGE", "BLOCK"}
    assert 0.0 <= body["score"] <= 1.0
    assert isinstance(body["reasons"], list) and all(isinstance(r, str) for r in body["reasons"])
    assert body["model_version"] == "1"
    assert body["transaction_id"] == "tx_987654"


def test_burst_updates_the_redis_windows(service: Service) -> None:
    card = f"card-{uuid.uuid4().hex[:8]}"
    replies = []
    for i in range(12):  # card testing: 12 tiny e-commerce payments in 2 minutes, new rig
        event = {
            **SEED_EVENT,
            "transaction_id": f"tx_burst_{card}_{i}",
            "card_hash": card,
            "account_id": f"acc_{card}",
            "amount": 1.0 + i / 10,
            "merchant_category": "digital_goods",
            "timestamp": f"2025-08-16T13:{i // 6:02d}:{(i % 6) * 10:02d}Z",
            "device_id": f"rig_{card}",
        }
        replies.append(httpx.post(f"{service.url}/v1/decisions", json=event, timeout=10).json())
    assert all(r["decision"] in {"ALLOW", "CHALLENGE", "BLOCK"} for r in replies)
    # the service recorded every payment of the burst in the card's Redis window
    last = to_silver(
        {**SEED_EVENT, "card_hash": card, "account_id": f"acc_{card}", "device_id": f"rig_{card}"},
        service.settings.pii_hash_key,
    )
    ts_us = int(datetime(2025, 8, 16, 13, 2, tzinfo=UTC).timestamp() * 1e6)
    history = service.store.snapshot(last, ts_us)
    assert len(history.events["card"]) == 12
    features = online_features({**last, "amount": 1.0}, ts_us, history)
    assert features["count_tx_5m_card"] == 13 and features["accounts_per_device"] == 1
    keys = list(service.store.client.scan_iter(match=service.store.prefix + "ev:card:*"))
    assert keys, "the card's window lives in Redis under the test's prefix"


def test_invalid_requests_get_422_with_the_reason(service: Service) -> None:
    missing = {k: v for k, v in SEED_EVENT.items() if k != "amount"}
    reply = httpx.post(f"{service.url}/v1/decisions", json=missing, timeout=10)
    assert reply.status_code == 422 and any("amount" in r for r in reply.json()["detail"])
    for bad in (
        {**SEED_EVENT, "amount": -5},
        {**SEED_EVENT, "cvv": "123"},
        {**SEED_EVENT, "timestamp": "yesterday"},
        {**SEED_EVENT, "lat": 123.0},
    ):
        assert httpx.post(f"{service.url}/v1/decisions", json=bad, timeout=10).status_code == 422
    assert (
        httpx.post(f"{service.url}/v1/decisions", content=b"not json", timeout=10).status_code
        == 422
    )


def test_health_and_prometheus_metrics(service: Service) -> None:
    health = httpx.get(f"{service.url}/healthz", timeout=10).json()
    assert health == {
        "status": "ok",
        "model_version": "1",
        "config_version": "rules-v1",
        "store": "redis",
    }
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    assert 'fraud_decisions_total{decision="ALLOW"}' in text
    assert "fraud_decision_seconds_bucket" in text and "fraud_invalid_requests_total" in text


def test_champion_is_reloaded_when_the_alias_moves(service: Service) -> None:
    from mlflow import MlflowClient

    from fraud.training import MODEL_NAME, simulated_history, train_and_register

    tx, labels, end = simulated_history(service.settings, days=21, scale=0.04, seed=8)
    result = train_and_register(service.settings, tx, labels, end, source="simulated")
    if "promoted" not in result.promotion.split("→")[-1] or "kept" in result.promotion:
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", result.model.version)
    assert service.engine.reload_if_moved()
    assert (
        httpx.get(f"{service.url}/healthz", timeout=10).json()["model_version"]
        == result.model.version
    )
    assert service.engine.reload_if_moved() is False
