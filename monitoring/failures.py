"""Conditions of failed runs and failed blocking checks (resolved by the next success).

Plain Python (no Dagster import)."""

from __future__ import annotations

import json
from pathlib import Path

from monitoring.alerts import CHECK_FAILURE, RUN_FAILURE, Condition

# Dagster names the job of a run that targets assets directly (declarative automation, a
# sensor's or the UI's asset selection, `materialize`) with a reserved `__` name such as
# `__ASSET_JOB`: one name for runs of unrelated assets, so it cannot tell whose failure a
# success resolves.
IMPLICIT_JOB_PREFIX = "__"
AUTOMATION_TAG = "lakehouse/automation"


def run_subject(job: str, tags: dict[str, str], assets: list[str] | None) -> str:
    """What a run's failure alert is about, so that the next success of the same work, and
    only that, resolves it: the job's name; for an implicit asset job, the automation that
    requested it (`automation gold_refresh`) or else the assets it targets."""
    if not job.startswith(IMPLICIT_JOB_PREFIX):
        return job
    if tags.get(AUTOMATION_TAG):
        return f"automation {tags[AUTOMATION_TAG]}"
    names = sorted(assets or [])
    if not names:
        return job
    shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
    return f"assets {shown}"


def run_condition(job: str, run_id: str, failed: bool, message: str = "") -> Condition:
    """A job's last run: firing when it failed, cleared by the next successful run. `job` is
    the run's subject (`run_subject`)."""
    if failed:
        first_line = (message.strip().splitlines() or [""])[0][:300]
        summary = f"Run {run_id[:8]} of {job} failed: {first_line}"
    else:
        summary = f"{job} succeeded again (run {run_id[:8]})"
    return Condition(
        kind=RUN_FAILURE,
        subject=job,
        detail="",
        firing=failed,
        value=1.0 if failed else 0.0,
        threshold=0.0,
        summary=summary,
        fix=f"read run {run_id[:8]} in the Dagster UI (make ui), fix the cause, re-execute it",
        severity="error",
    )


def check_condition(check: str, table: str, passed: bool, detail: str = "") -> Condition:
    """A blocking check's last evaluation: firing while it fails."""
    state = "failed" if not passed else "passes again"
    summary = f"Blocking check {check} on {table} {state}"
    if detail:
        summary += f": {detail[:300]}"
    if not passed:
        summary += f"; the assets downstream of {table} were not run"
    return Condition(
        kind=CHECK_FAILURE,
        subject=check,
        detail=table,
        firing=not passed,
        value=0.0 if passed else 1.0,
        threshold=0.0,
        summary=summary,
        fix=f"read the check's metadata, fix the data or the rule, then lakehouse materialize 'key:{table}+'",
        severity="error",
    )


def dbt_test_conditions(manifest_path: Path, run_results_path: Path) -> list[Condition]:
    """One condition per dbt test a `dbt build` ran (a failing test blocks the models
    downstream of its model): firing when it failed or errored."""
    if not run_results_path.exists():
        return []
    manifest = json.loads(manifest_path.read_text("utf-8"))
    conditions = []
    for result in json.loads(run_results_path.read_text("utf-8"))["results"]:
        node = manifest["nodes"].get(result["unique_id"])
        if node is None or node["resource_type"] != "test" or result["status"] == "skipped":
            continue
        attached = node.get("attached_node") or next(iter(node["depends_on"]["nodes"]), "")
        model = attached.rsplit(".", 1)[-1]
        passed = result["status"] in ("pass", "warn")
        detail = "" if passed else f"dbt test {result['status']}: {result.get('message') or ''}"
        conditions.append(check_condition(node["name"], model, passed, detail))
    return conditions
