"""OpenLineage around an asset body: START before, COMPLETE/FAIL after, with datasets.

Every asset step is its own OpenLineage run, with the Dagster run as its parent run facet."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.lineage import LineageEmitter, ParentRun, delta_dataset

DatasetRef = tuple[str, str, pa.Schema | None]  # (name, uri, schema)


_EMITTERS: dict[tuple[str, str | None], LineageEmitter] = {}


def _emitter(settings: Settings) -> LineageEmitter:
    """One emitter (one transport) per lineage target and process."""
    key = (str(settings.lineage_file), settings.openlineage_url)
    if key not in _EMITTERS:
        _EMITTERS[key] = LineageEmitter(settings)
    return _EMITTERS[key]


@contextmanager
def lineage_run(
    settings: Settings,
    context: dg.AssetExecutionContext,
    inputs: list[DatasetRef],
    outputs: list[DatasetRef],
) -> Iterator[object]:
    job = context.asset_key.to_user_string()
    with _emitter(settings).run(
        job,
        [delta_dataset(settings, name, uri, schema) for name, uri, schema in inputs],
        [delta_dataset(settings, name, uri, schema) for name, uri, schema in outputs],
        parent=ParentRun(f"dagster.{context.job_name}", context.run_id),
    ) as handle:
        yield handle
