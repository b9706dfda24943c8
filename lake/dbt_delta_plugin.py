"""dbt-duckdb source plugin for the silver Delta tables (profile: `module: lake.dbt_delta_plugin`,
alias `delta`).

Same as dbt-duckdb's own `delta` plugin, with one fix: files written by a Delta MERGE
(delta-rs/DataFusion) hold `Utf8View` strings while the table schema says `string`, and DuckDB's
filter pushdown into a pyarrow dataset then fails (`greater_equal(string, string_view)`).
Declaring string columns as `string_view` makes pyarrow cast every file to one type and makes
DuckDB evaluate those filters itself.

A source may declare `empty_if_missing: {column: type}` in its meta: while its Delta table does
not exist (a use case whose data has not arrived yet) it reads as an empty table.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import DeltaTable

from lake.tables import consistent_dataset

# `empty_if_missing` column types (source meta: {column: type})
_TYPES = {
    "string": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


class Plugin(BasePlugin):
    def initialize(self, config: dict[str, Any]) -> None:
        pass

    def load(self, source_config: SourceConfig) -> Any:
        if "delta_table_path" not in source_config:
            raise ValueError("'delta_table_path' is required for a delta source")
        optional = source_config.get("empty_if_missing")
        if optional and not DeltaTable.is_deltatable(
            source_config["delta_table_path"],
            storage_options=source_config.get("storage_options") or None,
        ):
            # a use case's table not produced yet: an empty table with the declared columns
            return pa.table({name: pa.array([], _TYPES[kind]) for name, kind in optional.items()})
        table = DeltaTable(
            source_config["delta_table_path"],
            storage_options=source_config.get("storage_options") or None,
        )
        if source_config.get("as_of_version") is not None:
            table.load_as_version(source_config["as_of_version"])
        return consistent_dataset(table)

    def default_materialization(self) -> str:
        return "view"
