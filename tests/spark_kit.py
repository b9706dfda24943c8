"""Raw tables for the engine tests, written the way ingestion writes them, without a broker.

Messages from the project's generators (or hand-made ones) get Kafka coordinates (key-hashed
partitions, consecutive offsets), are validated against their topic's contract versions and
have their direct identifiers encrypted under per-subject keys (governance.crypto), as
`ingestion.raw.ingest_batch` does; then one raw Delta commit per call, like a micro-batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from governance.crypto import encrypt_raw
from ingestion import kafka_client
from ingestion.contracts import contract
from ingestion.raw import _raw_rows
from ingestion.validation import validate_versions
from lake.tables import raw_uri
from lakehouse.config import Settings


def generated_messages(seed: int = 5, days: float = 2.0) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every topic silver reads, from the project's generators (small scale, fixed clock)."""
    from fraud.simulator import generate_transactions
    from ingestion.generators.inventory import generate_inventory
    from ingestion.generators.orders import generate_orders
    from ingestion.generators.supply import SUPPLY_TOPICS, generate_supply_history

    end = datetime(2025, 8, 16, 12, 0, tzinfo=UTC)
    start = end - timedelta(days=days)
    orders = generate_orders(start, end, seed, 0.004)
    inventory = generate_inventory(start, end, seed, 0.004, initial_at=start, orders=orders)
    # chargebacks arrive days after the payment: a longer window so that labels exist
    payments = generate_transactions(end - timedelta(days=12), end, seed, 0.003, 0.02)
    supply = generate_supply_history(end.date() - timedelta(days=10), end.date(), seed, 0.3)
    messages = {
        "orders": list(orders.messages("orders")),
        "sessions": list(orders.messages("sessions")),
        "inventory": list(inventory.messages("inventory")),
        "transactions": list(payments.messages("transactions")),
        "fraud_labels": list(payments.messages("fraud_labels")),
    }
    for topic in SUPPLY_TOPICS:
        messages[topic] = list(supply.messages(topic))
    return messages


def raw_batch(
    settings: Settings,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    next_offsets: dict[int, int],
    partitions: int = 3,
    epoch: int = 0,
    ingested_at: datetime | None = None,
) -> pa.Table:
    """Raw rows (`raw_schema(topic)`) of `messages` (key, value) as one ingestion micro-batch would
    write them: key-hashed partitions, offsets from `next_offsets` (advanced in place),
    contract-validated (invalid payloads left out: the ingestion tests cover dead letters),
    direct identifiers encrypted."""
    now = ingested_at or datetime(2025, 8, 16, 12, 30, tzinfo=UTC)
    columns: dict[str, list[object]] = {n: [] for n in kafka_client.RECORDS_SCHEMA.names}
    for key, value in messages:
        partition = zlib.crc32(key or b"") % partitions
        columns["partition"].append(partition)
        columns["offset"].append(next_offsets.get(partition, 0))
        next_offsets[partition] = next_offsets.get(partition, 0) + 1
        columns["key"].append(key)
        columns["value"].append(value)
        columns["timestamp_ms"].append(int(now.timestamp() * 1000))
        columns["headers"].append([])
    records = pa.table(columns, schema=kafka_client.RECORDS_SCHEMA)
    topic_contract = contract(topic)
    schemas = [(v, topic_contract.schema_for(v)) for v in topic_contract.versions]
    reasons, versions = validate_versions(records, schemas)
    good = pc.is_null(reasons)
    raw = _raw_rows(records.filter(good), versions.filter(good), topic, epoch, "test", now)
    return encrypt_raw(settings, topic, raw)


def append_raw(settings: Settings, topic: str, raw: pa.Table) -> None:
    """One raw Delta commit of `raw`, like an ingestion micro-batch."""
    write_deltalake(
        raw_uri(settings, topic),
        raw,
        mode="append",
        partition_by=["ingest_date"],
        storage_options=settings.storage_options or None,
    )


def event(topic_key: str, payload: dict[str, object]) -> tuple[bytes, bytes]:
    return topic_key.encode(), json.dumps(payload, ensure_ascii=False).encode()


def module_spark(app_name: str) -> Any:
    """A module-scoped `spark` fixture: one local Spark session (`app_name`) shared by the
    module's tests, stopped after them (a session costs tens of seconds to start)."""
    import pytest

    @pytest.fixture(scope="module")
    def spark() -> Iterator[Any]:
        from lake.spark_silver import local_spark

        session = local_spark(app_name)
        try:
            yield session
        finally:
            session.stop()

    return spark


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names])


def assert_same_rows(expected: pa.Table, actual: pa.Table, what: str) -> None:
    """Same schema, same rows (in any order): the DuckDB engine's table against the Spark one."""
    import pytest

    assert actual.schema == expected.schema, what
    assert actual.num_rows == expected.num_rows, what
    expected, actual = sorted_rows(expected), sorted_rows(actual.select(expected.column_names))
    for name in expected.column_names:
        left, right = expected[name].combine_chunks(), actual[name].combine_chunks()
        if not left.equals(right):
            diff = [i for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b]
            row = diff[0]
            pytest.fail(
                f"{what}.{name} differs at sorted row {row}: duckdb={left[row]} spark={right[row]}"
            )


REPO = Path(__file__).resolve().parents[1]

# The killed run: the real build, with the driver parked between the tasks' file writes and
# the commit (it says so in a file, then waits to be killed).
KILLED_RUN = """
import sys, time
from pathlib import Path
import lake.spark_silver as engine
from lake.spark_silver import build_silver_spark, local_spark
from lakehouse.config import Settings

ready = Path(sys.argv[1])

def parked_commit(*args, **kwargs):
    written = args[3]
    ready.write_text(str(len(written.actions)))
    time.sleep(600)

engine.commit_files = parked_commit
build_silver_spark(Settings.from_env(), local_spark("killed-run"), "silver_orders")
"""


def kill_between_write_and_commit(lakehouse_env: Mapping[str, str], tmp: Path) -> int:
    """Run a Spark silver_orders build (LAKEHOUSE_* from `lakehouse_env` only, the rest of the
    environment inherited) in its own process group; SIGKILL the group (driver, JVM, Python
    workers) once its tasks wrote their files. Returns how many files the driver was about to
    commit."""
    import pytest

    ready = tmp / f"ready-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {**lakehouse_env, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(ready)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"the Spark run ended early: {process.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("the Spark run never reached its commit")
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return int(ready.read_text())
