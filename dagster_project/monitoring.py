"""Annex A alerts as Dagster sensors and checks (the logic is monitoring/, plain Python).

- `stream_freshness` (sensor, every 15 s): latency of every topic (newest event in the lake,
  Kafka lag in time) and age of every gold model the `gold_refresh` automation rebuilds.
- `raw_<topic>_null_rates` (asset checks, after each micro-batch): null rate per field
  against the contract's `x-max-null-rate`.
- `orphan_files` (sensor, hourly): data files no Delta log version references.
- `run_failure_alerts` / `run_success_resolves` (run-status sensors): a failed run alerts, the
  job's next successful run resolves it.
- Blocking Great Expectations checks (dagster_project/checks.py) report their own outcome.
- Gold assets carry a native freshness policy (`LAKEHOUSE_GOLD_MAX_AGE_MINUTES`) shown in the UI.

Each evaluation reconciles its conditions with the `alerts` table: trigger, resolve or nothing
(monitoring/alerts.py). Alerting never fails what it watches: an error while delivering or
storing an alert is logged and the sensor or check goes on."""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from dagster_project.resources import LakehouseResource
from dagster_project.sensors import NIGHTLY_TAG
from ingestion import kafka_client
from ingestion.broker import TOPICS
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from monitoring.alerts import Condition, reconcile
from monitoring.failures import run_condition, run_subject
from monitoring.freshness import (
    gold_condition,
    latency_threshold,
    stream_condition,
    stream_freshness,
)
from monitoring.null_rates import batch_null_rates, null_rate_thresholds
from monitoring.orphans import lake_orphans, orphan_condition

log = logging.getLogger(__name__)
FRESHNESS_INTERVAL_SECONDS = 15  # 2-minute threshold + 15 s tick + delivery < 2.5 min
ORPHAN_INTERVAL_SECONDS = 3600


def deliver(settings: Settings, conditions: Sequence[Condition]) -> list[dict[str, object]]:
    """reconcile(), logged instead of raised: alerting never fails a run, check or sensor."""
    try:
        return reconcile(settings, conditions)
    except Exception as exc:
        log.warning("alerts not delivered (%s: %s)", type(exc).__name__, exc)
        return []


def _gold_models(context: dg.SensorEvaluationContext) -> list[dg.AssetKey]:
    """Gold models `gold_refresh` rebuilds (nightly ones have their own cadence)."""
    if context.repository_def is None:
        return []
    selection = dg.AssetSelection.groups("gold") - (
        dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream()
    )
    return sorted(selection.resolve(context.repository_def.asset_graph))


def freshness_conditions(
    context: dg.SensorEvaluationContext, settings: Settings, bootstrap: str | None
) -> list[Condition]:
    now = datetime.now(UTC)
    conditions: list[Condition] = []
    if bootstrap is not None:
        try:
            marks = kafka_client.probe_topics_high_watermarks(bootstrap, TOPICS)
        except LakehouseError as exc:
            context.log.warning(f"freshness not measured ({exc})")
            marks = {}
        for topic, topic_marks in marks.items():
            try:
                measured = stream_freshness(settings, bootstrap, topic, now, topic_marks)
            except LakehouseError as exc:
                context.log.warning(f"{topic}: freshness not measured ({exc})")
                continue
            threshold = latency_threshold(topic, settings.stream_latency_seconds)
            condition = stream_condition(measured, threshold)
            if condition is not None:
                conditions.append(condition)
    max_age = timedelta(minutes=settings.gold_max_age_minutes)
    for key in _gold_models(context):
        event = context.instance.get_latest_materialization_event(key)
        built = datetime.fromtimestamp(event.timestamp, UTC) if event is not None else None
        condition = gold_condition(key.to_user_string(), built, now, max_age)
        if condition is not None:
            conditions.append(condition)
    return conditions


