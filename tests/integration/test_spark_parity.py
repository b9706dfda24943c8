"""The PySpark raw → silver_orders transform (lake/spark_silver.py) gives exactly the rows of the
DuckDB one (lake.silver.transform): same order lines, same dedupe winner, same UTC timestamps,
same HMAC hex, same rounding. And daily_sales agrees.

A few thousand generated raw rows go through a real raw Delta table: DuckDB reads it the way
`build_silver` does (pyarrow dataset), Spark through the table's Parquet files.
"""

from __future__ import annotations

import hmac
import json
import random
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from spark_kit import module_spark

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from lake.silver import SPECS, transform
from lake.spark_silver import (
    DAILY_SALES_SCHEMA,
    read_delta,
    spark_daily_sales,
    spark_silver_orders,
    to_arrow,
)
from lake.tables import RAW_SCHEMA, SILVER_ORDERS_SCHEMA

pytestmark = pytest.mark.integration

SHORT_KEY = "lakehouse-test-pii-key"
LONG_KEY = "k" * 100  # > 64 bytes: HMAC hashes the key first
INGESTED = datetime(2025, 9, 1, 6, 0, tzinfo=UTC)
CITIES = [("Paris", "FR"), ("Lyon", "FR"), ("Lille", "FR"), ("Genève", "CH"), ("Nantes", "FR")]
SKUS = {f"S{i:02d}": round(1 + i * 3.37, 2) for i in range(20)}


spark = module_spark("test-spark-parity")


