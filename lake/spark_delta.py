"""Exactly-once Delta commits from Spark, without the delta-spark jar.

Spark tasks write the Parquet data files themselves, into the table's folder or, on an
`s3://` lake, under its prefix (hive-style `<partition column>=<value>/` sub-folders,
partition columns left out of the files, as delta-rs writes them; on S3 each file is put with
boto3 and the lake's server-side encryption, lake/spark_files.py), and return one small row per file: its path, size, partition value
and Delta statistics (row count, min/max/null count per column, in delta-rs's own format).
The driver collects those rows and commits every file in ONE Delta transaction with
`deltalake` (`create_write_transaction` / `create_table_with_add_actions`), carrying the
caller's `CommitProperties` — the same app transaction identifiers the DuckDB path commits.

So a crash (or a SIGKILL) anywhere before that commit leaves files no Delta version
references: readers never see them, VACUUM deletes them, and a re-run, which reads the
transaction identifiers the table still holds, redoes the batch from the same source
version. A task retried by Spark writes a new file under its new attempt number; only the
attempt Spark accepted reaches the driver, the other file stays unreferenced.

No Dagster import.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake.spark_files import ObjectStore, parquet_bytes, read_parquet
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

# one row per written file, returned by the tasks to the driver
FILE_ROWS_DDL = (
    "path STRING, size BIGINT, partition_value STRING, num_records BIGINT, stats STRING, "
    "modification_time BIGINT"
)


@dataclass(frozen=True)
class WrittenFiles:
    actions: list[AddAction]
    rows: int


def table_root(uri: str) -> str:
    """Where Spark tasks write the table's files: its `s3://` URI on an S3 lake (the tasks put
    the objects themselves), else its folder, which every executor must mount at the same path
    (local mode, NFS, a shared volume)."""
    if uri.startswith("s3://"):
        return uri.rstrip("/")
    if "://" in uri:
        raise ConfigError(
            f"LAKEHOUSE_ENGINE=spark cannot write {uri}: set LAKEHOUSE_LAKE_ROOT to a folder "
            "every executor mounts or to s3://bucket/prefix"
        )
    return os.path.abspath(uri)


def _stat_value(value: object) -> object | None:
    """A min/max as delta-rs writes it in `stats` (timestamps to the millisecond, UTC)."""
    if isinstance(value, datetime):
        millis = value.microsecond // 1000
        return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{millis:03d}Z" if millis else "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def file_stats(table: pa.Table) -> str:
    """Delta `stats` JSON of one data file: numRecords, minValues, maxValues, nullCount."""
    minimum: dict[str, object] = {}
    maximum: dict[str, object] = {}
    nulls: dict[str, int] = {}
    for name in table.column_names:
        column = table[name]
        kind = column.type
        nulls[name] = column.null_count
        if not (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_timestamp(kind)
            or pa.types.is_date(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
        ):
            continue
        if column.null_count == len(column):
            continue
        bounds = pc.min_max(column)
        low, high = _stat_value(bounds["min"].as_py()), _stat_value(bounds["max"].as_py())
        if low is not None and high is not None:
            minimum[name], maximum[name] = low, high
    return json.dumps(
        {
            "numRecords": table.num_rows,
            "minValues": minimum,
            "maxValues": maximum,
            "nullCount": nulls,
        },
        ensure_ascii=False,
    )


def _partition_text(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _write_task(
    root: str,
    schema: pa.Schema,
    partition_by: str | None,
    token: str,
    store: ObjectStore | None,
) -> object:
    """The function each Spark task runs over its Arrow batches (mapInArrow): one file per
    partition value, written into the folder `root`, or put under the `s3://` prefix `root`
    with `store` (serialised in memory, the lake's server-side encryption on the object)."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
        if not tables:
            return
        context = TaskContext.get()
        task = f"{context.partitionId():05d}-a{context.attemptNumber()}" if context else "00000"
        table = pa.concat_tables(tables).select(schema.names).cast(schema)
        groups: list[tuple[str | None, pa.Table]]
        if partition_by is None:
            groups = [(None, table)]
        else:
            values = pc.unique(table[partition_by]).to_pylist()
            groups = [
                (
                    _partition_text(v),
                    table.filter(
                        pc.is_null(table[partition_by])
                        if v is None
                        else pc.equal(
                            table[partition_by], pa.scalar(v, schema.field(partition_by).type)
                        )
                    ).drop_columns([partition_by]),
                )
                for v in values
            ]
        rows: dict[str, list[object]] = {n: [] for n in ("path", "size", "partition_value")}
        rows |= {"num_records": [], "stats": [], "modification_time": []}
        for number, (value, part) in enumerate(groups):
            folder = "" if partition_by is None else f"{partition_by}={value}/"
            # the file name alone is unique: the anti-join maps files to partitions by name
            relative = f"{folder}part-{task}-{token}-c{number:03d}.snappy.parquet"
            if store is not None:
                body = parquet_bytes(part)
                store.put(f"{root}/{relative}", body)
                size = len(body)
            else:
                target = os.path.join(root, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                pq.write_table(part, target, compression="snappy")
                size = os.path.getsize(target)
            rows["path"].append(relative)
            rows["size"].append(size)
            rows["partition_value"].append(value)
            rows["num_records"].append(part.num_rows)
            rows["stats"].append(file_stats(part))
            rows["modification_time"].append(int(time.time() * 1000))
        yield pa.RecordBatch.from_pydict(
            rows,
            schema=pa.schema(
                [
                    ("path", pa.string()),
                    ("size", pa.int64()),
                    ("partition_value", pa.string()),
                    ("num_records", pa.int64()),
                    ("stats", pa.string()),
                    ("modification_time", pa.int64()),
                ]
            ),
        )

    return write


def write_data_files(
    settings: Settings,
    df: DataFrame,
    uri: str,
    schema: pa.Schema,
    partition_by: str | None,
) -> WrittenFiles:
    """Spark tasks write `df` (columns of `schema`) as Parquet files into the table at `uri`;
    returns the Delta add actions of those files, uncommitted. Rows of one partition value
    are brought to one task first, so a micro-batch adds one file per partition value."""
    root = table_root(uri)
    store = ObjectStore.from_settings(settings) if root.startswith("s3://") else None
    if partition_by is not None:
        df = df.repartition(partition_by)
    token = uuid.uuid4().hex
    task = _write_task(root, schema, partition_by, token, store)
    files = df.mapInArrow(task, FILE_ROWS_DDL).collect()
    actions = [
        AddAction(
            path=row["path"],
            size=int(row["size"]),
            partition_values={} if partition_by is None else {partition_by: row["partition_value"]},
            modification_time=int(row["modification_time"]),
            data_change=True,
            stats=row["stats"],
        )
        for row in files
    ]
    return WrittenFiles(actions, sum(int(row["num_records"]) for row in files))


def commit_files(
    settings: Settings,
    uri: str,
    target: DeltaTable | None,
    written: WrittenFiles,
    schema: pa.Schema,
    partition_by: str | None,
    commit: CommitProperties,
    mode: str = "append",
) -> None:
    """Commit the written files (possibly none: the commit still records `commit`'s
    transaction identifiers) to the table in one Delta transaction; creates the table on its
    first commit. `mode="overwrite"` replaces every file of the current version."""
    partitions = [partition_by] if partition_by else None
    if target is None:
        create_table_with_add_actions(
            uri,
            Schema.from_arrow(schema),
            written.actions,
            mode="append",
            partition_by=partitions,
            storage_options=settings.storage_options or None,
            commit_properties=commit,
        )
        return
    target.create_write_transaction(
        written.actions,
        mode=mode,
        schema=_table_schema(target, schema),
        partition_by=partitions,
        commit_properties=commit,
    )


def _table_schema(target: DeltaTable, schema: pa.Schema) -> pa.Schema:
    """The schema to commit with: the table's own, with the columns a newer contract version
    added (`schema` has them) appended — older files read them as null."""
    current = pa.schema(target.schema().to_arrow())  # arro3 → pyarrow
    missing = [f for f in schema if f.name not in current.names]
    return pa.schema([*current, *missing]) if missing else current


def anti_join_existing(
    settings: Settings,
    spark: SparkSession,
    rows: DataFrame,
    target: DeltaTable | None,
    key: Sequence[str],
    partition_by: str,
) -> DataFrame:
    """`rows` whose (key, partition value) the table does not hold yet: the DuckDB path's
    `MERGE ... WHEN NOT MATCHED INSERT`, as a distributed anti-join. Only the files of the
    partition values present in `rows` are read (the partition column lives in the file's
    add action, not in the file: it is joined back by file name)."""
    if target is None:
        return rows
    values = [_partition_text(r[0]) for r in rows.select(partition_by).distinct().collect()]
    actions = pa.table(target.get_add_actions(flatten=True))  # arro3 → pyarrow
    if actions.num_rows == 0 or not values:
        return rows
    column = f"partition.{partition_by}"
    wanted = pc.is_in(pc.cast(actions[column], pa.string()), pa.array(values, pa.string()))
    touched = actions.filter(wanted)
    if touched.num_rows == 0:
        return rows
    root = target.table_uri.rstrip("/")
    paths = [f"{root}/{p}" for p in touched["path"].to_pylist()]
    files = spark.createDataFrame(
        [
            (p.rsplit("/", 1)[-1], v)
            for p, v in zip(
                touched["path"].to_pylist(),
                pc.cast(touched[column], pa.string()).to_pylist(),
                strict=True,
            )
        ],
        f"_file STRING, {partition_by}_text STRING",
    )
    partition_type = rows.schema[partition_by].dataType
    stored = pa.schema(target.schema().to_arrow())  # arro3 → pyarrow
    key_schema = pa.schema([stored.field(k) for k in key])
    existing = (
        read_parquet(spark, paths, key_schema, settings.storage_options, file_column="_file")
        .join(F.broadcast(files), "_file")
        .select(*key, F.col(f"{partition_by}_text").cast(partition_type).alias(partition_by))
    )
    return rows.join(existing, [*key, partition_by], "left_anti")


def add_action_paths(table: DeltaTable) -> list[str]:
    return [str(p) for p in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()]


def unreferenced_files(settings: Settings, uri: str, table: DeltaTable | None) -> list[str]:
    """Data files in the table's folder (or under its `s3://` prefix) that no action of the
    current version references (what a crash before the commit leaves; VACUUM deletes them).
    Paths relative to the table; `_delta_log/` and other `_`/`.` folders are left out."""
    referenced = set(add_action_paths(table)) if table is not None else set()
    root = table_root(uri)
    if root.startswith("s3://"):
        relative = ObjectStore.from_settings(settings).list_keys(root)
    else:
        relative = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            relative += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(
        p
        for p in relative
        if p.endswith(".parquet")
        and p not in referenced
        and not any(part.startswith(("_", ".")) for part in p.split("/")[:-1])
    )
