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

from dagster_project.automation import GOLD_REFRESH
from dagster_project.lineage import dagster_parent, emitter, record_step_usage
from dagster_project.monitoring import deliver
from dagster_project.resources import LakehouseResource
from governance.policy import access_note
from lake.gold import (
    DBT_PROJECT_DIR,
    MANIFEST_PATH,
    dbt_env,
    dbt_executable,
    emit_gold_lineage,
    gold_build,
)
from lakehouse.errors import LakehouseError
from monitoring.failures import dbt_test_conditions
from monitoring.usage import UsageMeter

if not MANIFEST_PATH.exists():
    raise LakehouseError(
        f"dbt manifest not found at {MANIFEST_PATH}: run `make venv` (it runs `dbt parse`) or "
        "`lakehouse dbt parse`"
    )


def _meta_asset_key(dbt_resource_props: Mapping[str, Any]) -> list[str] | None:
    """`meta.dagster.asset_key` of a source (dbt ≥ 1.10 keeps meta under `config`)."""
    for meta in (dbt_resource_props.get("config", {}).get("meta"), dbt_resource_props.get("meta")):
        key = ((meta or {}).get("dagster") or {}).get("asset_key")
        if key:
            return list(key)
    return None


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """A dbt source is the asset that writes its Delta table: `meta.dagster.asset_key` when
    declared (silver tables, the supply-chain gold tables written by the forecasting assets),
    else `silver_<table>`. Models keep their names; the supply-chain models join the
    `supply_chain` group (they are built by the nightly job, see dagster_project/forecasting.py);
    every other model and seed refreshes by `gold_refresh`
    (dagster_project/automation.py)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            key = _meta_asset_key(dbt_resource_props)
            return dg.AssetKey(key or f"silver_{dbt_resource_props['name']}")
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        if "gold" in fqn and "supply_chain" in fqn:
            return "supply_chain"
        return "gold" if "gold" in fqn else "gold_staging"

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        # supply-chain models are rebuilt by the nightly job, right after the assets they read
        if self.get_group_name(dbt_resource_props) == "supply_chain":
            return None
        return GOLD_REFRESH

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:analytics"]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # who may read the model, and which personal columns, from governance/policy.yaml
        base = super().get_description(dbt_resource_props)
        if dbt_resource_props["resource_type"] != "model":
            return base
        columns = list(dbt_resource_props.get("columns") or {})
        note = access_note(f"gold.{dbt_resource_props['name']}", columns)
        return f"{base}\n\n{note}" if base else note


TRANSLATOR = LakehouseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=MANIFEST_PATH, dagster_dbt_translator=TRANSLATOR, pool="gold_duckdb")
def gold_dbt(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource
) -> Iterator[Any]:
    settings = lakehouse.settings()
    meter = UsageMeter()  # FinOps: the whole dbt build (its CPU is the dbt child process's)
    succeeded = False
    with gold_build(settings) as build_path, _environ(dbt_env(settings, build_path)):
        meter.start()
        invocation = dbt.cli(["build"], context=context)
        try:
            yield from invocation.stream()
            succeeded = True
        finally:
            meter.stop()
            # one OpenLineage job per model, failed ones included
            emit_gold_lineage(
                settings,
                emitter(settings),
                MANIFEST_PATH,
                invocation.target_path / "run_results.json",
                parent=dagster_parent(context),
                gold_db=build_path,
                compiled_manifest_path=invocation.target_path / "manifest.json",
            )
            record_step_usage(
                settings, context.run_id, context.job_name, "gold_dbt", meter, 0, succeeded
            )
            # failed dbt tests alert (check_failure), passing ones resolve
            deliver(
                settings,
                dbt_test_conditions(MANIFEST_PATH, invocation.target_path / "run_results.json"),
            )


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
