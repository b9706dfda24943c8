"""dbt-duckdb source plugin for the lake's Delta tables (profile: `module: lake.dbt_delta_plugin`,
alias `delta`).

Same as dbt-duckdb's own `delta` plugin, with two additions:

- files written by a Delta MERGE (delta-rs/DataFusion) hold `Utf8View` strings while the table
  schema says `string`, and DuckDB's filter pushdown into a pyarrow dataset then fails
  (`greater_equal(string, string_view)`). Declaring string columns as `string_view` makes
  pyarrow cast every file to one type and makes DuckDB evaluate those filters itself;
- a source may declare `empty_schema` in its meta — column → DuckDB type, or
  "module:ATTRIBUTE" naming a pyarrow schema: when its Delta table does not exist yet, the
  source is an empty table of that schema instead of an error. The use-case sources use it
  (fraud decisions and labels, social sentiment, the supply-chain tables written by the
  nightly forecasting assets): a `dbt build` on a lake where those never ran (a fresh demo,
  the 15-minute refresh, the CLI, CI, a user's lake that holds only some topics) must still
  build every model — empty — rather than fail or need a dbt variable. Every source declares
  one; a source without it stays an error when its table is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import DeltaTable

from lake.tables import consistent_dataset


def empty_table(schema: dict[str, str]) -> Any:
    """An empty Arrow table with these columns (name → DuckDB type, checked by DuckDB)."""
    if not schema:
        raise ValueError("empty_schema needs at least one column")
    columns = ", ".join(
        f'CAST(NULL AS {kind}) AS "{name.replace(chr(34), chr(34) * 2)}"'
        for name, kind in schema.items()
    )
    with duckdb.connect() as con:
        return con.sql(f"SELECT {columns} WHERE false").to_arrow_table()


class Plugin(BasePlugin):
    def initialize(self, config: dict[str, Any]) -> None:
        pass

    def load(self, source_config: SourceConfig) -> Any:
        if "delta_table_path" not in source_config:
            raise ValueError("'delta_table_path' is required for a delta source")
        path = source_config["delta_table_path"]
        storage_options = source_config.get("storage_options") or None
        empty_schema = source_config.get("empty_schema")
        if empty_schema and not DeltaTable.is_deltatable(path, storage_options=storage_options):
            if isinstance(empty_schema, str):  # "module:ATTRIBUTE", a pyarrow schema
                module, _, attribute = empty_schema.partition(":")
                return getattr(importlib.import_module(module), attribute).empty_table()
            return empty_table(dict(empty_schema))
        table = DeltaTable(path, storage_options=storage_options)
        if source_config.get("as_of_version") is not None:
            table.load_as_version(source_config["as_of_version"])
        return consistent_dataset(table)

    def default_materialization(self) -> str:
        return "view"
