"""Erasure of one subject: silver rows deleted and vacuumed, raw key destroyed, online store
and training extracts forget it, re-running is harmless."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable
from testkit import SEED_TRANSACTION, order_message

from fraud.store import InMemoryStore, RedisStore, to_silver
from governance.crypto import decrypt_raw_values
from governance.erasure import erasure_log_uri, forget
from governance.pii import pseudonym
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake.silver import build_silver
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

pytestmark = pytest.mark.integration


def _tx(i: int, account: str) -> tuple[bytes, bytes]:
    event = {
        **SEED_TRANSACTION,
        "transaction_id": f"tx_{i}",
        "account_id": account,
        "card_hash": f"card_{account}",
    }
    return event["transaction_id"].encode(), json.dumps(event).encode()


def _files_holding(root: Path, needle: bytes, suffix: str = "") -> list[Path]:
    return [p for p in root.rglob(f"*{suffix}") if p.is_file() and needle in p.read_bytes()]


def test_forget_a_customer_and_an_account(settings: Settings, broker: EmbeddedBroker) -> None:
    orders = [
        order_message(i, customer_id="c_7707" if i % 5 == 0 else f"c_{i % 9}") for i in range(200)
    ]
    kafka_client.produce(broker.bootstrap, "orders", orders)
    kafka_client.produce(broker.bootstrap, "orders", [(b"bad", b'{"customer_id": "c_7707", oops')])
    kafka_client.produce(
        broker.bootstrap, "transactions", [_tx(i, f"acc_{i % 4}") for i in range(40)]
    )
    assert ingest_batch(settings, "orders", broker.bootstrap).dead_letters == 1
    ingest_batch(settings, "transactions", broker.bootstrap)
    assert build_silver(settings, "silver_orders").rows_inserted == 400
    assert build_silver(settings, "silver_transactions").rows_inserted == 40
    lake = Path(settings.lake_root)
    hashed = pseudonym("c_7707", settings.pii_hash_key)
    assert _files_holding(lake / "silver", hashed.encode(), ".parquet")

    result = forget(settings, "customer_id=c_7707")
    assert result.rows_deleted["silver/orders"] == 80  # 40 orders x 2 lines
    assert result.rows_deleted["_dead_letter"] == 1
    assert result.key_destroyed
    assert result.files_removed["silver/orders"] >= 1
    assert "silver/orders: 80 rows deleted" in result.summary()

    silver = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    assert silver.num_rows == 320
    assert hashed not in set(silver["customer_id_hash"].to_pylist())
    # no data file on disk holds the subject: plaintext nowhere, pseudonym in no Parquet file
    assert _files_holding(lake, b"c_7707") == []
    assert _files_holding(lake, hashed.encode(), ".parquet") == []
    # the raw copy no longer decrypts: its rows drop out, others read back
    raw = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table()
    readable = decrypt_raw_values(settings, "orders", raw)
    assert (raw.num_rows, readable.num_rows) == (200, 160)
    # a replay of silver from raw does not bring the subject back
    shutil.rmtree(lake / "silver" / "orders")
    assert build_silver(settings, "silver_orders").rows_inserted == 320

    again = forget(settings, "customer_id=c_7707")
    assert not again.found and "already erased on" in again.summary()
    unknown = forget(settings, "customer_id=c_nobody")
    assert "no data names this subject" in unknown.summary()
    with pytest.raises(ConfigError, match="unknown subject 'email'"):
        forget(settings, "email=a@b.c")
    with pytest.raises(ConfigError, match="use <subject>=<value>"):
        forget(settings, "customer_id")
    log = DeltaTable(erasure_log_uri(settings)).to_pyarrow_table()
    assert log.num_rows == 1 and log["subject"][0].as_py() == "customer_id"
    assert _files_holding(lake / "_erasure_log", b"c_7707") == []

    # an account: its transactions leave silver; training extracts read silver
    account = pseudonym("acc_1", settings.pii_hash_key)
    out = forget(settings, "account_id=acc_1")
    assert out.rows_deleted["silver/transactions"] == 10
    tx = DeltaTable(silver_uri(settings, "silver_transactions")).to_pyarrow_table()
    assert tx.num_rows == 30 and account not in set(tx["account_hash"].to_pylist())
    from fraud.training import load_lake_history

    history, _ = load_lake_history(settings)
    assert history.height == 30
    assert account not in set(history["account_hash"].to_list())


def _store_events(store: InMemoryStore | RedisStore, key: str) -> None:
    for i, (account, device) in enumerate([("acc_1", "d1"), ("acc_2", "d1"), ("acc_1", "d2")]):
        event = {
            **SEED_TRANSACTION,
            "transaction_id": f"t{i}",
            "account_id": account,
            "device_id": device,
        }
        event["card_hash"] = f"card_{account}"
        store.record(to_silver(event, key), 1_000_000 * (i + 1))


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_online_store_forgets_an_account(kind: str) -> None:
    key = "k"
    store: InMemoryStore | RedisStore
    if kind == "memory":
        store = InMemoryStore()
    else:
        store = RedisStore("redis://127.0.0.1:6379/0", prefix=f"test:erasure:{uuid.uuid4().hex}:")
    try:
        _store_events(store, key)
        gone, kept = pseudonym("acc_1", key), pseudonym("acc_2", key)
        probe = to_silver(
            {
                **SEED_TRANSACTION,
                "account_id": "acc_2",
                "device_id": "d1",
                "card_hash": "card_acc_2",
            },
            key,
        )
        before = store.snapshot(probe, 10_000_000)
        assert before.graph["accounts_per_device"][0] == 2
        assert store.forget({gone}, {pseudonym("card_acc_1", key)}) > 0
        after = store.snapshot(probe, 10_000_000)
        assert after.graph["accounts_per_device"] == (1, True)
        card_probe = to_silver(
            {**SEED_TRANSACTION, "account_id": "acc_1", "card_hash": "card_acc_1"}, key
        )
        assert store.snapshot(card_probe, 10_000_000).events.get("card", []) == []
        assert store.snapshot(card_probe, 10_000_000).card_previous is None
        # the remaining account's component no longer counts the erased one
        assert kept and after.components[0][1] <= before.components[0][1]
    finally:
        if isinstance(store, RedisStore):
            store.clear()
        store.close()