def _ts(rng: random.Random, i: int) -> str:
    moment = datetime(2025, 8, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 20 * 86_400))
    style = i % 4
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:  # fractional seconds
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rng.randrange(1000):03d}Z"
    if style == 2:  # an offset that moves the UTC date: 2025-08-02T01:30+02:00 is 08-01 UTC
        return (moment + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    return (moment - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.%f-05:00")


def _orders(n: int) -> list[dict[str, object]]:
    rng = random.Random(42)
    orders: list[dict[str, object]] = []
    for i in range(n):
        city, country = rng.choice(CITIES)
        channel = rng.choice(["web", "app", "store"])
        skus = rng.sample(sorted(SKUS), rng.randint(1, 5))
        orders.append(
            {
                "order_id": f"o_{i:06d}",
                "ts": _ts(rng, i),
                "customer_id": f"c_{rng.randrange(500):04d}" + ("é" if i % 50 == 0 else ""),
                "items": [{"sku": s, "qty": rng.randint(1, 9), "price": SKUS[s]} for s in skus],
                "channel": channel,
                "store_id": f"s_{city.lower()}" if channel == "store" else None,
                "city": city,
                "country": country,
            }
        )
    # rounding edge cases: DuckDB rounds 1 x 1.005 to 1.0 (x100 = 100.4999...), Spark's own
    # round(x, 2) gives 1.01; 3 x 0.335 = 1.0050000000000001 -> 1.01; 7 x 2.675 -> 18.72
    orders[0]["items"] = [
        {"sku": "S01", "qty": 1, "price": 1.005},
        {"sku": "S02", "qty": 3, "price": 0.335},
        {"sku": "S03", "qty": 7, "price": 2.675},
        {"sku": "S04", "qty": 2, "price": 49},  # integer JSON price -> 49.0
        {"sku": "S05", "qty": 2.0, "price": 10.25},  # 2.0 is a valid JSON Schema integer
    ]
    orders[1]["ts"] = "2025-08-31T23:59:59.999999Z"
    return orders


def _raw_rows(n_orders: int) -> pa.Table:
    """Raw rows as ingestion writes them, with re-deliveries: later offsets in the same
    partition, other partitions and a later epoch (silver keeps the first occurrence)."""
    rng = random.Random(7)
    orders = _orders(n_orders)
    rows: list[tuple[int, int, dict[str, object]]] = []  # (epoch, partition, order)
    rows.extend((0, i % 3, o) for i, o in enumerate(orders))
    rows.extend((0, rng.randrange(3), o) for o in rng.sample(orders, n_orders // 10))
    rows.extend((1, rng.randrange(3), o) for o in rng.sample(orders, n_orders // 20))
    # a re-delivered order whose later copy differs: the first (lowest offset) must win
    changed = dict(orders[2], city="Changed", items=[{"sku": "S09", "qty": 1, "price": 1.0}])
    rows.append((0, 2, changed))
    next_offset: dict[tuple[int, int], int] = {}
    cols: dict[str, list[object]] = {name: [] for name in RAW_SCHEMA.names}
    for epoch, partition, order in rows:
        offset = next_offset.get((epoch, partition), 0)
        next_offset[(epoch, partition)] = offset + 1
        cols["epoch"].append(epoch)
        cols["topic"].append("orders")
        cols["partition"].append(partition)
        cols["offset"].append(offset)
        cols["key"].append(order["order_id"])
        cols["value"].append(json.dumps(order, ensure_ascii=False))
        cols["kafka_timestamp"].append(INGESTED - timedelta(minutes=1))
        cols["headers"].append([{"key": "source", "value": b"test"}])
        cols["ingested_at"].append(INGESTED + timedelta(seconds=epoch))
        cols["batch_id"].append(f"b{epoch}")
        cols["ingest_date"].append(date(2025, 9, 1))
        cols["schema_version"].append(1)
    return pa.table(cols, schema=RAW_SCHEMA)


@pytest.fixture(scope="module")
def raw_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("lake") / "raw" / "orders")
    table = _raw_rows(3000)
    half = table.num_rows // 2  # two commits -> two files, like two micro-batches
    for part in (table.slice(0, half), table.slice(half)):
        write_deltalake(uri, part, mode="append", partition_by=["ingest_date"])
    return uri


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def _duckdb_silver(uri: str, key: str) -> pa.Table:
    raw = DeltaTable(uri).to_pyarrow_dataset().to_table()
    return _sorted(transform(SPECS["silver_orders"], raw, key), ["order_id", "line"])


def _spark_silver(spark: SparkSession, uri: str, key: str) -> pa.Table:
    df = spark_silver_orders(spark, read_delta(spark, uri), key)
    return _sorted(to_arrow(df, SILVER_ORDERS_SCHEMA), ["order_id", "line"])


def _assert_same(expected: pa.Table, actual: pa.Table) -> None:
    assert actual.schema == expected.schema
    assert actual.num_rows == expected.num_rows
    for name in expected.column_names:
        left, right = expected[name].combine_chunks(), actual[name].combine_chunks()
        if not left.equals(right):
            diff = pc.invert(pc.fill_null(pc.equal(left, right), False))
            first = pc.index(diff, True).as_py()
            pytest.fail(
                f"column {name} differs at row {first}: duckdb={left[first]} spark={right[first]}"
                f" (order {expected['order_id'][first]}, line {expected['line'][first]})"
            )
    assert actual.equals(expected)


@pytest.mark.parametrize("key", [SHORT_KEY, LONG_KEY], ids=["short-key", "long-key"])
def test_spark_silver_orders_matches_duckdb(spark: SparkSession, raw_uri: str, key: str) -> None:
    expected = _duckdb_silver(raw_uri, key)
    actual = _spark_silver(spark, raw_uri, key)
    _assert_same(expected, actual)

    # sanity on what was compared: dedupe, multi-item orders, rounding, UTC, real HMAC
    assert (
        expected.num_rows
        == pc.count_distinct(
            pc.binary_join_element_wise(
                expected["order_id"], pc.cast(expected["line"], pa.string()), "#"
            )
        ).as_py()
    )
    assert expected.num_rows < DeltaTable(raw_uri).to_pyarrow_dataset().count_rows() * 5
    first = expected.filter(pc.equal(expected["order_id"], "o_000000")).to_pylist()
    assert [r["line_amount"] for r in first] == [1.0, 1.01, 18.72, 98.0, 20.5]
    changed = expected.filter(pc.equal(expected["order_id"], "o_000002")).to_pylist()
    assert all(r["city"] != "Changed" for r in changed)
    late = expected.filter(pc.equal(expected["order_id"], "o_000001")).to_pylist()
    assert late[0]["ts"] == datetime(2025, 8, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert late[0]["order_date"] == date(2025, 8, 31)
    row = expected.slice(0, 1).to_pylist()[0]
    raw_customer = _customer_of(raw_uri, row["order_id"])
    assert (
        row["customer_id_hash"] == hmac.new(key.encode(), raw_customer.encode(), sha256).hexdigest()
    )


def _customer_of(uri: str, order_id: str) -> str:
    raw = DeltaTable(uri).to_pyarrow_dataset().to_table(columns=["key", "value"])
    value = raw.filter(pc.equal(raw["key"], order_id))["value"][0].as_py()
    return str(json.loads(value)["customer_id"])


def test_spark_daily_sales_matches_duckdb(spark: SparkSession, raw_uri: str) -> None:
    silver = _duckdb_silver(raw_uri, SHORT_KEY)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("silver", silver)
    expected = con.sql(
        """SELECT ts::DATE AS d, city, sku, SUM(qty)::BIGINT AS units, SUM(qty * price) AS revenue
           FROM silver GROUP BY ALL"""
    ).to_arrow_table()
    con.close()
    expected = _sorted(expected.cast(DAILY_SALES_SCHEMA), ["d", "city", "sku"])

    silver_df = spark_silver_orders(spark, read_delta(spark, raw_uri), SHORT_KEY)
    actual = _sorted(
        to_arrow(spark_daily_sales(silver_df), DAILY_SALES_SCHEMA), ["d", "city", "sku"]
    )
    assert actual.num_rows == expected.num_rows
    for name in ("d", "city", "sku", "units"):
        assert actual[name].equals(expected[name]), name
    # float sums depend on the order of addition: equal to the cent
    diff = pc.max(pc.abs(pc.subtract(actual["revenue"], expected["revenue"]))).as_py()
    assert diff < 1e-6
