"""Bad input at volume: 10,000 generated payloads per topic through validation, raw and silver.

Each topic's corpus (tests/fuzzkit.py: mutated valid events — wrong types, huge numbers,
NaN/Infinity, deep nesting, invalid UTF-8, control characters, 1 MB strings, duplicate keys,
SQL-looking strings, truncations, bad Kafka keys) is committed in two micro-batches by
`ingest_records` (the validation, dead-letter, encryption and commit code of `ingest_batch`),
each followed by the topic's silver step, after being read back from a `lakehouse produce`
input file. Nothing may raise; every payload is either a raw row
or a dead letter with a reason, never both, never neither; every raw row's business key is in
silver. A share of every topic also crosses the real broker (`test_broker_share`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from fuzzkit import ALWAYS_REFUSED, corpus
from testkit import SEED_EVENTS

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.contracts import contract
from ingestion.produce_file import read_jsonl_messages
from ingestion.raw import ingest_batch, ingest_records
from lake.silver import SPECS, build_inventory_current, build_silver
from lake.tables import SILVER_TABLES, dead_letter_uri, open_table, raw_uri, silver_uri
from lakehouse.config import Settings
from sentiment.pipeline import build_silver_social
from sentiment.tables import silver_social_uri

pytestmark = pytest.mark.integration

PER_TOPIC = 10_000
PARTITIONS = 3
TOPICS = sorted(SEED_EVENTS)
# silver key column -> the event field it comes from, where the names differ
KEY_FIELDS = {"silver_fraud_labels": {"ts": "reported_at"}}


def _records(messages: list[tuple[bytes | None, bytes | None]], first: int) -> pa.Table:
    """RECORDS_SCHEMA rows for messages[first:], spread over the partitions as Kafka would
    (message i in partition i % 3 at offset i // 3)."""
    n = len(messages)
    index = range(first, n)
    now_ms = int(time.time() * 1000)
    return pa.table(
        {
            "partition": pa.array([i % PARTITIONS for i in index], pa.int32()),
            "offset": pa.array([i // PARTITIONS for i in index], pa.int64()),
            "key": pa.array([messages[i][0] for i in index], pa.binary()),
            "value": pa.array([messages[i][1] for i in index], pa.large_binary()),
            "timestamp_ms": pa.array([now_ms + i for i in index], pa.int64()),
            "headers": pa.array([[] for _ in index], kafka_client.HEADERS_TYPE),
        },
        schema=kafka_client.RECORDS_SCHEMA,
    )


def _silver_steps(settings: Settings, topic: str) -> list[str]:
    """Run the topic's silver step(s); the names of the silver tables they feed."""
    if topic == "social_raw":
        build_silver_social(settings)
        return ["silver_social"]
    names = [name for name, spec in SPECS.items() if spec.topic == topic]
    for name in names:
        build_silver(settings, name)
    if topic == "inventory":
        build_inventory_current(settings)
    return names


def _positions(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))


def _keys_of_raw(raw: pa.Table, name: str) -> set[tuple[object, ...]]:
    """Business keys of raw rows, read from their payloads the way silver types them."""
    if name == "silver_social":
        columns, schema = ["post_id"], None
    else:
        columns, schema = [k for k in SPECS[name].key if k != "line"], SILVER_TABLES[name][1]
    renamed = KEY_FIELDS.get(name, {})
    parts = []
    for column in columns:
        path = f"json_extract_string(value, '$.{renamed.get(column, column)}')"
        is_time = schema is not None and pa.types.is_timestamp(schema.field(column).type)
        parts.append(f"({path})::TIMESTAMPTZ" if is_time else path)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw", raw.select(["value"]))
        return {tuple(r) for r in con.sql(f"SELECT {', '.join(parts)} FROM raw").fetchall()}
    finally:
        con.close()


def _keys_of_silver(table: pa.Table, name: str) -> set[tuple[object, ...]]:
    columns = (
        ["post_id"] if name == "silver_social" else [k for k in SPECS[name].key if k != "line"]
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("silver", table.select(columns))
        return {tuple(r) for r in con.sql(f"SELECT {', '.join(columns)} FROM silver").fetchall()}
    finally:
        con.close()


def _jsonl(path: Path, messages: list[tuple[bytes | None, bytes | None]]) -> list[bytes]:
    """Write the payloads one a line; the lines a JSON-lines reader must send (a payload with
    a raw line break is two lines of the file, a blank line none)."""
    content = b"\n".join(value or b"" for _, value in messages) + b"\n"
    path.write_bytes(content)
    pieces = [piece.rstrip(b"\r") for piece in content.split(b"\n")]
    return [piece for piece in pieces if piece.strip()]


@pytest.mark.parametrize("topic", TOPICS)
def test_ten_thousand_generated_payloads(settings: Settings, topic: str, tmp_path: Path) -> None:
    messages, kinds = corpus(topic, PER_TOPIC)
    assert len(messages) == PER_TOPIC

    # as a `lakehouse produce` input file: every line sent, byte for byte, in order
    lines = _jsonl(tmp_path / f"{topic}.jsonl", messages)
    read = list(read_jsonl_messages(topic, tmp_path / f"{topic}.jsonl"))
    assert [value for _, value in read] == lines
    key_fields = len(contract(topic).key_fields)
    assert all(k is None or k.decode().count("|") == key_fields - 1 for k, _ in read)

    split = (PER_TOPIC // 2) // PARTITIONS * PARTITIONS  # both halves start a partition row
    results = []
    silver_names: list[str] = []
    for first, last in ((0, split), (split, PER_TOPIC)):
        batch = _records(messages[:last], first)
        results.append(ingest_records(settings, topic, batch))
        silver_names = _silver_steps(settings, topic)  # a MERGE into silver the second time
    for result, sent in zip(results, (split, PER_TOPIC - split), strict=True):
        assert result.rows_written + result.dead_letters == sent, result.summary()

    raw = open_table(raw_uri(settings, topic), settings).to_pyarrow_table()  # type: ignore[union-attr]
    dead_all = open_table(dead_letter_uri(settings), settings).to_pyarrow_table()  # type: ignore[union-attr]
    dead = dead_all.filter(pa.compute.equal(dead_all["topic"], topic))
    in_raw, in_dead = _positions(raw), _positions(dead)
    sent_positions = {(i % PARTITIONS, i // PARTITIONS) for i in range(PER_TOPIC)}
    assert raw.num_rows == len(in_raw) and dead.num_rows == len(in_dead)  # each once
    assert in_raw.isdisjoint(in_dead)
    assert in_raw | in_dead == sent_positions  # counts add up to what was sent
    assert raw.num_rows == sum(r.rows_written for r in results)
    assert all(reason for reason in dead["reason"].to_pylist())

    reason_at = dict(
        zip(
            zip(dead["partition"].to_pylist(), dead["offset"].to_pylist(), strict=True),
            dead["reason"].to_pylist(),
            strict=True,
        )
    )
    for i, kind in enumerate(kinds):
        where = (i % PARTITIONS, i // PARTITIONS)
        if kind == "valid":
            assert where in in_raw, (kind, reason_at.get(where), messages[i][1][:300])
        check = ALWAYS_REFUSED.get(kind)
        if check is not None:
            assert where in in_dead and check(reason_at[where]), (
                kind,
                reason_at.get(where),
                messages[i][1][:300],
            )
    assert 0 < raw.num_rows < PER_TOPIC  # the corpus exercises both outcomes

    for name in silver_names:
        uri = silver_social_uri(settings) if name == "silver_social" else silver_uri(settings, name)
        silver = open_table(uri, settings).to_pyarrow_table()  # type: ignore[union-attr]
        assert _keys_of_silver(silver, name) == _keys_of_raw(raw, name), name
        if "source_offset" in silver.column_names:
            sources = set(
                zip(
                    silver["source_partition"].to_pylist(),
                    silver["source_offset"].to_pylist(),
                    strict=True,
                )
            )
            assert sources <= in_raw


def test_broker_share(settings: Settings, broker: EmbeddedBroker) -> None:
    """600 payloads of every topic (1 MB ones included) over the real broker (`ingest_batch`):
    the same outcome."""
    sent: dict[str, int] = {}
    for topic in TOPICS:
        messages, _ = corpus(topic, 600)
        sent[topic] = kafka_client.produce(broker.bootstrap, topic, messages)
    for topic in TOPICS:
        result = ingest_batch(settings, topic, broker.bootstrap)
        assert result.records_read == sent[topic]
        assert result.rows_written + result.dead_letters == sent[topic], result.summary()
        assert 0 < result.rows_written < sent[topic]
        _silver_steps(settings, topic)


def test_lakehouse_produce_of_a_generated_file_adds_up(
    tmp_path: Path, settings: Settings, broker: EmbeddedBroker, lakehouse_env: dict[str, str]
) -> None:
    """`lakehouse produce` of 10,000 generated lines (1 MB ones included) to the real broker,
    then one ingest: every line is a raw row or a dead letter with a reason."""
    messages, _ = corpus("orders", PER_TOPIC)
    lines = _jsonl(tmp_path / "orders.jsonl", messages)
    env = {**os.environ, **lakehouse_env, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse", "produce", "orders", str(tmp_path / "orders.jsonl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"sent {len(lines)} events" in done.stdout
    result = ingest_batch(settings, "orders", broker.bootstrap)
    assert result.records_read == len(lines)
    assert result.rows_written + result.dead_letters == len(lines), result.summary()
    assert 0 < result.dead_letters < len(lines)
    assert all(result.dead_letter_reasons)
