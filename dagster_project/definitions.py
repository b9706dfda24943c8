"""The Dagster code location (workspace.yaml): it wires, it does not compute.
# No `from __future__ import annotations` in this package: Dagster inspects the real
# `context` type hints of asset and sensor functions.

raw_<topic> (Kafka → Delta, exactly-once) → silver_* (MERGE) → dbt gold KPIs, with Great
Expectations checks, a sensor per topic, declarative automation of gold (`gold_refresh`,
dagster_project/automation.py) and OpenLineage events.
Nothing heavy is imported at module level (run launch cost, see docs/operations.md).
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import dagster as dg

from dagster_project import forecasting, fraud, maintenance, monitoring, platform, sentiment
from dagster_project.assets.gold import dbt_resource, gold_dbt
from dagster_project.assets.raw import RAW_ASSETS
from dagster_project.assets.silver import SILVER_ASSETS, pyspark_resource
from dagster_project.automation import gold_automation_sensor
from dagster_project.checks import QUALITY_CHECKS
from dagster_project.resources import LakehouseResource
from dagster_project.sensors import INGEST_JOBS, NIGHTLY_TAG, SENSORS
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.ownership import owner_of

# What the `gold_refresh` automation condition keeps fresh, as a job to run by hand (UI,
# `lakehouse materialize`). dbt models over tables written by nightly assets (the
# supply-chain gold, ...) only change when those run: their nightly job rebuilds them.
gold_job = dg.define_asset_job(
    name="refresh_gold",
    selection=dg.AssetSelection.assets(
        gold_dbt, platform.platform_snapshot, sentiment.sentiment_negative_wordcloud
    )
    - dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream(),
    description="Rebuild the dbt gold KPIs from silver and publish the gold DuckDB file.",
)

everything_job = dg.define_asset_job(
    name="materialize_all",
    selection=dg.AssetSelection.all() - dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream(),
    description="raw → silver → gold for every topic, up to the current high-water marks "
    "(nightly training/forecast assets run in their own jobs).",
)


def _engine_resources() -> dict[str, object]:
    """LAKEHOUSE_ENGINE=spark: the silver assets run on dagster-pyspark's session."""
    settings = Settings.from_env()
    return {"pyspark": pyspark_resource(settings)} if settings.engine == "spark" else {}


# The streaming spine. Each use case (fraud, sentiment, supply chain) adds its own
# `dg.Definitions` (assets, checks, jobs, sensors, schedules; no resources or executor) to
# DOMAIN_DEFS below; they share the `lakehouse` and `dbt` resources defined here. `defs` is
# the only Definitions object Dagster's loader uses (`_defs` before the owner tags).
DOMAIN_DEFS = (
    fraud.defs,
    sentiment.defs,
    forecasting.defs,
    maintenance.defs,
    monitoring.defs,
    platform.defs,
)

_defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[*RAW_ASSETS, *SILVER_ASSETS, gold_dbt],
        asset_checks=QUALITY_CHECKS,
        jobs=[*INGEST_JOBS.values(), gold_job, everything_job],
        sensors=[*SENSORS, gold_automation_sensor],
        resources={"lakehouse": LakehouseResource(), "dbt": dbt_resource(), **_engine_resources()},
        executor=dg.in_process_executor,
    ),
    *DOMAIN_DEFS,
)


def _gold_freshness() -> dg.FreshnessPolicy | None:
    """Native freshness policy of the gold models `gold_refresh` rebuilds (the UI shows fresh
    / stale); the `stream_freshness` sensor alerts on the same age (dagster_project/monitoring.py)."""
    try:
        minutes = Settings.from_env().gold_max_age_minutes
    except LakehouseError:  # a bad setting is reported by the first run, in one line
        return None
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=minutes))


_GOLD_FRESHNESS = _gold_freshness()


def _owner_tags(spec: dg.AssetSpec) -> dg.AssetSpec:
    """FinOps: every asset carries its domain, team and cost_center (lakehouse/ownership.py);
    a run's tags come from its job's selection (the sensors' ingest jobs tag theirs). Gold
    models refreshed by `gold_refresh` also carry the gold freshness policy."""
    owner = owner_of(spec.key.path[-1])
    spec = spec.replace_attributes(tags={**spec.tags, **owner.tags()})
    if spec.group_name == "gold" and _GOLD_FRESHNESS is not None:
        spec = spec.replace_attributes(freshness_policy=_GOLD_FRESHNESS)
    return spec


with warnings.catch_warnings():  # a preview API in the pinned Dagster: say it once, here
    warnings.filterwarnings("ignore", message=".*map_resolved_asset_specs.*")
    defs = _defs.map_resolved_asset_specs(func=_owner_tags)
