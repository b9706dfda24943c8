"""Quality suites (lake/quality.py): GX validation of good and broken frames, report metadata,
loading silver (recent partitions) and gold (read-only DuckDB), and the cost on 100k rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lake import quality
from lake.quality import (
    SUITES,
    ExpectationSpec,
    NoDataYet,
    QualityError,
    QualityReport,
    load_for_check,
    run_suite,
)
from lake.tables import SILVER_ORDERS_SCHEMA, silver_uri
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def orders_frame(n: int = 6) -> pd.DataFrame:
    """n valid silver_orders rows (two lines per order), with silver's column types."""
    ts = [T0 + timedelta(minutes=i) for i in range(n)]
    frame = pd.DataFrame(
        {
            "order_id": [f"o_{i // 2}" for i in range(n)],
            "line": np.array([1 + i % 2 for i in range(n)], dtype="int32"),
            "ts": pd.to_datetime(ts, utc=True),
            "order_date": [t.date() for t in ts],
            "customer_id_hash": ["ab" * 32] * n,
            "channel": [("web", "app", "store")[i % 3] for i in range(n)],
            "store_id": [None if i % 3 != 2 else "s_lille" for i in range(n)],
            "city": ["Lille"] * n,
            "country": ["FR"] * n,
            "sku": [f"A{i % 4}" for i in range(n)],
            "qty": np.array([1 + i % 5 for i in range(n)], dtype="int32"),
            "price": [19.9] * n,
        }
    )
    frame["line_amount"] = (frame["qty"] * frame["price"]).round(2)
    for column, value in (("source_epoch", 0), ("source_partition", 0)):
        frame[column] = np.int32(value)
    frame["source_offset"] = np.arange(n, dtype="int64")
    frame["ingested_at"] = pd.Timestamp(T0)
    return frame


def failed_pairs(report: QualityReport) -> set[tuple[str, tuple[str, ...]]]:
    return {(f.expectation, f.columns) for f in report.failed}


def test_a_good_frame_passes() -> None:
    report = run_suite("silver_orders", orders_frame())
    assert report.success, report.summary()
    assert report.failed == []
    assert report.evaluated == len(SUITES["silver_orders"])
    assert report.rows == 6


def _null_key(frame: pd.DataFrame) -> None:
    frame.loc[1, "order_id"] = None


def _bad_channel(frame: pd.DataFrame) -> None:
    frame.loc[2, "channel"] = "fax"


def _duplicate_key(frame: pd.DataFrame) -> None:
    frame.loc[3, "line"] = 1  # o_1 now has two lines numbered 1


def _negative_qty(frame: pd.DataFrame) -> None:
    frame.loc[4, "qty"] = -3
    frame.loc[4, "line_amount"] = 0.0  # keep the other rules satisfied


@pytest.mark.parametrize(
    ("break_it", "expected", "observed"),
    [
        (_null_key, ("ExpectColumnValuesToNotBeNull", ("order_id",)), None),
        (_bad_channel, ("ExpectColumnValuesToBeInSet", ("channel",)), "fax"),
        (_duplicate_key, ("ExpectCompoundColumnsToBeUnique", ("order_id", "line")), None),
        (_negative_qty, ("ExpectColumnValuesToBeBetween", ("qty",)), -3),
    ],
    ids=["null_key", "bad_channel", "duplicate_key", "negative_qty"],
)
def test_a_broken_frame_fails_on_the_right_expectation(
    break_it: Any, expected: tuple[str, tuple[str, ...]], observed: object
) -> None:
    frame = orders_frame()
    break_it(frame)
    report = run_suite("silver_orders", frame)
    assert not report.success
    assert failed_pairs(report) == {expected}
    failure = report.failed[0]
    assert failure.error is None
    assert failure.unexpected_count and failure.unexpected_count >= 1
    if observed is not None:
        assert observed in failure.partial_unexpected


def test_metadata_is_plain_json() -> None:
    frame = orders_frame()
    _bad_channel(frame)
    _null_key(frame)
    metadata = run_suite("silver_orders", frame).to_metadata()
    assert json.loads(json.dumps(metadata)) == metadata  # only JSON types, no NaN
    assert metadata["success"] is False
    assert metadata["expectations_failed"] == 2
    by_name = {f["expectation"]: f for f in metadata["failed"]}
    assert by_name["ExpectColumnValuesToBeInSet"]["partial_unexpected"] == ["fax"]
    assert by_name["ExpectColumnValuesToBeInSet"]["columns"] == ["channel"]
    assert by_name["ExpectColumnValuesToNotBeNull"]["unexpected_count"] == 1


def test_a_missing_column_is_reported_not_raised() -> None:
    report = run_suite("silver_orders", orders_frame().drop(columns=["country"]))
    assert not report.success
    assert failed_pairs(report) == {
        ("ExpectColumnValuesToNotBeNull", ("country",)),
        ("ExpectColumnValueLengthsToEqual", ("country",)),
    }
    assert all("country" in (f.error or "") for f in report.failed)


def test_nullable_measures_pass_when_null() -> None:
    """stock_cover_days is null for 'no_recent_sales'; conversion_rate null without sessions."""
    cover = pd.DataFrame(
        {
            "sku": ["A1", "A1", "B2"],
            "store_id": ["s1", "s2", "s1"],
            "on_hand": [0, 5, 8],
            "avg_daily_units_7d": [1.0, 0.0, 2.0],
            "stock_cover_days": [0.0, None, 4.0],
            "cover_status": ["out_of_stock", "no_recent_sales", "ok"],
        }
    )
    assert run_suite("stock_cover_days", cover).success
    cover.loc[2, "stock_cover_days"] = -1.0
    cover.loc[1, "cover_status"] = "plenty"
    assert failed_pairs(run_suite("stock_cover_days", cover)) == {
        ("ExpectColumnValuesToBeBetween", ("stock_cover_days",)),
        ("ExpectColumnValuesToBeInSet", ("cover_status",)),
    }


