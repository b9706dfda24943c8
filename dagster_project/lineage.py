"""OpenLineage around an asset body: START before, COMPLETE/FAIL after, with datasets.

Every asset step is its own OpenLineage run, with the Dagster run as its parent run facet."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pyarrow as pa
from openlineage.client.event_v2 import Dataset

from lakehouse.config import Settings
from lakehouse.lineage import LineageEmitter, ParentRun, delta_dataset

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
    context: dg.AssetExecutionContext,
    inputs: list[DatasetRef | Dataset],
    outputs: list[DatasetRef | Dataset],
) -> Iterator[object]:
    job = context.asset_key.to_user_string()
    with emitter(settings).run(
        job,
        [_dataset(settings, d) for d in inputs],
        [_dataset(settings, d) for d in outputs],
        parent=dagster_parent(context),
    ) as handle:
        yield handle


def dagster_parent(context: dg.AssetExecutionContext) -> ParentRun:
    return ParentRun(f"dagster.{context.job_name}", context.run_id)


def _dataset(settings: Settings, ref: DatasetRef | Dataset) -> Dataset:
    if isinstance(ref, Dataset):
        return ref
    name, uri, schema = ref
    return delta_dataset(settings, name, uri, schema)
