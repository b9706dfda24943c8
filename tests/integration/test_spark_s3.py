"""LAKEHOUSE_ENGINE=spark on an s3:// lake, with no Hadoop S3 connector on the classpath.

moto's S3 server (a real HTTP endpoint) holds the lake, LAKEHOUSE_S3_SSE=AES256. One raw
lake (every topic, generators' events, identifiers encrypted) is written there and copied to
a second prefix; silver is built from it on Spark under one prefix and on DuckDB under the
other, in two micro-batches (the second re-delivers part of the first: the Spark anti-join
reads the stored keys back from S3). Then:

- every silver table is identical on both engines, row for row, and so are the counts;
- every object the Spark tasks put carries the server-side encryption header;
- a Spark build SIGKILLed between its tasks' puts and the driver's commit leaves objects no
  Delta version references, `unreferenced_files` lists exactly them, the re-run commits the
  batch once with the DuckDB engine's keys and counts, and VACUUM deletes exactly them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from spark_kit import (
    append_raw,
    assert_same_rows,
    generated_messages,
    kill_between_write_and_commit,
    module_spark,
    raw_batch,
)
from test_s3_lake import start_moto

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from lake.silver import SPECS, SilverResult, build_inventory_current, build_silver, marker
from lake.spark_delta import unreferenced_files
from lake.spark_silver import build_inventory_current_spark, build_silver_spark
from lake.tables import SILVER_TABLES, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

BUCKET = "lake-bucket"
SILVER = [*SPECS, "silver_inventory_current"]
COUNTED = ("rows_inserted", "rows_in_batch", "duplicates_skipped", "late_events", "raw_rows_read")

spark = module_spark("test-spark-s3")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """moto on a free port for the module; LAKEHOUSE_* of an isolated home, SSE-S3 on.
    Yields (endpoint, home)."""
    home = tmp_path_factory.mktemp("s3") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
            patch.delenv(name)
        patch.setenv("LAKEHOUSE_HOME", str(home))
        patch.setenv("LAKEHOUSE_S3_SSE", "AES256")
        with start_moto(patch) as endpoint:
            yield endpoint, home


def _client(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _lake(prefix: str) -> Settings:
    """The module's settings with the lake under s3://lake-bucket/<prefix>."""
    return Settings.from_env({**os.environ, "LAKEHOUSE_LAKE_ROOT": f"s3://{BUCKET}/{prefix}"})


def _keys_under(endpoint: str, prefix: str) -> list[str]:
    pages = (
        _client(endpoint)
        .get_paginator("list_objects_v2")
        .paginate(  # type: ignore[attr-defined]
            Bucket=BUCKET, Prefix=prefix
        )
    )
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _copy_prefix(endpoint: str, source: str, target: str) -> None:
    client = _client(endpoint)
    for key in _keys_under(endpoint, source):
        copied = target + key[len(source) :]
        client.copy_object(  # type: ignore[attr-defined]
            Bucket=BUCKET,
            Key=copied,
            CopySource={"Bucket": BUCKET, "Key": key},
            ServerSideEncryption="AES256",
        )


def _table(settings: Settings, name: str) -> pa.Table:
    uri = silver_uri(settings, name)
    return DeltaTable(uri, storage_options=settings.storage_options).to_pyarrow_table()


def _counts(result: SilverResult) -> dict[str, object]:
    return {k: getattr(result, k) for k in COUNTED}


def _build_all(settings: Settings, spark: SparkSession | None) -> dict[str, dict[str, object]]:
    """Every silver table, on Spark with a session, else on DuckDB; each one's counts."""
    counts = {}
    for name in SPECS:
        result = (
            build_silver_spark(settings, spark, name) if spark else build_silver(settings, name)
        )
        counts[name] = _counts(result)
    current = (
        build_inventory_current_spark(settings, spark)
        if spark
        else build_inventory_current(settings)
    )
    counts["silver_inventory_current"] = _counts(current)
    return counts


@pytest.fixture(scope="module")
def lakes(
    s3: tuple[str, Path], spark: SparkSession
) -> tuple[dict[str, Settings], dict[str, list[dict[str, dict[str, object]]]]]:
    """engine → its lake's settings, and engine → the counts of its two builds."""
    endpoint, _ = s3
    lakes = {"spark": _lake("spark"), "duckdb": _lake("duckdb")}
    first = generated_messages(days=1.0)
    offsets: dict[str, dict[int, int]] = {topic: {} for topic in first}
    for topic, messages in first.items():
        append_raw(
            lakes["spark"], topic, raw_batch(lakes["spark"], topic, messages, offsets[topic])
        )
    second = {
        topic: raw_batch(lakes["spark"], topic, messages[:40], offsets[topic])
        for topic, messages in first.items()
    }
    _copy_prefix(endpoint, "spark/raw/", "duckdb/raw/")
    counts: dict[str, list[dict[str, dict[str, object]]]] = {}
    for engine, settings in lakes.items():
        session = spark if engine == "spark" else None
        counts[engine] = [_build_all(settings, session)]
        for topic, rows in second.items():
            append_raw(settings, topic, rows)
        counts[engine].append(_build_all(settings, session))
    return lakes, counts


