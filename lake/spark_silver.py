"""raw → silver_orders and silver → daily_sales in PySpark: the same logic as lake/silver.py.

The default engine is DuckDB (lake/silver.py); this module is the Spark path for data that
outgrows one machine, and the reference the benchmarks and the parity test compare against.
Every column is computed as DuckDB computes it, so the two engines give identical rows:

- `customer_id_hash` is HMAC-SHA256 spelled with SQL functions exactly like `hmac_sql`
  (sha2 / unhex / concat over binary, key padded to 64 bytes, ipad 0x36, opad 0x5c);
- `line_amount` is `round(qty * price * 100) / 100`, which is how DuckDB rounds a DOUBLE to
  2 places. Spark's own `round(x, 2)` goes through `BigDecimal.valueOf` and differs on values
  such as 1.005 (DuckDB 1.0, Spark 1.01).

No Spark jars are needed (no delta-spark, no spark-sql-kafka, no hadoop-aws): Spark reads a
Delta table's current Parquet files (`DeltaTable.file_uris()`, see `read_delta`) through
lake/spark_files.py (`spark.read.parquet` on a local lake, boto3 + pyarrow in the tasks on an
`s3://` one) and results are written by the tasks and committed with `deltalake`
(lake/spark_delta.py). No Dagster import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import DeltaError
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from governance import pii
from governance.crypto import decrypt_raw_values
from lake.silver import (
    _PO,
    _READING,
    _RECEIPT,
    _SHIPMENT,
    _WEATHER,
    CURRENT_MARKER,
    SPECS,
    SilverResult,
    SilverSpec,
    _current_max_ts,
    _rel,
    commit_transactions,
    marker,
    plan_batches,
)
from lake.spark_delta import (
    anti_join_existing,
    commit_files,
    table_root,
    write_data_files,
)
from lake.spark_files import read_parquet
from lake.tables import (
    PII_TOKEN_TYPE,
    SILVER_ORDERS_SCHEMA,
    SILVER_TABLES,
    open_table,
    pii_column,
    raw_uri,
    silver_uri,
)
from lakehouse.config import Settings

# qty is read as DOUBLE: the contract accepts 2.0 as an integer (JSON Schema), which DuckDB's
# from_json reads as BIGINT 2 but Spark's as NULL; every valid qty (1..10000) is exact in a DOUBLE
# and DuckDB's BIGINT * DOUBLE is computed in DOUBLE anyway.
ORDERS_JSON_SCHEMA = (
    "order_id STRING, ts STRING, customer_id STRING, "
    "items ARRAY<STRUCT<sku: STRING, qty: DOUBLE, price: DOUBLE>>, "
    "channel STRING, store_id STRING, city STRING, country STRING"
)


def spark_config(settings: Settings, app_name: str = "lakehouse") -> dict[str, str]:
    """The Spark configuration of the `spark` engine: master from LAKEHOUSE_SPARK_MASTER, the
    settings the silver parity depends on (UTC session time zone, Arrow transfers), loopback
    and a small shuffle for a local master, then LAKEHOUSE_SPARK_CONF_* on top."""
    master = settings.spark_master
    conf = {
        "spark.app.name": app_name,
        # timestamps parsed, dated and collected in UTC, as DuckDB's `SET TimeZone = 'UTC'`
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # plain int64 microseconds if Spark itself writes Parquet (its default is INT96)
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.showConsoleProgress": "false",
    }
    if master.startswith("sc://"):
        conf["spark.remote"] = master  # Spark Connect: the server owns the cluster settings
    else:
        conf["spark.master"] = master
    if master.startswith("local"):
        cores = master.partition("[")[2].split(",")[0].rstrip("]") or "1"
        count = (os.cpu_count() or 2) if cores == "*" else int(cores)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback, no hostname lookup
        # the tasks' Python (decryption, file writes) is this interpreter, with its packages
        # (PySpark reads the variable, not `spark.pyspark.python`, when it starts the JVM)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf |= {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": str(2 * count),
            "spark.default.parallelism": str(count),
            "spark.sql.warehouse.dir": f"{tempfile.gettempdir()}/spark-warehouse",
            "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
        }
    return conf | settings.spark_conf


def local_spark(
    app_name: str,
    cores: int = 2,
    driver_memory: str = "2g",
    extra: Mapping[str, str] | None = None,
) -> SparkSession:
    """A local[cores] session tuned for a small machine (tests, benchmarks): the engine's
    configuration (`spark_config`) with that master, no UI."""
    settings = dataclasses.replace(Settings.from_env(), spark_master=f"local[{cores}]")
    conf = spark_config(settings, app_name) | {"spark.driver.memory": driver_memory}
    builder = SparkSession.builder
    for key, value in (conf | dict(extra or {})).items():
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
    return read_parquet(spark, files, data_schema(table), storage_options)


def data_schema(table: DeltaTable) -> pa.Schema:
    """The columns a Delta table's data files hold: its schema without the partition columns."""
    schema = pa.schema(table.schema().to_arrow())  # arro3 → pyarrow
    partitions = set(table.metadata().partition_columns)
    return pa.schema([f for f in schema if f.name not in partitions])


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


