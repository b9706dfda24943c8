"""Materialize assets through Dagster from a plain process (CLI, cron, CI, the demo)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError


def _without_traversal(selection: str) -> str:
    """The selection with its graph traversals removed: `2+key:a+` -> `key:a`."""
    return re.sub(r"(?:^|(?<=[\s(]))\d*\+|\+\d*(?=[\s)]|$)", "", selection)


def _resolve(selection: str, graph: Any) -> set[Any]:
    import dagster as dg

    try:
        return set(dg.AssetSelection.from_string(selection).resolve(graph))
    except Exception as exc:
        raise ConfigError(
            f"bad asset selection {selection!r} ({str(exc).splitlines()[0]}): use Dagster's "
            "syntax, e.g. 'key:raw_orders+', 'group:silver' or 'key:daily_sales'"
        ) from None


@dataclass(frozen=True)
class RunOutcome:
    text: str  # the summary the CLI prints
    lag_left: dict[str, int]  # topic -> records a capped micro-batch left behind


def selected_keys(selection: str | None) -> set[Any]:
    """The asset keys a `lakehouse materialize` selection runs."""
    import dagster as dg

    from dagster_project.definitions import defs
    from dagster_project.sensors import NIGHTLY_TAG

    graph = defs.resolve_asset_graph()
    # Nightly assets (model training, forecasts) and what is built from them need data of
    # their own and run on their schedule, or when a selection names them directly
    # (`lakehouse materialize group:supply_chain`, `key:fraud_model`). A selection that only
    # reaches them through the graph (`key:raw_transactions+`) leaves them out, as the
    # sensors' micro-batch jobs do: a streaming run never retrains a model.
    nightly = dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream().resolve(graph)
    keys = dg.AssetSelection.all().resolve(graph) - nightly
    if selection:
        keys = _resolve(selection, graph)
        named = _resolve(_without_traversal(selection), graph)
        keys -= nightly - named
        if not keys:
            raise ConfigError(f"asset selection {selection!r} matches no asset: see `make ui`")
    return keys


def materialize_selection(settings: Settings, selection: str | None = None) -> str:
    """Run the selected assets (and their checks) in-process against the lakehouse's Dagster
    instance, so runs, metadata and lineage show in the UI. Returns a one-paragraph summary.
    No selection: every asset except the nightly ones (tag `lakehouse/cadence: nightly`) and
    their downstream."""
    return run_selection(settings, selection).text


def materialize_until_caught_up(
    settings: Settings, selection: str | None = None, max_runs: int = 1000
) -> Iterator[RunOutcome]:
    """Runs of the selection, one after another, until no raw micro-batch stops at the batch
    cap with records left (each run's outcome is yielded as it finishes)."""
    for _ in range(max_runs):
        outcome = run_selection(settings, selection)
        yield outcome
        if not outcome.lag_left:
            return
    raise LakehouseError(
        f"still behind after {max_runs} runs ({outcome.lag_left}): raise "
        "LAKEHOUSE_MAX_BATCH_RECORDS or check that producers are not outpacing ingestion"
    )


def run_selection(settings: Settings, selection: str | None = None) -> RunOutcome:
    """materialize_selection, with the lag each raw micro-batch left behind."""
    from lake.gold import MANIFEST_PATH, prepare_manifest
    from lakehouse.instance import ensure_dagster_home

    ensure_dagster_home(settings)
    if not MANIFEST_PATH.exists():
        prepare_manifest(settings)

    import warnings

    import dagster as dg

    # 'group:' selections emit a BetaWarning about a Dagster-internal parameter
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    from dagster_project.definitions import defs

    keys = selected_keys(selection)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=sorted(keys),
            raise_on_error=False,
            # the CLI prints its own summary; step logs stay in the instance (see `make ui`)
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"lakehouse/trigger": "cli"},
        )
    from monitoring.usage import WRITER

    WRITER.flush()  # the run's `_usage` rows are in the table when the command returns
    materializations = result.get_asset_materialization_events()
    materialized = [e.asset_key.to_user_string() for e in materializations]
    lag_left = {
        key.removeprefix("raw_"): int(lag.value)
        for key, lag in (
            (e.asset_key.to_user_string(), e.materialization.metadata.get("left_at_cap"))
            for e in materializations
        )
        if key.startswith("raw_") and lag is not None and lag.value
    }
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    # A check of severity WARN that did not pass is a warning (e.g. a user's SKU missing from
    # the reference catalogue); ERROR ones are failures (blocking checks stop downstream).
    failed = [c for c in checks if not c.passed]  # type: ignore[union-attr]
    warned = sorted(c.asset_check_key.name for c in failed if c.severity.value == "WARN")  # type: ignore[union-attr]
    failed_checks = sorted(c.asset_check_key.name for c in failed if c.severity.value != "WARN")  # type: ignore[union-attr]
    lines = [
        f"run {result.run_id}: {len(materialized)} assets materialized, "
        f"{len(checks)} checks ({len(failed_checks)} failed, {len(warned)} warnings)"
    ]
    if failed_checks:
        lines.append("failed checks: " + ", ".join(failed_checks))
    if warned:
        lines.append("warnings: " + ", ".join(warned))
    for topic, left in sorted(lag_left.items()):
        lines.append(
            f"{topic}: stopped at the batch cap (LAKEHOUSE_MAX_BATCH_RECORDS="
            f"{settings.max_batch_records:,}) with {left:,} records left: run again, or "
            "`lakehouse materialize --until-caught-up`"
        )
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        first = failures[0].event_specific_data.error.message.strip().splitlines()  # type: ignore[union-attr]
        raise LakehouseError(
            f"run {result.run_id} failed at {failures[0].step_key}: {first[-1] if first else ''}"
            f" (details: `make ui`, run {result.run_id[:8]})"
        )
    return RunOutcome("\n".join(lines), lag_left)
