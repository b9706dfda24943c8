"""Platform snapshot tables (lake/platform.py) on a small local lake, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from testkit import free_port

from lake.platform import (
    KAFKA_LAG_SCHEMA,
    freshness,
    kafka_lag,
    platform_uri,
    record_quality_result,
    snapshot_platform,
    table_rows,
)
from lake.tables import RAW_SCHEMA, raw_uri
from lakehouse.config import Settings

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _raw_rows(n: int, newest: datetime) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "epoch": 1,
                "topic": "orders",
                "partition": i % 2,
                "offset": i,
                "key": f"o{i}",
                "value": "{}",
                "kafka_timestamp": newest.replace(minute=i),
                "headers": [],
                "ingested_at": newest.replace(minute=i, second=5),
                "batch_id": "b1",
                "ingest_date": newest.date(),
                "schema_version": 1,
            }
            for i in range(n)
        ],
        schema=RAW_SCHEMA,
    )


def test_rows_per_table_and_freshness_from_the_lake(tmp_path: Path) -> None:
    settings = Settings.from_env(  # no broker listens on that port
        {"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_BROKER_PORT": str(free_port())}
    )
    newest = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)
    write_deltalake(raw_uri(settings, "orders"), _raw_rows(3, newest))
    write_deltalake(raw_uri(settings, "orders"), _raw_rows(4, newest), mode="append")
    write_deltalake(settings.table_uri("silver", "orders"), pa.table({"x": [1, 2]}))
    rows = {(r["zone"], r["table_name"]): r for r in table_rows(settings, AT).to_pylist()}
    assert rows[("raw", "orders")]["rows"] == 7 and rows[("raw", "orders")]["files"] == 2
    assert rows[("raw", "orders")]["version"] == 1
    assert rows[("silver", "orders")]["rows"] == 2
    fresh = {r["topic"]: r for r in freshness(settings, ("orders", "sessions"), AT).to_pylist()}
    assert fresh["orders"]["newest_event_at"] == newest.replace(minute=3)
    assert fresh["orders"]["newest_ingested_at"] == newest.replace(minute=3, second=5)
    assert fresh["orders"]["raw_rows"] == 7
    assert fresh["sessions"]["newest_event_at"] is None and fresh["sessions"]["raw_rows"] == 0
    # no broker answers: no lag figure (not a zero)
    assert kafka_lag(settings, ("orders",), AT).num_rows == 0
    assert kafka_lag(settings, ("orders",), AT).schema == KAFKA_LAG_SCHEMA


def test_snapshots_append_with_their_time(tmp_path: Path) -> None:
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path)})
    write_deltalake(raw_uri(settings, "orders"), _raw_rows(2, AT))
    first = snapshot_platform(settings, broker=False)
    snapshot_platform(settings, broker=False)
    assert first["kafka_lag"] == 0 and first["freshness"] == 11  # every topic, one row each
    rows = DeltaTable(platform_uri(settings, "table_rows")).to_pyarrow_table()
    assert len(set(rows.column("snapshot_at").to_pylist())) == 2
    assert not DeltaTable.is_deltatable(platform_uri(settings, "kafka_lag"))
    record_quality_result(settings, "silver_orders", False, 10, 19, 2, at=AT)
    quality = DeltaTable(platform_uri(settings, "quality_results")).to_pyarrow_table().to_pylist()
    assert quality == [
        {
            "checked_at": AT,
            "table_name": "silver_orders",
            "success": False,
            "rows_checked": 10,
            "expectations_evaluated": 19,
            "expectations_failed": 2,
        }
    ]
