"""Gold KPIs: the dbt project (dagster-dbt), built into a copy of the gold DuckDB file that is
published atomically when dbt succeeds (BI readers never see a half-written file)."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from dagster_project.resources import LakehouseResource
from lake.gold import DBT_PROJECT_DIR, MANIFEST_PATH, dbt_env, dbt_executable, gold_build
from lakehouse.errors import LakehouseError

if not MANIFEST_PATH.exists():
    raise LakehouseError(
        f"dbt manifest not found at {MANIFEST_PATH}: run `make venv` (it runs `dbt parse`) or "
        "`lakehouse dbt parse`"
    )


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the assets named by their `meta.dagster.asset_key` (default
    `silver_<table>`); models keep their names."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            meta = dbt_resource_props.get("meta") or dbt_resource_props.get("config", {}).get(
                "meta"
            )
            key = (meta or {}).get("dagster", {}).get("asset_key")
            if key:  # e.g. fraud.fraud_decisions -> the fraud_decisions asset
                return dg.AssetKey(key)
            return dg.AssetKey(f"silver_{dbt_resource_props['name']}")
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        return "gold" if "gold" in fqn else "gold_staging"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:analytics"]


TRANSLATOR = LakehouseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=MANIFEST_PATH, dagster_dbt_translator=TRANSLATOR, pool="gold_duckdb")
def gold_dbt(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource
) -> Iterator[Any]:
    settings = lakehouse.settings()
    with gold_build(settings) as build_path, _environ(dbt_env(settings, build_path)):
        yield from dbt.cli(["build"], context=context).stream()


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """dbt reads its settings through env_var() and DbtCliResource passes os.environ: set them
    for the dbt call only (runs of this asset are serialised by its pool)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(dbt_executable()),
    )
