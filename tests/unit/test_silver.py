"""raw → silver on hand-made raw Delta tables (no broker)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from testkit import SEED_ORDER

from lake.silver import build_inventory_current, build_silver, hmac_sql
from lake.tables import RAW_SCHEMA, raw_uri, silver_uri
from lakehouse.config import Settings


def append_raw(settings: Settings, topic: str, events: list[dict], start_offset: int = 0) -> None:
    now = datetime(2025, 8, 16, 13, 0, tzinfo=UTC)
    n = len(events)
    table = pa.table(
        {
            "epoch": [0] * n,
            "topic": [topic] * n,
            "partition": [0] * n,
            "offset": list(range(start_offset, start_offset + n)),
            "key": ["k"] * n,
            "value": [json.dumps(e) for e in events],
            "kafka_timestamp": [now] * n,
            "headers": [[] for _ in range(n)],
            "ingested_at": [now] * n,
            "batch_id": ["b"] * n,
            "ingest_date": [now.date()] * n,
            "schema_version": [1] * n,
        },
        schema=RAW_SCHEMA,
    )
    write_deltalake(raw_uri(settings, topic), table, mode="append", partition_by=["ingest_date"])


def test_hmac_sql_matches_python_hmac() -> None:
    key = "a-secret-key"
    got = duckdb.sql(f"SELECT {hmac_sql(repr('c_77'), key)}").fetchall()[0][0]
    assert got == hmac.new(key.encode(), b"c_77", hashlib.sha256).hexdigest()
    long_key = "k" * 100  # keys longer than the block size are hashed first (RFC 2104)
    got = duckdb.sql(f"SELECT {hmac_sql(repr('é'), long_key)}").fetchall()[0][0]
    assert got == hmac.new(long_key.encode(), "é".encode(), hashlib.sha256).hexdigest()


def test_seed_order_is_exploded_typed_and_pseudonymised(settings: Settings) -> None:
    append_raw(settings, "orders", [SEED_ORDER, SEED_ORDER])  # delivered twice
    result = build_silver(settings, "silver_orders")
    assert result.rows_inserted == 2
    rows = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table().sort_by("line")
    first, second = rows.to_pylist()
    assert (first["line"], first["sku"], first["qty"], first["price"]) == (1, "A123", 2, 19.9)
    assert (second["line"], second["sku"], second["qty"], second["price"]) == (2, "B200", 1, 49.0)
    assert first["line_amount"] == 39.8
    assert first["ts"] == datetime(2025, 8, 16, 12, 10, tzinfo=UTC)
    assert first["order_date"] == date(2025, 8, 16)
    assert first["store_id"] is None and first["city"] == "Lille"
    expected = hmac.new(settings.pii_hash_key.encode(), b"c_77", hashlib.sha256).hexdigest()
    assert first["customer_id_hash"] == expected
    assert "c_77" not in json.dumps(rows.to_pylist(), default=str)
    # a re-delivery in a later batch is skipped by the MERGE
    append_raw(settings, "orders", [SEED_ORDER], start_offset=2)
    again = build_silver(settings, "silver_orders")
    assert again.rows_inserted == 0 and again.duplicates_skipped == 2
    assert DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table().num_rows == 2


def test_late_events_are_accepted_and_counted(settings: Settings) -> None:
    append_raw(settings, "orders", [SEED_ORDER])
    build_silver(settings, "silver_orders")
    late = {**SEED_ORDER, "order_id": "o_late", "ts": "2025-08-16T08:00:00Z"}  # 4h10 earlier
    fresh = {**SEED_ORDER, "order_id": "o_new", "ts": "2025-08-16T12:30:00Z"}
    append_raw(settings, "orders", [late, fresh], start_offset=1)
    result = build_silver(settings, "silver_orders")  # default watermark: 120 minutes
    assert result.late_events == 2  # two lines of the late order
    assert result.rows_inserted == 4


def test_inventory_current_keeps_latest_update_per_sku_store(settings: Settings) -> None:
    def update(minute: int, on_hand: int, store: str = "s_lille") -> dict:
        return {
            "sku": "A123",
            "store_id": store,
            "ts": f"2025-08-16T12:{minute:02d}:00Z",
            "update_type": "update",
            "on_hand": on_hand,
            "on_order": 0,
            "sold_qty": 1,
            "received_qty": 0,
        }

    append_raw(settings, "inventory", [update(5, 10), update(10, 9), update(5, 50, "s_lyon")])
    build_silver(settings, "silver_inventory")
    build_inventory_current(settings)
    # an out-of-order older update must not overwrite the newer position
    append_raw(settings, "inventory", [update(0, 99), update(15, 8, "s_lyon")], start_offset=3)
    build_silver(settings, "silver_inventory")
    build_inventory_current(settings)
    current = DeltaTable(silver_uri(settings, "silver_inventory_current")).to_pyarrow_table()
    by_store = {r["store_id"]: r["on_hand"] for r in current.to_pylist()}
    assert by_store == {"s_lille": 9, "s_lyon": 8}
    assert DeltaTable(silver_uri(settings, "silver_inventory")).to_pyarrow_table().num_rows == 5


def test_insert_new_rows_skips_known_keys_and_adds_new_columns(settings: Settings) -> None:
    from deltalake import CommitProperties

    from lake.tables import insert_new_rows

    uri = settings.table_uri("silver", "evolving")
    day = date(2026, 11, 2)
    first = pa.table({"id": ["a", "b"], "d": [day, day], "x": [1.0, 2.0]})
    assert insert_new_rows(settings, uri, first, "id", "d", CommitProperties()) == 2
    # a newer release writes one more column: the table gains it, old rows read null
    second = pa.table({"id": ["b", "c"], "d": [day, day], "x": [9.0, 3.0], "y": [None, 30.0]})
    assert insert_new_rows(settings, uri, second, "id", "d", CommitProperties()) == 1
    rows = DeltaTable(uri).to_pyarrow_table().sort_by("id").to_pylist()
    assert [(r["id"], r["x"], r["y"]) for r in rows] == [
        ("a", 1.0, None),
        ("b", 2.0, None),
        ("c", 3.0, 30.0),
    ]


def _orders(first: int, n: int) -> list[dict]:
    return [{**SEED_ORDER, "order_id": f"o_{i:04d}"} for i in range(first, first + n)]


def test_backlog_is_built_in_batches_capped_by_max_batch_records(
    settings: Settings, lakehouse_env: dict[str, str]
) -> None:
    """Six raw commits of 4 orders with a cap of 10 raw rows: three silver commits of two raw
    versions each, each with the raw version it completes; every order once."""
    for commit in range(6):
        append_raw(settings, "orders", _orders(4 * commit, 4), start_offset=4 * commit)
    append_raw(settings, "orders", _orders(0, 2), start_offset=24)  # 2 re-deliveries
    capped = Settings.from_env({**lakehouse_env, "LAKEHOUSE_MAX_BATCH_RECORDS": "10"})
    result = build_silver(capped, "silver_orders")
    assert (result.raw_rows_read, result.rows_inserted, result.duplicates_skipped) == (26, 48, 4)
    assert result.extra["commits"] == 3
    uri = silver_uri(settings, "silver_orders")
    markers = [
        DeltaTable(uri, version=v).transaction_version("silver<-raw_orders") for v in range(3)
    ]
    assert markers == [1, 3, 6]  # raw versions 0-1, 2-3, 4-6: each commit completes one
    rows = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    assert rows.num_rows == 48 and len(set(rows["order_id"].to_pylist())) == 24
    assert build_silver(capped, "silver_orders").rows_inserted == 0  # up to date


def test_backlog_whose_log_was_cleaned_up_is_built_in_capped_batches(
    settings: Settings, lakehouse_env: dict[str, str]
) -> None:
    """Without the raw log's history (checkpointed, older commits removed) the versions that
    added each file are unknown: capped batches of whole files, committed without a marker but
    the last, which carries the raw version read."""
    for commit in range(6):
        append_raw(settings, "orders", _orders(4 * commit, 4), start_offset=4 * commit)
    raw = DeltaTable(raw_uri(settings, "orders"))
    raw.create_checkpoint()
    log_dir = Path(raw.table_uri.removeprefix("file://")) / "_delta_log"
    for version in range(raw.version()):
        (log_dir / f"{version:020d}.json").unlink()
    capped = Settings.from_env({**lakehouse_env, "LAKEHOUSE_MAX_BATCH_RECORDS": "10"})
    result = build_silver(capped, "silver_orders")
    assert (result.raw_rows_read, result.rows_inserted, result.extra["commits"]) == (24, 48, 3)
    uri = silver_uri(settings, "silver_orders")
    markers = [
        DeltaTable(uri, version=v).transaction_version("silver<-raw_orders") for v in range(3)
    ]
    assert markers == [None, None, 5]
    assert build_silver(capped, "silver_orders").rows_inserted == 0
