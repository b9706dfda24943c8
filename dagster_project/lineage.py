"""OpenLineage and FinOps usage around an asset body: START before, COMPLETE/FAIL after, with
datasets; and one `_usage` row (CPU, wall time, peak memory, bytes, rows) per step.

Every asset step is its own OpenLineage run, with the Dagster run as its parent run facet."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pyarrow as pa
from openlineage.client.event_v2 import Dataset

from lakehouse.config import Settings
from lakehouse.lineage import LineageEmitter, LineageRun, ParentRun, delta_dataset
from monitoring.usage import WRITER, UsageMeter

log = logging.getLogger(__name__)

DatasetRef = tuple[str, str, pa.Schema | None]  # (name, uri, schema) of a Delta table


_EMITTERS: dict[tuple[str, str | None], LineageEmitter] = {}


def emitter(settings: Settings) -> LineageEmitter:
    """One emitter (one transport) per lineage target and process."""
    key = (str(settings.lineage_file), settings.openlineage_url)
    if key not in _EMITTERS:
        _EMITTERS[key] = LineageEmitter(settings)
    return _EMITTERS[key]


@contextmanager
def lineage_run(
    settings: Settings,
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    inputs: list[DatasetRef | Dataset],
    outputs: list[DatasetRef | Dataset],
    job: str | None = None,
) -> Iterator[LineageRun]:
    """`job`: the OpenLineage job name, by default the asset's key (an op names its own)."""
    job = job or context.asset_key.to_user_string()
    meter = UsageMeter()
    handle: LineageRun | None = None
    succeeded = False
    try:
        with (
            meter,
            emitter(settings).run(
                job,
                [as_dataset(settings, d) for d in inputs],
                [as_dataset(settings, d) for d in outputs],
                parent=dagster_parent(context),
            ) as handle,
        ):
            yield handle
        succeeded = True
    finally:
        rows = sum(s.rowCount or 0 for s in handle.output_stats.values()) if handle else 0
        record_step_usage(settings, context.run_id, context.job_name, job, meter, rows, succeeded)


def record_step_usage(
    settings: Settings,
    run_id: str,
    job_name: str,
    asset: str,
    meter: UsageMeter,
    rows: int,
    succeeded: bool,
) -> None:
    """One `_usage` row, written in the background (monitoring/usage.py); like lineage, usage
    accounting never fails the step it measures."""
    try:
        WRITER.submit(settings, meter.row(run_id, job_name, asset, rows, succeeded))
    except Exception as exc:
        log.warning("usage of %s not recorded (%s: %s)", asset, type(exc).__name__, exc)


def dagster_parent(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> ParentRun:
    return ParentRun(f"dagster.{context.job_name}", context.run_id)


def as_dataset(settings: Settings, ref: DatasetRef | Dataset) -> Dataset:
    if isinstance(ref, Dataset):
        return ref
    name, uri, schema = ref
    return delta_dataset(settings, name, uri, schema)
