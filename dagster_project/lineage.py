"""OpenLineage around an asset body: START before, COMPLETE/FAIL after, with datasets.

The run id is derived from the Dagster run id and the asset, so every asset step is its own
OpenLineage run and re-emitting is stable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import dagster as dg
import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.lineage import LineageEmitter, delta_dataset

DatasetRef = tuple[str, str, pa.Schema | None]  # (name, uri, schema)


@cache
def _emitter(settings: Settings) -> LineageEmitter:
    return LineageEmitter(settings)


@contextmanager
def lineage_run(
    settings: Settings,
    context: dg.AssetExecutionContext,
    inputs: list[DatasetRef],
    outputs: list[DatasetRef],
) -> Iterator[object]:
    job = context.asset_key.to_user_string()
    run_id = str(uuid.uuid5(uuid.UUID(context.run_id), job))
    with _emitter(settings).run(
        job,
        [delta_dataset(settings, name, uri, schema) for name, uri, schema in inputs],
        [delta_dataset(settings, name, uri, schema) for name, uri, schema in outputs],
        run_id=run_id,
    ) as handle:
        yield handle
