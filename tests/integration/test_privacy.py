"""Raw PII encrypted under per-subject keys, silver built from it, and server-side encryption
of every object on S3 (moto's server)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from testkit import SEED_TRANSACTION, order_message

from governance.crypto import TOKEN_PREFIX, decrypt_raw_values, encrypt_raw_values
from governance.pii import pseudonym
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake.silver import build_silver
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration


def _transactions(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        event = {**SEED_TRANSACTION, "transaction_id": f"tx_{i}", "account_id": f"acc_{i % 7}"}
        out.append((event["transaction_id"].encode(), json.dumps(event).encode()))
    return out


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_raw_identifiers_are_encrypted_and_silver_decrypts(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    messages = [order_message(i, customer_id=f"c_{i % 10}") for i in range(300)]
    kafka_client.produce(broker.bootstrap, "orders", messages)
    kafka_client.produce(broker.bootstrap, "transactions", _transactions(50))
    assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 300
    assert ingest_batch(settings, "transactions", broker.bootstrap).rows_written == 50

    raw = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table()
    # the payload keeps the field, its text masked byte for byte; the sealed value is beside it
    customers = {json.loads(v)["customer_id"] for v in raw["value"].to_pylist()}
    assert customers == {"***"}
    tokens = raw["pii_customer_id"].to_pylist()
    # one token per distinct customer: 10 customers, 10 tokens (binary key id, no base64)
    assert len({t["sealed"] for t in tokens}) == 10
    assert {len(t["key_id"]) for t in tokens} == {16}
    lake = Path(settings.lake_root)
    for plain in (b"c_3", b"acc_5", b"4a1f...ed"):
        assert _files_holding(lake / "raw", plain) == []
    # other fields stay as received
    assert {json.loads(v)["city"] for v in raw["value"].to_pylist()} == {"Lille"}

    # the key store is private and holds one key per subject (10 customers, 7 accounts, 1 card)
    mode = stat.S_IMODE(os.stat(settings.key_store_path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(settings.key_store_path.parent).st_mode) == 0o700
    plain = decrypt_raw_values(settings, "orders", raw)
    assert {json.loads(v)["customer_id"] for v in plain["value"].to_pylist()} == {
        f"c_{i}" for i in range(10)
    }

    assert build_silver(settings, "silver_orders").rows_inserted == 600
    silver = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    first = silver.filter(pc.equal(silver["order_id"], "o_3"))
    assert first["customer_id_hash"][0].as_py() == pseudonym("c_3", settings.pii_hash_key)
    assert build_silver(settings, "silver_transactions").rows_inserted == 50
    tx = DeltaTable(silver_uri(settings, "silver_transactions")).to_pyarrow_table()
    assert set(tx["account_hash"].to_pylist()) == {
        pseudonym(f"acc_{i}", settings.pii_hash_key) for i in range(7)
    }


def test_encryption_off_keeps_payloads_as_received(
    lakehouse_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_RAW_ENCRYPTION", "off")
    settings = Settings.from_env()
    broker = EmbeddedBroker(settings)
    broker.start()
    broker.ensure_topics()
    try:
        kafka_client.produce(broker.bootstrap, "orders", [order_message(1)])
        assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 1
    finally:
        broker.stop()
    raw = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table()
    assert json.loads(raw["value"][0].as_py())["customer_id"] == "c_77"
    assert not settings.key_store_path.exists()


def test_every_object_on_s3_carries_server_side_encryption(
    lakehouse_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_s3_lake import start_moto

    with start_moto(monkeypatch) as endpoint:
        monkeypatch.setenv("LAKEHOUSE_S3_SSE", "AES256")
        settings = Settings.from_env()
        assert settings.storage_options["aws_server_side_encryption"] == "AES256"
        broker = EmbeddedBroker(settings)
        broker.start()
        broker.ensure_topics()
        try:
            kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(50)])
            kafka_client.produce(broker.bootstrap, "orders", [(b"bad", b"{oops")])
            assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 50
        finally:
            broker.stop()
        assert build_silver(settings, "silver_orders").rows_inserted == 100
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake-bucket")["Contents"]]
        zones = {k.split("/")[1] for k in keys}
        assert {"raw", "silver", "_dead_letter"} <= zones
        encryption = {
            k: s3.head_object(Bucket="lake-bucket", Key=k).get("ServerSideEncryption") for k in keys
        }
        assert set(encryption.values()) == {"AES256"}, encryption


def test_contacts_in_posts_never_reach_silver(settings: Settings, broker: EmbeddedBroker) -> None:
    from governance.scan import scan
    from sentiment.pipeline import build_silver_social
    from sentiment.tables import silver_social_uri

    posts = [
        {
            "post_id": f"p_{i}",
            "ts": "2025-08-16T12:00:00Z",
            "source": "x",
            "lang": "fr",
            "text": f"Colis Lumio perdu, écrivez à marie.{i}@mail.example ou +33 6 12 34 56 7{i}",
            "engagement": {"likes": 1, "replies": 0},
        }
        for i in range(5)
    ]
    kafka_client.produce(
        broker.bootstrap,
        "social_raw",
        [(p["post_id"].encode(), json.dumps(p, ensure_ascii=False).encode()) for p in posts],
    )
    assert ingest_batch(settings, "social_raw", broker.bootstrap).rows_written == 5
    build_silver_social(settings)
    silver = DeltaTable(silver_social_uri(settings)).to_pyarrow_table()
    assert silver.num_rows == 5
    assert all("[email]" in t and "[phone]" in t for t in silver["text"].to_pylist())
    # the scan's detector sees the contacts in raw, and none in silver
    raw_texts = DeltaTable(raw_uri(settings, "social_raw")).to_pyarrow_table()["value"]
    assert all("@mail.example" in v for v in raw_texts.to_pylist())
    scanned = scan(settings, ["social_raw"])
    assert "silver/social" in scanned.tables_scanned
    assert scanned.hits == []


def test_a_subject_erased_between_batches_gets_a_new_key_not_its_cached_token(
    settings: Settings,
) -> None:
    """Tokens are reused across batches for subjects already seen; destroying a key (an
    erasure, from any process) drops them, so the subject's next events are readable under a
    new key instead of sealed under the destroyed one."""
    import pyarrow as pa

    from governance.crypto import key_id
    from governance.keystore import open_key_store

    event = {**SEED_TRANSACTION, "account_id": "acc_cached"}
    values = pa.array([json.dumps(event)], pa.large_string())
    first = encrypt_raw_values(settings, "transactions", values)
    assert encrypt_raw_values(settings, "transactions", values).equals(first)  # reused token
    with open_key_store(settings) as store:
        assert store.destroy([key_id("account_id", "acc_cached", settings.pii_hash_key)]) == 1
    shredded = decrypt_raw_values(settings, "transactions", first)
    assert shredded.num_rows == 0  # the old token no longer opens
    second = encrypt_raw_values(settings, "transactions", values)
    assert not second["pii_account_id"].equals(first["pii_account_id"])
    opened = decrypt_raw_values(settings, "transactions", second)
    assert json.loads(opened["value"][0].as_py())["account_id"] == "acc_cached"


def test_a_fresh_process_reads_known_subjects_tokens_from_the_key_store(
    settings: Settings,
) -> None:
    """The token kept with a subject's key serves every later process (each Dagster run is
    one); a store written before tokens were kept gains them on first use, still readable."""
    import sqlite3

    import pyarrow as pa

    from governance import crypto

    values = pa.array(
        [json.dumps({**SEED_TRANSACTION, "account_id": f"acc_{i}"}) for i in range(3)],
        pa.large_string(),
    )
    first = crypto.encrypt_raw_values(settings, "transactions", values)
    crypto._token_caches.clear()  # a new process: nothing made in memory yet
    assert crypto.encrypt_raw_values(settings, "transactions", values).equals(first)

    with sqlite3.connect(settings.key_store_path) as con:  # as an older store holds it
        con.execute("UPDATE subject_keys SET token = NULL")
    crypto._token_caches.clear()
    again = crypto.encrypt_raw_values(settings, "transactions", values)
    opened = decrypt_raw_values(settings, "transactions", again)
    assert [json.loads(v)["account_id"] for v in opened["value"].to_pylist()] == [
        "acc_0",
        "acc_1",
        "acc_2",
    ]
    with sqlite3.connect(settings.key_store_path) as con:
        assert (
            con.execute("SELECT count(*) FROM subject_keys WHERE token IS NULL").fetchone()[0] == 0
        )


def test_identifiers_are_sealed_whatever_the_payload_spelling(settings: Settings) -> None:
    """The same pair nested again, escapes in the value or elsewhere, non-ASCII text before
    it: the top-level identifier is masked and sealed, the nested object and the other fields
    are left as received, and silver reads the payload back."""
    import pyarrow as pa

    payloads = [
        '{"customer_id": "c_1", "x": {"customer_id":"c_1"}}',
        '{"x":{"customer_id":"c_2"},"customer_id":"c_2"}',
        '{"customer_id":"c_\\u0033"}',
        '{"customer_id":"c_4","note":"\\"customer_id\\":\\"c_4\\""}',
        '{"city":"Besançon","customer_id":"c_\\"5é"}',
        '{"city":"Besançon", "customer_id": "c_6é"}',
        '{"customer_id":"c_' + "7" * 100 + '"}',  # longer than the first bytes searched
    ]
    sealed = encrypt_raw_values(settings, "orders", pa.array(payloads, pa.large_string()))
    docs = [json.loads(v) for v in sealed["value"].to_pylist()]
    # one `*` per byte of the text between the quotes (`c_\"5é`: 7 bytes)
    assert [d["customer_id"] for d in docs] == ["*" * n for n in (3, 3, 3, 3, 7, 5, 102)]
    assert [d.get("x") for d in docs[:2]] == [{"customer_id": "c_1"}, {"customer_id": "c_2"}]
    assert docs[3]["note"] == '"customer_id":"c_4"'
    assert [d.get("city") for d in docs[4:6]] == ["Besançon", "Besançon"]
    assert sealed["pii_customer_id"].null_count == 0
    opened = decrypt_raw_values(settings, "orders", sealed)
    assert opened.column_names == ["value"]
    assert [json.loads(v) for v in opened["value"].to_pylist()] == [json.loads(p) for p in payloads]


def test_raw_files_name_no_customer_and_rows_with_payload_tokens_still_decrypt(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    """A raw table written before the pii columns (its payloads hold `pii1.` tokens) gains
    them on the next ingestion; no raw file holds a plaintext identifier; silver reads the
    rows of both layouts, and an erasure removes a subject's rows of either layout."""
    from datetime import UTC, datetime

    import pyarrow as pa
    from deltalake import write_deltalake
    from testkit import order

    from governance import crypto
    from governance.keystore import open_key_store
    from ingestion.raw import _raw_rows
    from lake.tables import RAW_SCHEMA

    kid = crypto.key_id("customer_id", "c_old", settings.pii_hash_key)
    with open_key_store(settings) as store:  # the token as ingestion put it in the payload
        token = store.tokens([kid], crypto._sealer({kid: "c_old"}))[kid]
    assert token.startswith(TOKEN_PREFIX)
    records = pa.table(
        {
            "partition": [0],
            "offset": [10**6],
            "key": [b"o_old"],
            "value": [json.dumps(order(999, order_id="o_old", customer_id=token)).encode()],
            "timestamp_ms": [1_755_345_600_000],
            "headers": [[]],
        },
        schema=kafka_client.RECORDS_SCHEMA,
    )
    now = datetime(2025, 8, 16, 12, 0, tzinfo=UTC)
    old = _raw_rows(records, pa.array([1], pa.int32()), "orders", 0, "old", now)
    old = old.select(RAW_SCHEMA.names)  # as raw was before the pii columns
    write_deltalake(raw_uri(settings, "orders"), old, partition_by=["ingest_date"])

    kafka_client.produce(
        broker.bootstrap, "orders", [order_message(i, customer_id=f"c_{i % 4}") for i in range(20)]
    )
    assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 20
    raw = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table()
    assert "pii_customer_id" in raw.column_names  # the older table gained the column
    rows = {json.loads(r["value"])["order_id"]: r for r in raw.to_pylist()}
    assert rows["o_old"]["pii_customer_id"] is None and token in rows["o_old"]["value"]
    assert json.loads(rows["o_3"]["value"])["customer_id"] == "***"
    assert rows["o_3"]["pii_customer_id"]["sealed"]
    raw_files = Path(settings.lake_root) / "raw"
    for plain in (b"c_old", b"c_0", b"c_1", b"c_2", b"c_3"):
        assert _files_holding(raw_files, plain) == []

    opened = decrypt_raw_values(settings, "orders", raw)
    assert "pii_customer_id" not in opened.column_names
    assert {json.loads(v)["customer_id"] for v in opened["value"].to_pylist()} == {
        "c_old",
        "c_0",
        "c_1",
        "c_2",
        "c_3",
    }
    assert build_silver(settings, "silver_orders").rows_inserted == 42  # 21 orders, 2 lines
    silver = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    hashes = dict(
        zip(silver["order_id"].to_pylist(), silver["customer_id_hash"].to_pylist(), strict=True)
    )
    assert hashes["o_old"] == pseudonym("c_old", settings.pii_hash_key)
    assert hashes["o_2"] == pseudonym("c_2", settings.pii_hash_key)

    with open_key_store(settings) as store:
        store.destroy([kid, crypto.key_id("customer_id", "c_1", settings.pii_hash_key)])
    left = decrypt_raw_values(settings, "orders", raw)
    assert {json.loads(v)["customer_id"] for v in left["value"].to_pylist()} == {
        "c_0",
        "c_2",
        "c_3",
    }
    assert left.num_rows == 15