@dg.sensor(
    name="stream_freshness",
    minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Stream latency per topic (newest event in the lake, Kafka lag in time) over "
    "LAKEHOUSE_STREAM_LATENCY_SECONDS, and gold models not rebuilt within "
    "LAKEHOUSE_GOLD_MAX_AGE_MINUTES: alerts and resolves through the webhook and `alerts`.",
)
def stream_freshness_sensor(
    context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
) -> dg.SkipReason:
    settings = lakehouse.settings()
    try:
        bootstrap: str | None = lakehouse.bootstrap()
    except LakehouseError as exc:
        context.log.warning(str(exc))
        bootstrap = None
    conditions = freshness_conditions(context, settings, bootstrap)
    sent = deliver(settings, conditions)
    stale = [c.subject for c in conditions if c.firing]
    return dg.SkipReason(
        f"{len(conditions)} watched, {len(stale)} stale"
        + (f" ({', '.join(stale)})" if stale else "")
        + f"; {len(sent)} alert events sent"
    )


@dg.sensor(
    name="orphan_files",
    minimum_interval_seconds=ORPHAN_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Data files under a Delta table that no version of its log references, older "
    "than LAKEHOUSE_MAINTENANCE_RETENTION_HOURS: alerts until `lakehouse lake maintain`.",
)
def orphan_files_sensor(
    context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
) -> dg.SkipReason:
    settings = lakehouse.settings()
    found = lake_orphans(settings)
    conditions = [orphan_condition(t, settings.maintenance_retention_hours) for t in found]
    sent = deliver(settings, conditions)
    dirty = [t.table for t in found if t.files]
    return dg.SkipReason(
        f"{len(found)} tables, {len(dirty)} with orphan files"
        + (f" ({', '.join(dirty)})" if dirty else "")
        + f"; {len(sent)} alert events sent"
    )


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run alerts (webhook + `alerts`); the next success of the same job (or "
    "automation, or asset selection) resolves it.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, lakehouse: LakehouseResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or ""
    deliver(lakehouse.settings(), [run_condition(_subject(run), run.run_id, True, message)])


@dg.run_status_sensor(
    name="run_success_resolves",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resolves a job's open run-failure alert when one of its runs succeeds.",
)
def run_success_resolves(context: dg.RunStatusSensorContext, lakehouse: LakehouseResource) -> None:
    run = context.dagster_run
    deliver(lakehouse.settings(), [run_condition(_subject(run), run.run_id, False)])


def _subject(run: dg.DagsterRun) -> str:
    assets = [key.to_user_string() for key in run.asset_selection or ()]
    return run_subject(run.job_name, dict(run.tags), assets)


def null_rate_check(topic: str) -> dg.AssetChecksDefinition:
    fields = ", ".join(sorted(null_rate_thresholds(topic)))

    @dg.asset_check(
        asset=dg.AssetKey(f"raw_{topic}"),
        name=f"raw_{topic}_null_rates",
        blocking=False,
        description=f"Null rate of {fields} in the latest micro-batch against the contract's "
        "x-max-null-rate; alerts (and resolves) through the webhook and `alerts`.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
    ) -> dg.AssetCheckResult:
        settings = lakehouse.settings()
        event = context.instance.get_latest_materialization_event(dg.AssetKey(f"raw_{topic}"))
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        batch = meta.get("batch_id")
        batch_id = str(batch.value) if batch is not None else ""
        if not batch_id:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"status": "no batch yet"},
            )
        report = batch_null_rates(settings, topic, batch_id)
        sent = deliver(settings, report.conditions())
        return dg.AssetCheckResult(
            passed=not report.breaches,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "batch_id": batch_id,
                "rows": report.rows,
                "judged": report.judged,
                "null_rates": dg.MetadataValue.json(report.rates),
                "thresholds": dg.MetadataValue.json(report.thresholds),
                "breaches": dg.MetadataValue.json(report.breaches),
                "alert_events": len(sent),
            },
        )

    return _check


NULL_RATE_CHECKS = [null_rate_check(t) for t in TOPICS if null_rate_thresholds(t)]
SENSORS = [stream_freshness_sensor, orphan_files_sensor, run_failure_alerts, run_success_resolves]

# Written as a side effect of every asset step (dagster_project/lineage.py), never
# materialized on its own: an external asset, so the dbt model reading it shows its origin.
USAGE_TABLE = dg.AssetSpec(
    "_usage",
    group_name="platform",
    kinds={"delta"},
    description="FinOps usage: one row per asset step of every run (CPU seconds, wall time, "
    "peak memory, bytes read and written, rows; monitoring/usage.py), read by the gold "
    "model finops_usage_daily.",
)

defs = dg.Definitions(assets=[USAGE_TABLE], asset_checks=NULL_RATE_CHECKS, sensors=SENSORS)
