"""Exactly-once silver commits from Spark without the delta-spark jar (lake/spark_delta.py).

A Spark silver build is SIGKILLed (its whole process group: driver, JVM, Python workers)
after its tasks wrote their Parquet files and before the driver's Delta commit — once while
creating the table, once while adding a second micro-batch to it. Each time: no Delta version
references the files, the table (and its `silver<-raw_orders` marker) is as before, the re-run
commits the batch once; the final rows equal the DuckDB engine's on the same raw lake (counts
and keys, no key twice), and VACUUM deletes exactly the files the killed runs left.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from spark_kit import (
    append_raw,
    event,
    generated_messages,
    kill_between_write_and_commit,
    module_spark,
    raw_batch,
)

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from lake.silver import build_silver, marker
from lake.spark_delta import unreferenced_files
from lake.spark_silver import build_silver_spark
from lake.tables import silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration
spark = module_spark("test-spark-commit")


def _keys(settings: Settings) -> pa.Table:
    table = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table(
        columns=["order_id", "line", "order_date"]
    )
    return table.sort_by([("order_id", "ascending"), ("line", "ascending")])


def test_a_killed_spark_commit_leaves_nothing_and_the_rerun_writes_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    home, reference_home = tmp_path / "spark" / "home", tmp_path / "duckdb" / "home"
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    orders = generated_messages()["orders"]
    offsets: dict[int, int] = {}
    append_raw(settings, "orders", raw_batch(settings, "orders", orders[:600], offsets))
    # the second micro-batch: new orders and re-deliveries of the first
    second = raw_batch(settings, "orders", orders[600:] + orders[:100], offsets)
    shutil.copytree(home, reference_home)
    reference = Settings.from_env({"LAKEHOUSE_HOME": str(reference_home)})
    uri = silver_uri(settings, "silver_orders")

    # 1. killed while creating the table: no table, only files nobody references
    planned = kill_between_write_and_commit({"LAKEHOUSE_HOME": str(home)}, tmp_path)
    assert planned > 0
    assert not DeltaTable.is_deltatable(uri)
    left_first = unreferenced_files(settings, uri, None)
    assert len(left_first) == planned

    first = build_silver_spark(settings, spark, "silver_orders")
    expected_first = build_silver(reference, "silver_orders")
    assert first.rows_inserted == expected_first.rows_inserted > 0
    table = DeltaTable(uri)
    version, processed = table.version(), table.transaction_version(marker("orders"))

    # 2. killed while adding the second batch: the table and its marker unchanged
    append_raw(settings, "orders", second)
    append_raw(reference, "orders", second)
    planned = kill_between_write_and_commit({"LAKEHOUSE_HOME": str(home)}, tmp_path)
    table = DeltaTable(uri)
    assert (table.version(), table.transaction_version(marker("orders"))) == (version, processed)
    left = unreferenced_files(settings, uri, table)
    assert len(left) == len(left_first) + planned

    again = build_silver_spark(settings, spark, "silver_orders")
    expected = build_silver(reference, "silver_orders")
    assert (again.rows_inserted, again.duplicates_skipped) == (
        expected.rows_inserted,
        expected.duplicates_skipped,
    )
    assert again.duplicates_skipped > 0  # the re-deliveries met the anti-join
    assert DeltaTable(uri).version() == version + 1  # one commit for the whole batch

    # counts and keys: the DuckDB engine's, no key twice
    keys, reference_keys = _keys(settings), _keys(reference)
    assert keys.equals(reference_keys)
    pairs = pc.binary_join_element_wise(keys["order_id"], pc.cast(keys["line"], pa.string()), "#")
    assert pc.count_distinct(pairs).as_py() == keys.num_rows

    # a third run has nothing to do and commits nothing
    assert build_silver_spark(settings, spark, "silver_orders").rows_inserted == 0
    assert DeltaTable(uri).version() == version + 1

    # VACUUM deletes exactly what the killed runs left; the table reads the same
    table = DeltaTable(uri)
    removed = table.vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True
    )
    assert sorted(os.path.relpath(p, uri) if os.path.isabs(p) else p for p in removed) == left
    assert unreferenced_files(settings, uri, DeltaTable(uri)) == []
    assert _keys(settings).equals(reference_keys)


def test_the_commit_carries_partition_values_and_statistics(
    spark: SparkSession, tmp_path: Path
) -> None:
    """What the driver commits is what delta-rs itself would write: a partition value per file,
    row counts and min/max per column (the late watermark reads `max.ts`)."""
    home = tmp_path / "home"
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    days = ["2025-08-14T23:59:59.999Z", "2025-08-15T00:00:00Z", "2025-08-15T10:00:00+02:00"]
    messages = [
        event(
            f"o_{i}",
            {
                "order_id": f"o_{i}",
                "ts": ts,
                "customer_id": "c_1",
                "items": [{"sku": "A123", "qty": 1 + i, "price": 2.5}],
                "channel": "web",
                "store_id": None,
                "city": "Lille",
                "country": "FR",
            },
        )
        for i, ts in enumerate(days)
    ]
    append_raw(settings, "orders", raw_batch(settings, "orders", messages, {}))
    build_silver_spark(settings, spark, "silver_orders")
    table = DeltaTable(silver_uri(settings, "silver_orders"))
    actions = pa.table(table.get_add_actions(flatten=True)).sort_by("partition.order_date")
    assert [str(d) for d in actions["partition.order_date"].to_pylist()] == [
        "2025-08-14",
        "2025-08-15",
    ]
    assert actions["num_records"].to_pylist() == [1, 2]
    assert actions["min.qty"].to_pylist() == [1, 2] and actions["max.qty"].to_pylist() == [1, 3]
    assert [t.isoformat() for t in actions["max.ts"].to_pylist()] == [
        "2025-08-14T23:59:59.999000+00:00",
        "2025-08-15T08:00:00+00:00",
    ]
    log_folder = Path(silver_uri(settings, "silver_orders")) / "_delta_log"
    log = sorted(log_folder.glob("*.json"))[-1].read_text()
    commit = [json.loads(line) for line in log.splitlines()]
    assert any(a.get("txn", {}).get("appId") == marker("orders") for a in commit)


def test_a_backlog_is_committed_in_the_same_capped_batches_on_both_engines(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Three raw commits of 200 orders, LAKEHOUSE_MAX_BATCH_RECORDS=250: each engine commits
    one silver version per raw version, with the same markers, counts and keys."""
    home, reference_home = tmp_path / "spark" / "home", tmp_path / "duckdb" / "home"
    capped = {"LAKEHOUSE_MAX_BATCH_RECORDS": "250"}
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home), **capped})
    orders = generated_messages()["orders"][:600]
    offsets: dict[int, int] = {}
    for start in range(0, 600, 200):
        append_raw(
            settings, "orders", raw_batch(settings, "orders", orders[start : start + 200], offsets)
        )
    shutil.copytree(home, reference_home)
    reference = Settings.from_env({"LAKEHOUSE_HOME": str(reference_home), **capped})

    result = build_silver_spark(settings, spark, "silver_orders")
    expected = build_silver(reference, "silver_orders")
    assert (result.raw_rows_read, result.rows_inserted) == (
        expected.raw_rows_read,
        expected.rows_inserted,
    )
    assert result.extra["commits"] == expected.extra["commits"] == 3

    def markers(s: Settings) -> list[int | None]:
        uri = silver_uri(s, "silver_orders")
        return [DeltaTable(uri, version=v).transaction_version(marker("orders")) for v in range(3)]

    assert markers(settings) == markers(reference) == [0, 1, 2]
    assert _keys(settings).equals(_keys(reference))