# ---- every silver transform on Spark (the `spark` engine) ---------------------------------
#
# Each function below is the Spark twin of one SQL transform of lake/silver.py: the same JSON
# fields, the same casts (read as DuckDB casts them: a JSON number read as text is normalised
# the same way by both parsers, `2.0` is a valid integer), the same treatment of personal
# fields (governance.pii: HMAC-SHA256 hex, grid), the same "first delivery wins" order.


def _lineage() -> list[Column]:
    return [
        F.col("epoch").cast("int").alias("source_epoch"),
        F.col("partition").cast("int").alias("source_partition"),
        F.col("offset").cast("long").alias("source_offset"),
        F.col("ingested_at"),
    ]


_LINEAGE_NAMES = ["source_epoch", "source_partition", "source_offset", "ingested_at"]
_DUCKDB_TO_SPARK = {"VARCHAR": "string", "DOUBLE": "double", "TIMESTAMPTZ": "timestamp"}


def _parsed(raw_df: DataFrame, ddl: str) -> DataFrame:
    return raw_df.select(F.from_json(F.col("value"), ddl).alias("j"), *_lineage())


def _first_delivery(df: DataFrame, key: Sequence[str]) -> DataFrame:
    """QUALIFY row_number() OVER (PARTITION BY key ORDER BY epoch, partition, offset) = 1"""
    first = Window.partitionBy(*key).orderBy("source_epoch", "source_partition", "source_offset")
    return df.withColumn("_rn", F.row_number().over(first)).where(F.col("_rn") == 1).drop("_rn")


def duckdb_bigint(text: Column) -> Column:
    """DuckDB's VARCHAR → BIGINT: integral text exactly, `2.0` as 2, halves away from zero."""
    return F.round(text.cast("decimal(38,9)"), 0).cast("bigint")


def _cast(text: Column, duckdb_type: str) -> Column:
    if duckdb_type == "BIGINT":
        return duckdb_bigint(text)
    return text.cast(_DUCKDB_TO_SPARK[duckdb_type])


def grid(value: Column) -> Column:
    """governance.pii.grid_sql: floor(x * 100.0) / 100.0 (Spark's floor is a BIGINT, exact)."""
    scale = float(round(1 / pii.GRID_DEGREES))
    return F.floor(value * F.lit(scale)) / F.lit(scale)


def silver_expr(topic: str, path: str, column: Column, key: str) -> Column:
    """governance.pii.silver_sql in Spark: the silver value of field `path` of `topic`."""
    treatment = pii.fields_of(topic)[path].treatment
    if treatment == "hash":
        return hmac_sha256_hex(column, key)
    if treatment == "grid":
        return grid(column)
    return column


