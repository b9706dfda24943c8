"""Raw tables for the engine tests, written the way ingestion writes them, without a broker.

Messages from the project's generators (or hand-made ones) get Kafka coordinates (key-hashed
partitions, consecutive offsets), are validated against their topic's contract versions and
have their direct identifiers encrypted under per-subject keys (governance.crypto), as
`ingestion.raw.ingest_batch` does; then one raw Delta commit per call, like a micro-batch.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
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
