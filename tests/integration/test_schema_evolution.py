"""A topic's contract versions in the lake: producers send transactions v1 and v2 in the same
batch; raw rows record the version each event validated against; silver reads both; the batch
decisions apply R004 to the 3-D Secure result; an event no version accepts is dead-lettered
with the versions tried."""

from __future__ import annotations

import json

import polars as pl
import pytest
from deltalake import DeltaTable
from testkit import SEED_TRANSACTION

from fraud.pipeline import build_decisions, build_features, decisions_uri
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake.silver import build_silver
from lake.tables import dead_letter_uri, raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

STATUSES = ["Y", "A", "N", "U", "R"]


def _event(i: int, status: str | None) -> tuple[bytes, bytes]:
    event = {
        **SEED_TRANSACTION,
        "transaction_id": f"tx_{i}",
        "card_hash": f"card_{i}",
        "amount": 800.0,
        "timestamp": f"2026-03-01T12:{i // 60:02d}:{i % 60:02d}Z",
    }
    if status is not None:
        event["three_ds_status"] = status
    return event["transaction_id"].encode(), json.dumps(event).encode()


def test_v1_and_v2_producers_during_a_transition(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    v1 = [_event(i, None) for i in range(20)]
    v2 = [_event(20 + i, STATUSES[i % 5]) for i in range(20)]
    unknown = [_event(40, "Q")]  # not an EMV 3DS transStatus: neither version accepts it
    kafka_client.produce(broker.bootstrap, "transactions", v1 + v2 + unknown)

    result = ingest_batch(settings, "transactions", broker.bootstrap)
    assert (result.rows_written, result.dead_letters) == (40, 1)
    raw = pl.from_arrow(DeltaTable(raw_uri(settings, "transactions")).to_pyarrow_table())
    # newest version first: a v1 event is also a valid v2 event (BACKWARD: v2 reads v1)
    assert raw["schema_version"].value_counts().rows() == [(2, 40)]
    letters = pl.from_arrow(DeltaTable(dead_letter_uri(settings)).to_pyarrow_table())
    assert letters["reason"].to_list() == [
        "matches no registered version (v2: field three_ds_status: Q is not one of Y,A,N,U,R; "
        "v1: unknown field(s) three_ds_status)"
    ]

    build_silver(settings, "silver_transactions")
    silver = pl.from_arrow(
        DeltaTable(silver_uri(settings, "silver_transactions")).to_pyarrow_table()
    )
    statuses = dict(silver.select("transaction_id", "three_ds_status").iter_rows())
    assert statuses["tx_0"] is None and statuses["tx_20"] == "Y" and statuses["tx_22"] == "N"
    assert silver["three_ds_status"].null_count() == 20

    build_features(settings)
    build_decisions(settings)  # no labels in the lake: rules only
    decisions = pl.from_arrow(DeltaTable(decisions_uri(settings)).to_pyarrow_table())
    r004 = {
        tx: "R004_ecom_without_3ds" in rules
        for tx, rules in decisions.select("transaction_id", "rule_ids").iter_rows()
    }
    expected = {f"tx_{i}": True for i in range(20)} | {
        f"tx_{20 + i}": STATUSES[i % 5] not in ("Y", "A") for i in range(20)
    }
    assert r004 == expected
    challenged = decisions.filter(pl.col("transaction_id").is_in(["tx_20", "tx_21"]))
    assert set(challenged["decision"]) == {"ALLOW"}