def _sessions(raw_df: DataFrame, key: str) -> DataFrame:
    parsed = _parsed(
        raw_df,
        "session_id STRING, ts STRING, customer_id STRING, channel STRING, city STRING, "
        "order_id STRING",
    )
    ts = F.col("j.ts").cast("timestamp")
    rows = parsed.select(
        F.col("j.session_id").alias("session_id"),
        ts.alias("ts"),
        F.to_date(ts).alias("session_date"),
        silver_expr("sessions", "customer_id", F.col("j.customer_id"), key).alias(
            "customer_id_hash"
        ),
        F.col("j.channel").alias("channel"),
        F.col("j.city").alias("city"),
        F.col("j.order_id").alias("order_id"),
        *_LINEAGE_NAMES,
    )
    return _first_delivery(rows, ["session_id"])


def _inventory(raw_df: DataFrame, _: str) -> DataFrame:
    parsed = _parsed(
        raw_df,
        "sku STRING, store_id STRING, ts STRING, update_type STRING, on_hand STRING, "
        "on_order STRING, sold_qty STRING, received_qty STRING",
    )
    ts = F.col("j.ts").cast("timestamp")
    rows = parsed.select(
        F.col("j.sku").alias("sku"),
        F.col("j.store_id").alias("store_id"),
        ts.alias("ts"),
        F.to_date(ts).alias("update_date"),
        F.col("j.update_type").alias("update_type"),
        *(
            duckdb_bigint(F.col(f"j.{n}")).alias(n)
            for n in ("on_hand", "on_order", "sold_qty", "received_qty")
        ),
        *_LINEAGE_NAMES,
    )
    return _first_delivery(rows, ["sku", "store_id", "ts", "update_type"])


def _transactions(raw_df: DataFrame, key: str) -> DataFrame:
    parsed = _parsed(
        raw_df,
        "transaction_id STRING, timestamp STRING, account_id STRING, card_hash STRING, "
        "amount DOUBLE, currency STRING, merchant_id STRING, merchant_category STRING, "
        "channel STRING, country STRING, device_id STRING, ip STRING, lat DOUBLE, lon DOUBLE, "
        "three_ds_status STRING",
    )
    ts = F.col("j.timestamp").cast("timestamp")

    def treated(name: str) -> Column:
        return silver_expr("transactions", name, F.col(f"j.{name}"), key)

    rows = parsed.select(
        F.col("j.transaction_id").alias("transaction_id"),
        ts.alias("ts"),
        F.to_date(ts).alias("tx_date"),
        treated("account_id").alias("account_hash"),
        treated("card_hash").alias("card_hash"),
        F.col("j.amount").alias("amount"),
        F.col("j.currency").alias("currency"),
        F.col("j.merchant_id").alias("merchant_id"),
        F.col("j.merchant_category").alias("merchant_category"),
        F.col("j.channel").alias("channel"),
        F.col("j.country").alias("country"),
        treated("device_id").alias("device_id"),
        treated("ip").alias("ip_hash"),
        treated("lat").alias("lat"),
        treated("lon").alias("lon"),
        F.col("j.three_ds_status").alias("three_ds_status"),
        *_LINEAGE_NAMES,
    )
    return _first_delivery(rows, ["transaction_id"])


def _fraud_labels(raw_df: DataFrame, _: str) -> DataFrame:
    parsed = _parsed(raw_df, "transaction_id STRING, is_fraud BOOLEAN, reported_at STRING")
    reported = F.col("j.reported_at").cast("timestamp")
    rows = parsed.select(
        F.col("j.transaction_id").alias("transaction_id"),
        F.col("j.is_fraud").alias("is_fraud"),
        reported.alias("reported_at"),
        reported.alias("ts"),
        F.to_date(reported).alias("report_date"),
        *_LINEAGE_NAMES,
    )
    return _first_delivery(rows, ["transaction_id", "ts"])


