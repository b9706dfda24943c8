"""Delta statistics of the files Spark tasks write (lake/spark_delta.py) are delta-rs's own."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

pytest.importorskip("pyspark")

from lake.spark_delta import file_stats, table_root
from lakehouse.errors import ConfigError


def test_file_stats_match_what_delta_rs_writes(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": pa.array([1, 2, None], pa.int32()),
            "s": ["x", "yé", None],
            "long": ["h" * 64, "g" * 64, "f"],  # pseudonyms are 64 characters, kept whole
            "ts": pa.array(
                [datetime(2025, 1, 1, 1, 2, 3, 456789, tzinfo=UTC)] * 2
                + [datetime(2025, 1, 2, tzinfo=UTC)],
                pa.timestamp("us", tz="UTC"),
            ),
            "f": [1.5, None, float("nan")],
            "b": [True, False, None],
            "d": [date(2025, 1, 1), date(2025, 1, 3), None],
        }
    )
    write_deltalake(tmp_path, table)
    log = (tmp_path / "_delta_log" / "00000000000000000000.json").read_text().splitlines()
    add = next(json.loads(line)["add"] for line in log if '"add"' in line)
    theirs = json.loads(add["stats"])
    ours = json.loads(file_stats(table))
    assert ours["numRecords"] == theirs["numRecords"] == 3
    assert ours["nullCount"] == theirs["nullCount"]
    for bound in ("minValues", "maxValues"):
        assert ours[bound] == theirs[bound], bound


def test_the_spark_engine_writes_a_folder_or_an_s3_prefix(tmp_path: Path) -> None:
    assert table_root("s3://bucket/lake/silver/orders/") == "s3://bucket/lake/silver/orders"
    assert table_root(str(tmp_path / "silver" / "orders")) == str(tmp_path / "silver" / "orders")


def test_the_spark_engine_names_the_fix_for_another_object_store() -> None:
    with pytest.raises(ConfigError) as info:
        table_root("gs://bucket/lake/silver/orders")
    assert "LAKEHOUSE_LAKE_ROOT" in str(info.value) and "\n" not in str(info.value)
