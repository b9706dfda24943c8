"""raw → silver_orders and silver → daily_sales in PySpark: the same logic as lake/silver.py.

The default engine is DuckDB (lake/silver.py); this module is the Spark path for data that
outgrows one machine, and the reference the benchmarks and the parity test compare against.
Every column is computed as DuckDB computes it, so the two engines give identical rows:

- `customer_id_hash` is HMAC-SHA256 spelled with SQL functions exactly like `hmac_sql`
  (sha2 / unhex / concat over binary, key padded to 64 bytes, ipad 0x36, opad 0x5c);
- `line_amount` is `round(qty * price * 100) / 100`, which is how DuckDB rounds a DOUBLE to
  2 places. Spark's own `round(x, 2)` goes through `BigDecimal.valueOf` and differs on values
  such as 1.005 (DuckDB 1.0, Spark 1.01).

No Spark jars can be downloaded here (no delta-spark, no spark-sql-kafka): Spark reads a Delta
table's current Parquet files (`DeltaTable.file_uris()`, see `read_delta`) and results are
written through `deltalake`/pyarrow or as plain Parquet. No Dagster import.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lake.tables import SILVER_ORDERS_SCHEMA
from lakehouse.config import Settings

# qty is read as DOUBLE: the contract accepts 2.0 as an integer (JSON Schema), which DuckDB's
# from_json reads as BIGINT 2 but Spark's as NULL; every valid qty (1..10000) is exact in a DOUBLE
# and DuckDB's BIGINT * DOUBLE is computed in DOUBLE anyway.
ORDERS_JSON_SCHEMA = (
    "order_id STRING, ts STRING, customer_id STRING, "
    "items ARRAY<STRUCT<sku: STRING, qty: DOUBLE, price: DOUBLE>>, "
    "channel STRING, store_id STRING, city STRING, country STRING"
)


def local_spark(
    app_name: str,
    cores: int = 2,
    driver_memory: str = "2g",
    extra: Mapping[str, str] | None = None,
) -> SparkSession:
    """A local[cores] session tuned for a small machine: few shuffle partitions, UTC, no UI,
    Arrow transfers, loopback only, warehouse folder under the system temp folder."""
    scratch = tempfile.gettempdir()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, no hostname lookup
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(2 * cores))
        .config("spark.default.parallelism", str(cores))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # plain int64 microseconds in Parquet (Spark's default is INT96, which pyarrow and
        # deltalake read back as naive nanoseconds)
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.warehouse.dir", f"{scratch}/spark-warehouse")
    )
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_delta(
    spark: SparkSession, uri: str, storage_options: Mapping[str, str] | None = None
) -> DataFrame:
    """The current snapshot of a Delta table as a Spark DataFrame, from its Parquet files.

    Partition columns live in the folder names, not in the files: they are not returned
    (the raw → silver transform does not need `ingest_date`). deltalake writes no deletion
    vectors, so the file list is the whole snapshot.
    """
    table = DeltaTable(uri, storage_options=dict(storage_options) if storage_options else None)
    files = table.file_uris()
    if not files:
        raise ValueError(f"Delta table {uri} has no data files")
    return spark.read.parquet(*files)


def _hex_literal(data: bytes) -> Column:
    return F.unhex(F.lit(data.hex()))


def hmac_sha256_hex(column: Column, key: str) -> Column:
    """HMAC-SHA256(key, column) as lowercase hex, in Spark SQL functions (identical to
    lake.silver.hmac_sql and to Python's `hmac`)."""
    raw_key = key.encode()
    if len(raw_key) > 64:
        raw_key = hashlib.sha256(raw_key).digest()
    padded = raw_key.ljust(64, b"\0")
    ipad = _hex_literal(bytes(b ^ 0x36 for b in padded))
    opad = _hex_literal(bytes(b ^ 0x5C for b in padded))
    inner = F.unhex(F.sha2(F.concat(ipad, F.encode(column, "UTF-8")), 256))
    return F.sha2(F.concat(opad, inner), 256)


def duckdb_round2(value: Column) -> Column:
    """DuckDB's round(DOUBLE, 2): std::round(x * 100) / 100 (half away from zero)."""
    return F.round(value * F.lit(100.0), 0) / F.lit(100.0)


def spark_silver_orders(
    spark: SparkSession, raw_df: DataFrame, pii_key: str | None = None
) -> DataFrame:
    """raw_orders rows (RAW_SCHEMA columns; `value`, `epoch`, `partition`, `offset`,
    `ingested_at` are used) → silver_orders rows, one per order item, deduplicated on
    (order_id, line) keeping the first (source_epoch, source_partition, source_offset).

    `pii_key` defaults to the configured `LAKEHOUSE_PII_KEY` (as `build_silver` uses). `spark`
    is the session that owns `raw_df`; the plan needs nothing else from it.
    """
    del spark
    key = pii_key if pii_key is not None else Settings.from_env().pii_hash_key
    parsed = raw_df.select(
        F.from_json(F.col("value"), ORDERS_JSON_SCHEMA).alias("j"),
        F.col("epoch").cast("int").alias("source_epoch"),
        F.col("partition").cast("int").alias("source_partition"),
        F.col("offset").cast("long").alias("source_offset"),
        F.col("ingested_at"),
    )
    # posexplode drops NULL / empty item lists, like DuckDB's unnest
    lines = parsed.select(
        "j",
        "source_epoch",
        "source_partition",
        "source_offset",
        "ingested_at",
        F.posexplode(F.col("j.items")).alias("pos", "item"),
    )
    ts = F.col("j.ts").cast("timestamp")
    rows = lines.select(
        F.col("j.order_id").alias("order_id"),
        (F.col("pos") + 1).cast("int").alias("line"),
        ts.alias("ts"),
        F.to_date(ts).alias("order_date"),
        hmac_sha256_hex(F.col("j.customer_id"), key).alias("customer_id_hash"),
        F.col("j.channel").alias("channel"),
        F.col("j.store_id").alias("store_id"),
        F.col("j.city").alias("city"),
        F.col("j.country").alias("country"),
        F.col("item.sku").alias("sku"),
        F.col("item.qty").cast("int").alias("qty"),
        F.col("item.price").alias("price"),
        duckdb_round2(F.col("item.qty") * F.col("item.price")).alias("line_amount"),
        "source_epoch",
        "source_partition",
        "source_offset",
        "ingested_at",
    )
    first = Window.partitionBy("order_id", "line").orderBy(
        "source_epoch", "source_partition", "source_offset"
    )
    return (
        rows.withColumn("_rn", F.row_number().over(first))
        .where(F.col("_rn") == 1)
        .drop("_rn")
        .select(*SILVER_ORDERS_SCHEMA.names)
    )


def spark_daily_sales(silver_df: DataFrame) -> DataFrame:
    """The seed's gold view: date(ts) d, city, sku, SUM(qty) units, SUM(qty*price) revenue."""
    return silver_df.groupBy(F.to_date("ts").alias("d"), "city", "sku").agg(
        F.sum("qty").cast("long").alias("units"),
        F.sum(F.col("qty") * F.col("price")).alias("revenue"),
    )


DAILY_SALES_SCHEMA = pa.schema(
    [
        pa.field("d", pa.date32()),
        pa.field("city", pa.string()),
        pa.field("sku", pa.string()),
        pa.field("units", pa.int64()),
        pa.field("revenue", pa.float64()),
    ]
)


def to_arrow(df: DataFrame, schema: pa.Schema) -> pa.Table:
    """Collect a (small) DataFrame to Arrow, cast to the lake schema (UTC timestamps)."""
    table = df.toArrow()
    return table.select(schema.names).cast(schema)