def _flat(fields: Mapping[str, str], date_name: str, key: Sequence[str]) -> SparkTransform:
    """The twin of lake.silver._json_sql + _with_date: every field read as text, then cast."""
    ddl = ", ".join(f"{n} STRING" for n in fields)

    def transform(raw_df: DataFrame, _: str) -> DataFrame:
        columns: list[Column] = []
        for name, kind in fields.items():
            columns.append(_cast(F.col(f"j.{name}"), kind).alias(name))
            if name == "ts":
                columns.append(F.to_date(F.col("j.ts").cast("timestamp")).alias(date_name))
        rows = _parsed(raw_df, ddl).select(*columns, *_LINEAGE_NAMES)
        return _first_delivery(rows, key)

    return transform


def _orders(raw_df: DataFrame, key: str) -> DataFrame:
    return spark_silver_orders(raw_df.sparkSession, raw_df, key)


SparkTransform = Callable[[DataFrame, str], DataFrame]

SPARK_TRANSFORMS: dict[str, SparkTransform] = {
    "silver_orders": _orders,
    "silver_sessions": _sessions,
    "silver_inventory": _inventory,
    "silver_purchase_orders": _flat(_PO, "order_date", ["po_id"]),
    "silver_receipts": _flat(_RECEIPT, "receipt_date", ["receipt_id"]),
    "silver_shipments": _flat(_SHIPMENT, "event_date", ["shipment_id", "status"]),
    "silver_shipment_readings": _flat(_READING, "reading_date", ["shipment_id", "ts"]),
    "silver_weather": _flat(_WEATHER, "weather_date", ["city", "ts"]),
    "silver_transactions": _transactions,
    "silver_fraud_labels": _fraud_labels,
}


def spark_transform(spec: SilverSpec, raw_df: DataFrame, pii_key: str) -> DataFrame:
    """The raw → silver transform of one spec on Spark (columns in the silver schema's order)."""
    return SPARK_TRANSFORMS[spec.name](raw_df, pii_key).select(*SILVER_TABLES[spec.name][1].names)


# ---- reading raw and decrypting it in the tasks --------------------------------------------

