"""Kafka → raw Delta against a real embedded broker: counts, resume, idempotence, dead letters,
epochs after a broker restart."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from testkit import SEED_ORDER, order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch, lake_offsets, start_new_epoch
from lake.tables import dead_letter_uri, raw_uri
from lakehouse.config import Settings
from lakehouse.errors import BrokerBehindLakeError

pytestmark = pytest.mark.integration


def raw_rows(settings: Settings, topic: str = "orders") -> int:
    return DeltaTable(raw_uri(settings, topic)).to_pyarrow_table().num_rows


def test_produce_ingest_counts_resume_and_rerun(settings: Settings, broker: EmbeddedBroker) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(5000)])
    first = ingest_batch(settings, "orders", broker.bootstrap, max_records=2000)
    # capped: every partition advanced, and the batch ends at one Kafka time (records of the
    # cut's millisecond and later wait for the next batch), so at most the cap was read
    assert first.rows_written == first.records_read
    assert 1000 < first.records_read <= 2000
    assert all(first.end_offsets[p] > 0 for p in range(3))
    assert first.left_at_cap == 5000 - first.records_read
    # a new call resumes from the offsets stored in the table
    second = ingest_batch(settings, "orders", broker.bootstrap)
    assert second.start_offsets == first.end_offsets
    assert first.rows_written + second.rows_written == 5000
    assert sum(second.lag.values()) == 0
    # nothing new: re-running writes nothing and adds no commit
    version = DeltaTable(raw_uri(settings, "orders")).version()
    again = ingest_batch(settings, "orders", broker.bootstrap)
    assert again.rows_written == 0 and again.records_read == 0
    assert DeltaTable(raw_uri(settings, "orders")).version() == version

    table = DeltaTable(raw_uri(settings, "orders"))
    rows = table.to_pyarrow_table()
    assert rows.num_rows == 5000
    coords = pc.binary_join_element_wise(
        pc.cast(rows["partition"], "string"), pc.cast(rows["offset"], "string"), ":"
    )
    assert pc.count_distinct(coords).as_py() == 5000
    assert set(rows["key"].to_pylist()) == {f"o_{i}" for i in range(5000)}
    # the offsets live in the Delta log, as transaction identifiers
    state = lake_offsets(settings, "orders", range(3))
    assert sum(state.next_offsets.values()) == 5000
    assert state.next_offsets == {p: table.transaction_version(f"orders-{p}") for p in range(3)}


def test_requested_range_is_respected_and_idempotent(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(900)])
    marks = kafka_client.probe_high_watermarks(broker.bootstrap, "orders")
    half = {p: hw // 2 for p, hw in marks.items()}
    first = ingest_batch(settings, "orders", broker.bootstrap, end_offsets=half)
    assert first.end_offsets == half
    # the sensor requesting the same range twice (retry) writes nothing the second time
    assert ingest_batch(settings, "orders", broker.bootstrap, end_offsets=half).rows_written == 0
    rest = ingest_batch(settings, "orders", broker.bootstrap, end_offsets=marks)
    assert first.rows_written + rest.rows_written == 900 == raw_rows(settings)


MALFORMED: list[tuple[str, bytes | None, bytes | None, str]] = [
    ("invalid JSON", b"o_x1", b"{not json", "invalid JSON"),
    ("wrong type", b"o_x2", json.dumps({**SEED_ORDER, "items": "many"}).encode(), "expected array"),
    (
        "missing field",
        b"o_x3",
        json.dumps({k: v for k, v in SEED_ORDER.items() if k != "ts"}).encode(),
        "missing required field ts",
    ),
    (
        "extra field",
        b"o_x4",
        json.dumps({**SEED_ORDER, "coupon": "X"}).encode(),
        "unknown field(s) coupon",
    ),
    ("non-UTF-8", b"o_x5", b'{"order_id": "\xff\xfe"}', "not valid UTF-8"),
    (
        "1 MB payload",
        b"o_x6",
        json.dumps({**SEED_ORDER, "city": "x" * 1_000_000}).encode(),
        "payload too large",
    ),
    ("empty value", b"o_x7", b"", "empty value"),
    ("null value", b"o_x8", None, "empty value"),
    ("null key", None, json.dumps(SEED_ORDER).encode(), "missing Kafka key"),
]


def test_malformed_corpus_goes_to_dead_letter_and_valid_events_pass(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    good = [order_message(i) for i in range(100)]
    bad = [(key, value) for _, key, value, _ in MALFORMED]
    kafka_client.produce(broker.bootstrap, "orders", good[:50] + bad + good[50:])
    result = ingest_batch(settings, "orders", broker.bootstrap)
    assert result.rows_written == 100
    assert result.dead_letters == len(MALFORMED)
    dead = DeltaTable(dead_letter_uri(settings)).to_pyarrow_table().to_pylist()
    assert len(dead) == len(MALFORMED)
    for (_, key, value, reason), row in zip(
        MALFORMED, sorted(dead, key=lambda r: bad.index((r["key"], r["payload"]))), strict=True
    ):
        assert reason in row["reason"]
        assert row["topic"] == "orders" and row["offset"] >= 0 and row["partition"] in (0, 1, 2)
        assert row["payload"] == value and row["key"] == key  # nothing lost, byte for byte
    # the batch advanced past the dead letters: a re-run neither re-reads nor duplicates them
    assert ingest_batch(settings, "orders", broker.bootstrap).records_read == 0
    assert DeltaTable(dead_letter_uri(settings)).to_pyarrow_table().num_rows == len(MALFORMED)


def test_broker_restart_stops_ingestion_until_a_new_epoch(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(300)])
    assert ingest_batch(settings, "orders", broker.bootstrap).rows_written == 300
    broker.stop()  # memory storage: the log is gone
    broker.start()
    broker.ensure_topics()
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(1000, 1030)])
    with pytest.raises(BrokerBehindLakeError, match="--new-epoch"):
        ingest_batch(settings, "orders", broker.bootstrap)
    assert raw_rows(settings) == 300  # nothing read, nothing skipped

    epoch = start_new_epoch(settings, "orders", broker.bootstrap, "test restart")
    assert epoch == 1
    result = ingest_batch(settings, "orders", broker.bootstrap)
    assert result.epoch == 1 and result.rows_written == 30
    rows = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table()
    assert rows.num_rows == 330
    assert pc.sum(pc.equal(rows["epoch"], 1)).as_py() == 30


def test_refilled_log_past_the_lake_offsets_is_detected(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(60)])
    ingest_batch(settings, "orders", broker.bootstrap)
    broker.stop()
    broker.start()
    broker.ensure_topics()
    # a new log that is *longer* than what the lake holds: offsets alone would not notice
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(500, 800)])
    with pytest.raises(BrokerBehindLakeError, match="replaced"):
        ingest_batch(settings, "orders", broker.bootstrap)
