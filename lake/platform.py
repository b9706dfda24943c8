"""Platform health as data: a snapshot of the lake and the broker, appended to Delta tables
under `<lake>/_platform/` that the gold dbt models `platform_*` (the Platform dashboard) publish.

- table_rows: rows, files and bytes of every Delta table (zone, table) at the time;
- freshness: per topic, the newest Kafka (event) timestamp and ingestion time in raw;
- kafka_lag: per topic and partition, the broker's high-water mark, the next offset the lake
  will read and their difference (nothing when the broker cannot be reached);
- quality_results: one row per data-quality suite run (`record_quality_result`, called by the
  Dagster asset checks).

Every snapshot appends with its `snapshot_at`, so the tables are histories. Plain Python (no
Dagster import): the `platform_snapshot` asset and tests call these functions.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from lake.maintenance import lake_tables
from lake.tables import UTC_TS, open_table, raw_uri, stats_max
from lakehouse.config import Settings

log = logging.getLogger(__name__)

TABLE_ROWS_SCHEMA = pa.schema(
    [
        pa.field("snapshot_at", UTC_TS, nullable=False),
        pa.field("zone", pa.string(), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("files", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
    ]
)
FRESHNESS_SCHEMA = pa.schema(
    [
        pa.field("snapshot_at", UTC_TS, nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("newest_event_at", UTC_TS),
        pa.field("newest_ingested_at", UTC_TS),
        pa.field("raw_rows", pa.int64(), nullable=False),
    ]
)
KAFKA_LAG_SCHEMA = pa.schema(
    [
        pa.field("snapshot_at", UTC_TS, nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("high_watermark", pa.int64(), nullable=False),
        pa.field("lake_offset", pa.int64(), nullable=False),
        pa.field("lag", pa.int64(), nullable=False),
    ]
)
QUALITY_RESULTS_SCHEMA = pa.schema(
    [
        pa.field("checked_at", UTC_TS, nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("success", pa.bool_(), nullable=False),
        pa.field("rows_checked", pa.int64(), nullable=False),
        pa.field("expectations_evaluated", pa.int64(), nullable=False),
        pa.field("expectations_failed", pa.int64(), nullable=False),
    ]
)


def platform_uri(settings: Settings, name: str) -> str:
    return settings.table_uri("_platform", name)


def _append(settings: Settings, name: str, rows: pa.Table) -> None:
    if rows.num_rows:
        write_deltalake(
            platform_uri(settings, name),
            rows,
            mode="append",
            storage_options=settings.storage_options or None,
        )


def table_rows(settings: Settings, at: datetime) -> pa.Table:
    """Rows, files and bytes of every Delta table of the lake, from the Delta log (no scan)."""
    records: list[dict[str, object]] = []
    for relative in lake_tables(settings):
        zone, _, name = relative.partition("/")
        table = open_table(f"{settings.lake_root.rstrip('/')}/{relative}", settings)
        if table is None:
            continue
        actions = pa.table(table.get_add_actions(flatten=True))
        rows = int(pc.sum(actions["num_records"]).as_py() or 0) if actions.num_rows else 0
        size = int(pc.sum(actions["size_bytes"]).as_py() or 0) if actions.num_rows else 0
        records.append(
            {
                "snapshot_at": at,
                "zone": zone,
                "table_name": name or zone,
                "rows": rows,
                "files": actions.num_rows,
                "bytes": size,
                "version": table.version(),
            }
        )
    return pa.Table.from_pylist(records, TABLE_ROWS_SCHEMA)


def freshness(settings: Settings, topics: tuple[str, ...], at: datetime) -> pa.Table:
    """Per topic: newest Kafka timestamp (the producers' event time) and ingestion time of
    raw_<topic>, read from the Delta log's statistics (a snapshot runs with every micro-batch,
    so it must not scan the raw zone); a topic with no raw table yet has null times and 0 rows."""
    records: list[dict[str, object]] = []
    for topic in topics:
        table = open_table(raw_uri(settings, topic), settings)
        newest_event = newest_ingested = None
        rows = 0
        if table is not None:  # from the Delta log's file statistics: no raw file is read
            actions = pa.table(table.get_add_actions(flatten=True))
            rows = int(pc.sum(actions["num_records"]).as_py() or 0) if actions.num_rows else 0
            newest_event = stats_max(table, "kafka_timestamp")
            newest_ingested = stats_max(table, "ingested_at")
        records.append(
            {
                "snapshot_at": at,
                "topic": topic,
                "newest_event_at": newest_event,
                "newest_ingested_at": newest_ingested,
                "raw_rows": rows,
            }
        )
    return pa.Table.from_pylist(records, FRESHNESS_SCHEMA)


def _reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether one of the bootstrap servers accepts a TCP connection (the Kafka client itself
    would retry for its whole request timeout before giving up)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def kafka_lag(settings: Settings, topics: tuple[str, ...], at: datetime) -> pa.Table:
    """Per topic and partition: high-water mark on the broker, next offset the lake reads
    (raw table's checkpoint), lag = their difference (never negative). Empty when the broker
    does not answer: an unreachable broker is no lag figure, not a zero."""
    from ingestion import kafka_client
    from ingestion.raw import lake_offsets

    if not _reachable(settings.bootstrap):
        log.info("kafka lag not measured: no broker answers on %s", settings.bootstrap)
        return KAFKA_LAG_SCHEMA.empty_table()
    try:  # one consumer, one fetch round for every topic
        all_marks = kafka_client.probe_topics_high_watermarks(settings.bootstrap, topics)
    except Exception as error:  # any client error means "no broker figure"
        log.info("kafka lag not measured: %s", error)
        return KAFKA_LAG_SCHEMA.empty_table()
    records: list[dict[str, object]] = []
    for topic, marks in all_marks.items():
        offsets = lake_offsets(settings, topic, marks).next_offsets
        for partition, mark in sorted(marks.items()):
            read = offsets.get(partition, 0)
            records.append(
                {
                    "snapshot_at": at,
                    "topic": topic,
                    "partition": partition,
                    "high_watermark": mark,
                    "lake_offset": read,
                    "lag": max(mark - read, 0),
                }
            )
    return pa.Table.from_pylist(records, KAFKA_LAG_SCHEMA)


def snapshot_platform(settings: Settings, *, broker: bool = True) -> dict[str, int]:
    """Append one snapshot to _platform/table_rows, freshness and (when `broker` and it
    answers) kafka_lag. Returns rows appended per table."""
    from ingestion.broker import TOPICS

    at = datetime.now(UTC)
    tables = {
        "table_rows": table_rows(settings, at),
        "freshness": freshness(settings, TOPICS, at),
        "kafka_lag": kafka_lag(settings, TOPICS, at) if broker else KAFKA_LAG_SCHEMA.empty_table(),
    }
    for name, rows in tables.items():
        _append(settings, name, rows)
    return {name: rows.num_rows for name, rows in tables.items()}


def record_quality_result(
    settings: Settings,
    table: str,
    success: bool,
    rows_checked: int,
    evaluated: int,
    failed: int,
    at: datetime | None = None,
) -> None:
    """Append one data-quality suite outcome to _platform/quality_results."""
    row = {
        "checked_at": at or datetime.now(UTC),
        "table_name": table,
        "success": success,
        "rows_checked": rows_checked,
        "expectations_evaluated": evaluated,
        "expectations_failed": failed,
    }
    _append(settings, "quality_results", pa.Table.from_pylist([row], QUALITY_RESULTS_SCHEMA))