_RAW_COLUMNS = ["value", "epoch", "partition", "offset", "ingested_at"]
_RAW_DDL = "value STRING, epoch INT, partition INT, offset BIGINT, ingested_at TIMESTAMP"
_RAW_READ = pa.schema(
    [
        pa.field("value", pa.string()),
        pa.field("epoch", pa.int32()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


def files_added_since(
    settings: Settings, uri: str, processed_version: int | None
) -> tuple[list[str], int | None]:
    """The data files (URIs) a Delta table gained after `processed_version` (every file if
    None) and the version read: lake.silver.rows_added_since, as a file list for Spark."""
    table = open_table(uri, settings)
    if table is None:
        return [], None
    current = table.version()
    files = list(table.file_uris())
    if processed_version is None:
        return files, current
    if processed_version >= current:
        return [], current
    try:
        before = open_table(uri, settings, processed_version)
        seen = set(before.file_uris()) if before else set()
    except DeltaError:  # old log entries cleaned up: reprocess everything (the anti-join dedups)
        seen = set()
    return [f for f in files if f not in seen], current


def _decrypt_task(settings: Settings, topic: str) -> Callable[..., Iterator[pa.RecordBatch]]:
    """Runs in each task: governance.crypto's decryption of the raw tokens, batch by batch
    (rows of erased subjects drop out, as on the DuckDB path; the pii columns are dropped)."""

    def decrypt(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = decrypt_raw_values(settings, topic, pa.Table.from_batches([batch]))
            table = table.set_column(0, "value", pc.cast(table["value"], pa.string()))
            yield from table.to_batches()

    return decrypt


def read_raw(spark: SparkSession, settings: Settings, topic: str, files: list[str]) -> DataFrame:
    """Raw rows of these files, PII tokens decrypted inside the Spark tasks. Read with the
    schema given, not inferred: a file written before the `pii_<field>` columns reads null
    there (its payload holds `pii1.` tokens, which the tasks decrypt as well)."""
    sealed = [pii_column(f.path) for f in pii.sealed_fields(topic)]
    schema = pa.schema([*_RAW_READ, *(pa.field(name, PII_TOKEN_TYPE) for name in sealed)])
    raw = read_parquet(spark, files, schema, settings.storage_options)
    return raw.mapInArrow(_decrypt_task(settings, topic), _RAW_DDL)


# ---- the `spark` engine's silver builds -----------------------------------------------------


def build_silver_spark(settings: Settings, spark: SparkSession, name: str) -> SilverResult:
    """lake.silver.build_silver on Spark: the raw files added since the table's marker, in the
    same batches of at most `settings.max_batch_records` raw rows (`plan_batches`), are read,
    decrypted and transformed by Spark tasks; the rows whose key silver holds are dropped by
    an anti-join; the tasks write the Parquet files and the driver commits them with the
    batch's marker in one Delta transaction per batch (lake/spark_delta.py)."""
    started = time.monotonic()
    spec = SPECS[name]
    uri = silver_uri(settings, name)
    table_root(uri)  # a lake the tasks can write, or one line naming the fix
    target = open_table(uri, settings)
    processed = target.transaction_version(marker(spec.topic)) if target else None
    result = SilverResult(name, processed, processed)  # up to date unless batches follow
    source = raw_uri(settings, spec.topic)
    raw = open_table(source, settings)
    plan = plan_batches(settings, source, raw, processed, settings.max_batch_records) if raw else []
    file_uris = {_rel(u, source): u for u in raw.file_uris()} if plan and raw else {}
    for paths, raw_version in plan:
        files = [file_uris[p] for p in paths]
        target = _spark_batch(settings, spark, spec, uri, target, files, raw_version, result)
        result.raw_version_to = raw_version
        result.extra["commits"] = int(result.extra.get("commits", 0)) + 1  # type: ignore[call-overload]
    result.duplicates_skipped = result.rows_in_batch - result.rows_inserted
    if plan and target is not None:
        result.table_version = target.version()
    result.extra["engine"] = "spark"
    result.seconds = time.monotonic() - started
    return result


def _spark_batch(
    settings: Settings,
    spark: SparkSession,
    spec: SilverSpec,
    uri: str,
    target: DeltaTable | None,
    files: list[str],
    raw_version: int | None,
    result: SilverResult,
) -> DeltaTable | None:
    """One batch of raw files into silver on Spark, in one commit (with the marker
    `raw_version` when it completes one); adds its counts to `result`."""
    schema = SILVER_TABLES[spec.name][1]
    if files:
        raw_df = read_raw(spark, settings, spec.topic, files)
        rows = spark_transform(spec, raw_df, settings.pii_hash_key).persist()
    else:  # only empty commits since (a new epoch): nothing to read, the marker still moves
        rows = spark.createDataFrame([], _spark_schema(spark, schema))
    try:
        watermark = _current_max_ts(target)
        limit = None
        if watermark is not None and settings.late_watermark_minutes:
            limit = watermark - timedelta(minutes=settings.late_watermark_minutes)
        counts = rows.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum((F.col("ts") < F.lit(limit)).cast("long") if limit else F.lit(0)).alias("late"),
        ).collect()[0]
        batch_rows = int(counts["rows"])
        late = int(counts["late"] or 0) if limit is not None and batch_rows else 0
        if limit is not None and batch_rows:
            result.late_watermark = limit.isoformat()
        result.rows_in_batch += batch_rows
        result.late_events += late
        result.raw_rows_read += _raw_rows_read(spark, settings, files)
        fresh = anti_join_existing(settings, spark, rows, target, spec.key, spec.partition_by)
        written = write_data_files(settings, fresh, uri, schema, spec.partition_by)
    finally:
        rows.unpersist()
    # the writer id a DuckDB silver commit carries too: a concurrent writer of this table
    # (either engine) fails this commit instead of both appending one key
    commit = CommitProperties(
        app_transactions=commit_transactions(spec.topic, target, raw_version),
        custom_metadata={"lakehouse.late_events": str(late)},
        max_commit_retries=0 if target is None else None,
    )
    commit_files(settings, uri, target, written, schema, spec.partition_by, commit)
    result.rows_inserted += written.rows
    return open_table(uri, settings)


def _raw_rows_read(spark: SparkSession, settings: Settings, files: list[str]) -> int:
    # locally from the Parquet footers; on S3 the tasks read one small column
    if not files:
        return 0
    return int(
        read_parquet(
            spark, files, pa.schema([_RAW_READ.field("epoch")]), settings.storage_options
        ).count()
    )


def _spark_schema(spark: SparkSession, schema: pa.Schema) -> object:
    return from_arrow_schema(schema)


def build_inventory_current_spark(settings: Settings, spark: SparkSession) -> SilverResult:
    """lake.silver.build_inventory_current on Spark: latest update per SKU × store from the
    rows silver_inventory gained, merged with the current table (a newer event time wins, a
    tie keeps the stored row, as the DuckDB MERGE's `s.ts > t.ts`), written by the tasks and
    committed by the driver as one overwrite with the marker."""
    started = time.monotonic()
    name = "silver_inventory_current"
    uri = silver_uri(settings, name)
    schema = SILVER_TABLES[name][1]
    table_root(uri)
    target = open_table(uri, settings)
    processed = target.transaction_version(CURRENT_MARKER) if target else None
    files, version = files_added_since(
        settings, silver_uri(settings, "silver_inventory"), processed
    )
    result = SilverResult(name, processed, version)
    if version is None or (processed is not None and version <= processed):
        result.seconds = time.monotonic() - started
        return result
    key = ["sku", "store_id"]
    if files:
        inventory = open_table(silver_uri(settings, "silver_inventory"), settings)
        options = settings.storage_options
        updates = read_parquet(spark, files, data_schema(inventory), options)  # type: ignore[arg-type]
        result.raw_rows_read = int(updates.count())
        newest = Window.partitionBy(*key).orderBy(
            F.col("ts").desc(), F.col("source_epoch").desc(), F.col("source_offset").desc()
        )
        latest = (
            updates.withColumn("_rn", F.row_number().over(newest))
            .where(F.col("_rn") == 1)
            .select(*schema.names)
        )
    else:
        latest = spark.createDataFrame([], _spark_schema(spark, schema))
    latest = latest.persist()
    try:
        result.rows_in_batch = int(latest.count())
        stored = target.file_uris() if target is not None else []
        if stored:
            current = read_parquet(spark, stored, schema, settings.storage_options)
            candidates = current.withColumn("_new", F.lit(1)).unionByName(
                latest.withColumn("_new", F.lit(0))
            )
            # the stored row first on equal event times: it is kept (`s.ts > t.ts` updates)
            pick = Window.partitionBy(*key).orderBy(F.col("ts").desc(), F.col("_new").desc())
            merged = candidates.withColumn("_rn", F.row_number().over(pick)).where("_rn = 1")
            changes = (
                latest.alias("s")
                .join(current.alias("t"), key, "left")
                .agg(
                    F.sum(F.col("t.ts").isNull().cast("long")).alias("inserted"),
                    F.sum((F.col("s.ts") > F.col("t.ts")).cast("long")).alias("updated"),
                )
                .collect()[0]
            )
            result.rows_inserted = int(changes["inserted"] or 0)
            result.extra["rows_updated"] = int(changes["updated"] or 0)
            rows = merged.select(*schema.names)
        else:
            rows = latest
            result.rows_inserted = result.rows_in_batch
        written = write_data_files(settings, rows, uri, schema, None)
    finally:
        latest.unpersist()
    commit = CommitProperties(app_transactions=[Transaction(CURRENT_MARKER, version)])
    commit_files(settings, uri, target, written, schema, None, commit, mode="overwrite")
    result.table_version = open_table(uri, settings).version()  # type: ignore[union-attr]
    result.extra["engine"] = "spark"
    result.seconds = time.monotonic() - started
    return result
