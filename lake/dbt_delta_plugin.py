"""dbt-duckdb source plugin for the silver Delta tables (profile: `module: lake.dbt_delta_plugin`,
alias `delta`).

Same as dbt-duckdb's own `delta` plugin, with one fix: files written by a Delta MERGE
(delta-rs/DataFusion) hold `Utf8View` strings while the table schema says `string`, and DuckDB's
filter pushdown into a pyarrow dataset then fails (`greater_equal(string, string_view)`).
Declaring string columns as `string_view` makes pyarrow cast every file to one type and makes
DuckDB evaluate those filters itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import DeltaTable

from lake.tables import consistent_dataset


class Plugin(BasePlugin):
    def initialize(self, config: dict[str, Any]) -> None:
        pass

    def load(self, source_config: SourceConfig) -> Any:
        if "delta_table_path" not in source_config:
            raise ValueError("'delta_table_path' is required for a delta source")
        empty_schema = source_config.get("empty_if_missing")
        if empty_schema and not DeltaTable.is_deltatable(
            source_config["delta_table_path"],
            storage_options=source_config.get("storage_options") or None,
        ):
            # optional source (a use case whose topic has no data yet): an empty table of the
            # declared Arrow schema ("module:ATTRIBUTE"), so the gold build still succeeds
            module, _, attribute = str(empty_schema).partition(":")
            return getattr(importlib.import_module(module), attribute).empty_table()
        table = DeltaTable(
            source_config["delta_table_path"],
            storage_options=source_config.get("storage_options") or None,
        )
        if source_config.get("as_of_version") is not None:
            table.load_as_version(source_config["as_of_version"])
        return consistent_dataset(table)

    def default_materialization(self) -> str:
        return "view"