def test_conversion_rate_range_and_pair_rule() -> None:
    frame = pd.DataFrame(
        {
            "d": [date(2025, 3, 10)] * 3,
            "channel": ["web", "app", "store"],
            "sessions": [10, 0, 4],
            "converted_sessions": [3, 0, 5],
            "orders": [3, 2, 5],
            "conversion_rate": [0.3, None, 1.25],
        }
    )
    assert failed_pairs(run_suite("conversion_by_channel", frame)) == {
        ("ExpectColumnValuesToBeBetween", ("conversion_rate",)),
        ("ExpectColumnPairValuesAToBeGreaterThanB", ("sessions", "converted_sessions")),
    }


def test_every_suite_is_valid_for_gx() -> None:
    """Names and kwargs of every suite are accepted by GX (empty frame: nothing to violate)."""
    for table, specs in SUITES.items():
        columns = sorted({c for spec in specs for c in spec.columns})
        report = run_suite(table, pd.DataFrame({c: pd.Series(dtype="object") for c in columns}))
        assert report.success, report.summary()
        assert report.evaluated == len(specs)


def test_an_edited_suite_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = orders_frame()
    assert run_suite("silver_orders", frame).success
    stricter = [*SUITES["silver_orders"], quality.between("qty", 1, 2)]
    monkeypatch.setitem(SUITES, "silver_orders", stricter)
    assert failed_pairs(run_suite("silver_orders", frame)) == {
        ("ExpectColumnValuesToBeBetween", ("qty",))
    }


def test_unknown_table_and_expectation_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(QualityError, match="no quality suite"):
        run_suite("silver_nope", orders_frame())
    monkeypatch.setitem(SUITES, "typo", [ExpectationSpec("ExpectColumnToBeNice", {"column": "x"})])
    with pytest.raises(QualityError, match="ExpectColumnToBeNice"):
        run_suite("typo", pd.DataFrame({"x": [1]}))


def test_suites_are_readable_without_gx() -> None:
    code = (
        "import sys; from lake.quality import SUITES; "
        "assert 'great_expectations' not in sys.modules; print(len(SUITES))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(SUITES))


def test_load_silver_reads_the_last_days(settings: Settings) -> None:
    days = 10
    frames = []
    for day in range(days):
        frame = orders_frame(4)
        frame["order_id"] = [f"d{day}_{o}" for o in frame["order_id"]]
        frame["ts"] = frame["ts"] - pd.Timedelta(days=days - 1 - day)
        frame["order_date"] = [t.date() for t in frame["ts"]]
        frames.append(frame)
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    write_deltalake(
        silver_uri(settings, "silver_orders"),
        table.select(SILVER_ORDERS_SCHEMA.names).cast(SILVER_ORDERS_SCHEMA),
        partition_by=["order_date"],
    )

    recent = load_for_check(settings, "silver_orders", days=3)
    assert sorted(set(recent["order_date"])) == [date(2025, 3, d) for d in (8, 9, 10)]
    assert len(recent) == 12
    assert len(load_for_check(settings, "silver_orders", days=None)) == 40
    assert len(load_for_check(settings, "silver_orders")) == 4 * quality.DEFAULT_CHECK_DAYS
    report = run_suite("silver_orders", recent)  # real Delta dtypes (int32, date, tz ts)
    assert report.success, report.summary()


def test_load_silver_missing_table_is_no_data_yet(settings: Settings) -> None:
    with pytest.raises(NoDataYet, match="silver_sessions: no data yet"):
        load_for_check(settings, "silver_sessions")


def test_load_gold_reads_read_only(settings: Settings) -> None:
    with pytest.raises(LakehouseError, match="does not exist yet"):
        load_for_check(settings, "daily_sales")
    path = settings.gold_db_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE daily_sales AS SELECT * FROM (VALUES "
            "(DATE '2025-03-10', 'Lille', 'A1', 3::BIGINT, 59.7::DOUBLE), "
            "(DATE '2025-03-10', 'Paris', 'A1', 1::BIGINT, 19.9::DOUBLE)) "
            "AS t(d, city, sku, units, revenue)"
        )
    # another process holding the file read-only must not block the check
    with duckdb.connect(str(path), read_only=True):
        frame = load_for_check(settings, "daily_sales")
    assert list(frame.columns) == ["d", "city", "sku", "units", "revenue"]
    assert run_suite("daily_sales", frame).success
    with pytest.raises(QualityError, match="no table 'top_sku_7d'"):
        load_for_check(settings, "top_sku_7d")


def test_run_suite_on_100k_rows_is_fast() -> None:
    n = 100_000
    rng = np.random.default_rng(7)
    frame = pd.concat([orders_frame(1000)] * (n // 1000), ignore_index=True)
    frame["order_id"] = [f"o_{i // 2}" for i in range(n)]
    frame["line"] = np.tile(np.array([1, 2], dtype="int32"), n // 2)
    frame["qty"] = rng.integers(1, 20, n).astype("int32")
    run_suite("silver_orders", frame.head(10))  # GX import + suite build out of the timing
    started = time.perf_counter()
    report = run_suite("silver_orders", frame)
    elapsed = time.perf_counter() - started
    print(f"\nrun_suite(silver_orders, {n} rows): {elapsed:.2f}s")
    assert report.success, report.summary()
    assert report.rows == n
    assert elapsed < 20, f"{elapsed:.1f}s: did a column fall back to GX's per-row path?"
