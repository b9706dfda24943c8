"""Publishing Delta rows back to Kafka with a recorded position (transactional outbox).

The Delta table is the outbox. `_outbox` is a tiny Delta table whose commits carry, as Delta
transaction identifiers (app id `<topic><-<table>`), the table version a topic has been sent
up to. A run publishes the rows of the files the table gained since that version, waits for
every acknowledgement (acks=all), then commits the new position.

Guarantee: at-least-once, never lost. Re-running a range that was published sends nothing.
The only duplicates come from a crash between the broker's acks and the `_outbox` commit:
the same rows are then sent again with the same key (post_id) and the same value, so a
consumer that keeps the last value per key (or a compacted topic) sees each post once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake

from ingestion import kafka_client
from lake.silver import rows_added_since
from lake.tables import open_table
from lakehouse.config import Settings
from sentiment.tables import outbox_uri

log = logging.getLogger(__name__)
OUTBOX_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("table_version", pa.int64(), nullable=False),
        pa.field("messages", pa.int64(), nullable=False),
        pa.field("published_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def _app_id(topic: str, table_uri: str) -> str:
    return f"{topic}<-{table_uri.rstrip('/').rsplit('/', 1)[-1]}"


def published_version(settings: Settings, topic: str, table_uri: str) -> int | None:
    outbox = open_table(outbox_uri(settings), settings)
    return None if outbox is None else outbox.transaction_version(_app_id(topic, table_uri))


def publish_new_rows(
    settings: Settings,
    bootstrap: str,
    topic: str,
    table_uri: str,
    to_message: Callable[[dict[str, object]], dict[str, object]],
) -> int:
    """Send the rows `table_uri` gained since the last publication to `topic`, keyed by
    post_id; returns the number of messages sent."""
    since = published_version(settings, topic, table_uri)
    rows, version = rows_added_since(settings, table_uri, since)
    if version is None or (since is not None and version <= since):
        return 0
    kafka_client.ensure_topics(bootstrap, [topic], settings.topic_partitions)
    messages = [
        (
            str(row["post_id"]).encode(),
            json.dumps(to_message(row), ensure_ascii=False, default=str).encode(),
        )
        for row in rows.to_pylist()
    ]
    sent = kafka_client.produce(bootstrap, topic, messages) if messages else 0
    record = pa.table(
        {
            "topic": [topic],
            "table_version": [version],
            "messages": [sent],
            "published_at": [datetime.now(UTC)],
        },
        schema=OUTBOX_SCHEMA,
    )
    write_deltalake(
        outbox_uri(settings),
        record,
        mode="append",
        storage_options=settings.storage_options or None,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(_app_id(topic, table_uri), version)]
        ),
    )
    log.info("published %d messages to %s (table version %d)", sent, topic, version)
    return sent