@pytest.mark.parametrize("name", SILVER)
def test_every_silver_table_on_s3_is_the_duckdb_engines(
    lakes: tuple[dict[str, Settings], dict[str, list[dict[str, dict[str, object]]]]], name: str
) -> None:
    settings = lakes[0]
    expected, actual = _table(settings["duckdb"], name), _table(settings["spark"], name)
    assert expected.num_rows > 0, f"{name} is empty: the comparison would prove nothing"
    assert expected.schema.names == SILVER_TABLES[name][1].names
    assert_same_rows(expected, actual, name)


def test_counts_on_s3_are_the_duckdb_engines(
    lakes: tuple[dict[str, Settings], dict[str, list[dict[str, dict[str, object]]]]],
) -> None:
    counts = lakes[1]
    assert counts["spark"] == counts["duckdb"]
    second = counts["spark"][1]
    # the 40 re-delivered sessions met the stored keys, read back from S3 by the anti-join
    sessions = second["silver_sessions"]
    assert (sessions["raw_rows_read"], sessions["duplicates_skipped"]) == (40, 40)
    assert sessions["rows_inserted"] == 0


def test_every_object_the_spark_tasks_put_is_encrypted(
    s3: tuple[str, Path],
    lakes: tuple[dict[str, Settings], dict[str, list[dict[str, dict[str, object]]]]],
) -> None:
    endpoint, _ = s3
    client = _client(endpoint)
    data = [k for k in _keys_under(endpoint, "spark/silver/") if "/_delta_log/" not in k]
    tables = {k.split("/")[2] for k in data}
    assert tables == {SILVER_TABLES[n][0] for n in SILVER}
    encryption = {
        k: client.head_object(Bucket=BUCKET, Key=k).get("ServerSideEncryption")  # type: ignore[attr-defined]
        for k in data
    }
    assert set(encryption.values()) == {"AES256"}, encryption
    # and these are the files the tables' versions added, written by the tasks (not by
    # delta-rs); only the overwritten files of silver_inventory_current are unreferenced now
    settings = lakes[0]["spark"]
    added: set[str] = set()
    for name in SILVER:
        uri = silver_uri(settings, name)
        table = DeltaTable(uri, storage_options=settings.storage_options)
        versions = [
            set(_paths(DeltaTable(uri, version=v, storage_options=settings.storage_options)))
            for v in range(table.version() + 1)
        ]
        ever = set().union(*versions)
        assert unreferenced_files(settings, uri, table) == sorted(ever - versions[-1]), name
        assert bool(ever - versions[-1]) == (name == "silver_inventory_current"), name
        added |= {f"{uri.removeprefix(f's3://{BUCKET}/')}/{p}" for p in ever}
    assert added == set(data)


def _paths(table: DeltaTable) -> list[str]:
    return [str(p) for p in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()]


def _order_keys(settings: Settings) -> pa.Table:
    table = DeltaTable(
        silver_uri(settings, "silver_orders"), storage_options=settings.storage_options
    )
    keys = table.to_pyarrow_table(columns=["order_id", "line", "order_date"])
    return keys.sort_by([("order_id", "ascending"), ("line", "ascending")])


def test_a_killed_spark_commit_on_s3_leaves_only_unreferenced_objects(
    s3: tuple[str, Path], spark: SparkSession, tmp_path: Path
) -> None:
    endpoint, home = s3
    settings, reference = _lake("crash"), _lake("crash-duckdb")
    orders = generated_messages(days=1.0)["orders"]
    offsets: dict[int, int] = {}
    append_raw(settings, "orders", raw_batch(settings, "orders", orders[:300], offsets))
    second = raw_batch(settings, "orders", orders[300:] + orders[:50], offsets)
    _copy_prefix(endpoint, "crash/raw/", "crash-duckdb/raw/")
    uri = silver_uri(settings, "silver_orders")
    options = settings.storage_options

    first = build_silver_spark(settings, spark, "silver_orders")
    assert first.rows_inserted == build_silver(reference, "silver_orders").rows_inserted > 0
    table = DeltaTable(uri, storage_options=options)
    version, processed = table.version(), table.transaction_version(marker("orders"))
    assert unreferenced_files(settings, uri, table) == []

    append_raw(settings, "orders", second)
    append_raw(reference, "orders", second)
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_LAKE_ROOT": settings.lake_root,
        "LAKEHOUSE_S3_SSE": "AES256",
    }
    planned = kill_between_write_and_commit(env, tmp_path)
    assert planned > 0
    table = DeltaTable(uri, storage_options=options)
    assert (table.version(), table.transaction_version(marker("orders"))) == (version, processed)
    left = unreferenced_files(settings, uri, table)
    assert len(left) == planned
    assert all(p.startswith("order_date=") and p.endswith(".snappy.parquet") for p in left)

    again = build_silver_spark(settings, spark, "silver_orders")
    expected = build_silver(reference, "silver_orders")
    assert _counts(again) == _counts(expected)
    assert again.duplicates_skipped > 0  # the re-deliveries met the anti-join
    assert DeltaTable(uri, storage_options=options).version() == version + 1
    assert _order_keys(settings).equals(_order_keys(reference))
    assert unreferenced_files(settings, uri, DeltaTable(uri, storage_options=options)) == left

    removed = DeltaTable(uri, storage_options=options).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True
    )
    assert sorted(p.removeprefix(uri + "/") for p in removed) == left
    assert unreferenced_files(settings, uri, DeltaTable(uri, storage_options=options)) == []
    assert _order_keys(settings).equals(_order_keys(reference))
