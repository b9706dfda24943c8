"""How the Spark tasks reach the lake's files: a local folder, or S3 without the s3a jar.

No Hadoop S3 connector (hadoop-aws) is needed on the classpath. On an `s3://` lake:

- a task writing a data file serialises it in memory (Parquet, snappy) and puts it with boto3,
  with the lake's storage options (endpoint, keys, region: `Settings.storage_options`) and its
  server-side encryption (`Settings.s3_sse` / `s3_sse_kms_key_id`) on the object;
- Spark reads a list of Parquet files through `read_parquet`: on a local lake it is
  `spark.read.parquet` with the schema given; on S3 the file list is spread over tasks
  (`spark.range` → mapInArrow), each task gets its files with boto3, reads them with pyarrow
  and yields Arrow batches of that schema;
- `list_keys` lists the objects under a table's prefix (what `unreferenced_files` needs).

No Dagster import.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import ArrayType, DataType, MapType, StringType, StructField, StructType

from lakehouse.config import Settings

# storage option → boto3 client argument
_CLIENT_ARGUMENTS = {
    "AWS_ENDPOINT_URL": "endpoint_url",
    "AWS_REGION": "region_name",
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/some/key → (bucket, some/key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass(frozen=True)
class ObjectStore:
    """What a task needs to reach the lake's bucket: the client settings and the server-side
    encryption of the objects it puts. Small and picklable (sent to every task)."""

    client_options: tuple[tuple[str, str], ...]
    sse: str | None = None
    kms_key_id: str | None = None

    @classmethod
    def from_options(
        cls,
        storage_options: Mapping[str, str] | None,
        sse: str | None = None,
        kms_key_id: str | None = None,
    ) -> ObjectStore:
        options = dict(storage_options or {})
        client = tuple(
            sorted(
                (arg, options[name]) for name, arg in _CLIENT_ARGUMENTS.items() if options.get(name)
            )
        )
        return cls(client, sse, kms_key_id)

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        return cls.from_options(
            settings.storage_options, settings.s3_sse, settings.s3_sse_kms_key_id
        )

    def client(self) -> Any:
        return _client(self.client_options)

    def put(self, uri: str, body: bytes) -> None:
        """One object, with the lake's server-side encryption."""
        bucket, key = split_s3(uri)
        extra: dict[str, str] = {}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        if self.sse == "aws:kms" and self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        self.client().put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def list_keys(self, prefix_uri: str) -> list[str]:
        """Every object under `prefix_uri` (a folder), as paths relative to it."""
        bucket, prefix = split_s3(prefix_uri.rstrip("/") + "/")
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])]


@functools.lru_cache(maxsize=8)
def _client(options: tuple[tuple[str, str], ...]) -> Any:
    """One boto3 client per process (a task's Python worker is reused across tasks)."""
    import boto3

    return boto3.session.Session().client("s3", **dict(options))


def parquet_bytes(table: pa.Table) -> bytes:
    """A Parquet file (snappy), serialised in memory."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def _nullable(kind: DataType) -> DataType:
    """Every field nullable (a file may lack a column; Spark reads files as nullable anyway)."""
    if isinstance(kind, StructType):
        return StructType([StructField(f.name, _nullable(f.dataType), True) for f in kind.fields])
    if isinstance(kind, ArrayType):
        return ArrayType(_nullable(kind.elementType), True)
    if isinstance(kind, MapType):
        return MapType(kind.keyType, _nullable(kind.valueType), True)
    return kind


def read_parquet(
    spark: SparkSession,
    files: Sequence[str],
    schema: pa.Schema,
    storage_options: Mapping[str, str] | None = None,
    file_column: str | None = None,
) -> DataFrame:
    """The rows of these Parquet files with `schema`'s columns (a column a file lacks reads
    null); with `file_column`, also each row's file name (its last path segment).

    Local files: `spark.read.parquet`. `s3://` files: no Hadoop S3 connector is needed, the
    files are spread over Spark tasks, each reads its own with boto3 + pyarrow."""
    struct = _nullable(from_arrow_schema(schema))
    assert isinstance(struct, StructType)
    if not any(f.startswith("s3://") for f in files):
        df = spark.read.schema(struct).parquet(*files)
        if file_column:
            name = F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1)
            df = df.withColumn(file_column, name)
        return df
    output = StructType(
        [*struct.fields, *([StructField(file_column, StringType())] if file_column else [])]
    )
    arrow = to_arrow_schema(output, timezone="UTC")
    store = ObjectStore.from_options(storage_options)
    slices = max(1, min(len(files), int(spark.conf.get("spark.sql.shuffle.partitions") or 1)))
    ids = spark.range(0, len(files), 1, slices)
    return ids.mapInArrow(_read_task(store, list(files), arrow, file_column), output)


def _read_task(
    store: ObjectStore, files: list[str], schema: pa.Schema, file_column: str | None
) -> Any:
    """The function each task runs (mapInArrow over file indexes): read its files."""
    data_fields = [f for f in schema if f.name != file_column]

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for ids in batches:
            for index in ids.column(0).to_pylist():
                uri = files[index]
                parquet = pq.ParquetFile(io.BytesIO(store.get(uri)))
                present = set(parquet.schema_arrow.names)
                wanted = [f.name for f in data_fields if f.name in present]
                name = uri.rsplit("/", 1)[-1]
                for batch in parquet.iter_batches(columns=wanted):
                    columns = [
                        batch.column(f.name).cast(f.type)
                        if f.name in present
                        else pa.nulls(batch.num_rows, f.type)
                        for f in data_fields
                    ]
                    if file_column:
                        columns.append(pa.array([name] * batch.num_rows, pa.string()))
                    yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return read
