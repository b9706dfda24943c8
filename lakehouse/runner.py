"""Materialize assets through Dagster from a plain process (CLI, cron, CI, the demo)."""

from __future__ import annotations

from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError


def materialize_selection(settings: Settings, selection: str | None = None) -> str:
    """Run the selected assets (and their checks) in-process against the lakehouse's Dagster
    instance, so runs, metadata and lineage show in the UI. Returns a one-paragraph summary.
    No selection: every asset except the nightly ones (tag `lakehouse/cadence: nightly`) and
    their downstream."""
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
    from dagster_project.sensors import NIGHTLY_TAG

    graph = defs.resolve_asset_graph()
    # Default: the streaming graph (raw → silver → gold). Nightly assets (model training,
    # forecasts) and what is built from them need data of their own and run on their
    # schedule or when selected (`lakehouse materialize group:supply_chain`).
    keys = (
        dg.AssetSelection.all() - dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream()
    ).resolve(graph)
    if selection:
        try:
            keys = dg.AssetSelection.from_string(selection).resolve(graph)
        except Exception as exc:
            raise ConfigError(
                f"bad asset selection {selection!r} ({str(exc).splitlines()[0]}): use Dagster's "
                "syntax, e.g. 'key:raw_orders+', 'group:silver' or 'key:daily_sales'"
            ) from None
        if not keys:
            raise ConfigError(f"asset selection {selection!r} matches no asset: see `make ui`")
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
    materialized = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed_checks = [c.asset_check_key.name for c in checks if not c.passed]  # type: ignore[union-attr]
    lines = [
        f"run {result.run_id}: {len(materialized)} assets materialized, "
        f"{len(checks)} checks ({len(failed_checks)} failed)"
    ]
    if failed_checks:
        lines.append("failed checks: " + ", ".join(sorted(failed_checks)))
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        first = failures[0].event_specific_data.error.message.strip().splitlines()  # type: ignore[union-attr]
        raise LakehouseError(
            f"run {result.run_id} failed at {failures[0].step_key}: {first[-1] if first else ''}"
            f" (details: `make ui`, run {result.run_id[:8]})"
        )
    return "\n".join(lines)
