"""OpenLineage run events for the lakehouse's jobs, emitted by hand.

openlineage-dagster cannot be used with this Dagster version, so the pipeline code wraps each
job in `LineageEmitter.run(...)`: START on entry, COMPLETE (with output row counts) on
success, FAIL (with the error) on an exception, ABORT on an interruption. Events go to
`settings.lineage_file` as JSON lines (FileTransport, the offline default) or, when
`LAKEHOUSE_OPENLINEAGE_URL` is set, to that HTTP endpoint (e.g. Marquez).

Lineage is an observer: an event that cannot be written or sent (endpoint down, disk full,
a facet that does not serialise) is logged as a warning once per target and dropped; it never
fails the job. When the HTTP server is unreachable (connection error, timeout, 5xx after the
retries) it is skipped for `HTTP_COOLDOWN_SECONDS`, so a dead server costs one timeout, not one
per event; a 4xx only drops the event it rejected.

Dataset naming follows the OpenLineage spec: local paths are namespace `file` + absolute path,
S3 objects `s3://<bucket>` + key; the logical table name (`silver_orders`, `daily_sales`) is
kept in a symlinks facet (namespace `lakehouse`). `OPENLINEAGE_DISABLED=true` turns emission
off (the client then uses its no-op transport).

Plain Python (no Dagster import).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attr
import pyarrow as pa
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    Dataset,
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    datasource_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    storage_dataset,
    symlinks_dataset,
)
from openlineage.client.transport import Transport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid

from lakehouse.config import Settings

log = logging.getLogger(__name__)

PRODUCER = "urn:lakehouse:lineage"
LOGICAL_NAMESPACE = "lakehouse"
DEFAULT_HTTP_ENDPOINT = "api/v1/lineage"
HTTP_TIMEOUT_SECONDS = 3.0
HTTP_COOLDOWN_SECONDS = 30.0
# Few, fast retries (the client's default is 5 with exponential backoff: ~10 s per event on a
# closed port). POSTs are not retried after a read timeout: the server may have the event.
HTTP_RETRY = {
    "total": 2,
    "connect": 2,
    "read": 0,
    "status": 2,
    "backoff_factor": 0.2,
    "status_forcelist": [429, 500, 502, 503, 504],
    "allowed_methods": ["POST"],
}
_MAX_STACK_CHARS = 20_000


# ---- datasets --------------------------------------------------------------------------


def schema_facet(schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """OpenLineage schema facet of an Arrow schema: name + Arrow type string per field
    (struct fields, also inside lists, become nested fields)."""
    return schema_dataset.SchemaDatasetFacet(fields=_schema_fields(list(schema)))


def _schema_fields(fields: Sequence[pa.Field]) -> list[schema_dataset.SchemaDatasetFacetFields]:
    return [
        schema_dataset.SchemaDatasetFacetFields(
            name=f.name,
            type=str(f.type),
            ordinal_position=position,
            fields=_nested_fields(f.type) or None,  # None: omitted from the JSON
            # the contract's PII classification, carried by the table schema (lake/tables.py)
            description=(f.metadata or {}).get(b"pii", b"").decode() or None,
        )
        for position, f in enumerate(fields, start=1)
    ]


def _nested_fields(arrow_type: pa.DataType) -> list[schema_dataset.SchemaDatasetFacetFields]:
    if pa.types.is_struct(arrow_type):
        return _schema_fields([arrow_type.field(i) for i in range(arrow_type.num_fields)])
    if (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    ):
        return _nested_fields(arrow_type.value_type)
    return []


def _location(settings: Settings, uri: str) -> tuple[str, str]:
    """(namespace, name) of a storage location per the OpenLineage naming spec: local paths
    `file` + absolute path, object stores `<scheme>://<bucket>` + key.

    A relative path is taken relative to the lake root (`silver/orders`)."""
    if "://" not in uri and not Path(uri).expanduser().is_absolute():
        uri = f"{settings.lake_root.rstrip('/')}/{uri}"
    parts = urlsplit(uri)
    if parts.scheme and parts.scheme != "file":
        return f"{parts.scheme}://{parts.netloc}", parts.path.strip("/") or "/"
    path = uri.removeprefix("file://")
    return "file", str(Path(path).expanduser().resolve())


def _lake_datasource(settings: Settings) -> datasource_dataset.DatasourceDatasetFacet:
    namespace, name = _location(settings, settings.lake_root)
    uri = f"{namespace}/{name.lstrip('/')}" if namespace != "file" else f"file://{name}"
    return datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=uri)


def _symlink(name: str) -> symlinks_dataset.SymlinksDatasetFacet:
    return symlinks_dataset.SymlinksDatasetFacet(
        identifiers=[
            symlinks_dataset.Identifier(namespace=LOGICAL_NAMESPACE, name=name, type="TABLE")
        ]
    )


def delta_dataset(
    settings: Settings, name: str, uri: str, schema: pa.Schema | None = None
) -> Dataset:
    """A Delta table as an OpenLineage dataset.

    `name` is the logical table name (symlinks facet), `uri` its location (absolute, s3:// or
    relative to the lake root); the dataset is identified by the location so that other
    OpenLineage producers reading the same files (Spark, dbt-duckdb) meet the same node.
    """
    namespace, path = _location(settings, uri)
    facets: dict[str, DatasetFacet] = {
        "dataSource": _lake_datasource(settings),
        "storage": storage_dataset.StorageDatasetFacet(storageLayer="delta", fileFormat="parquet"),
        "symlinks": _symlink(name),
    }
    if schema is not None:
        facets["schema"] = schema_facet(schema)
    return Dataset(namespace=namespace, name=path, facets=facets)


def duckdb_dataset(
    settings: Settings,
    table: str,
    schema: pa.Schema | None = None,
    *,
    db_schema: str = "main",
    path: Path | None = None,
    columns: Sequence[tuple[str, str]] | None = None,
) -> Dataset:
    """A table of the gold DuckDB file (or of the DuckDB file at `path`, e.g. a role's
    published gold): namespace `duckdb://<absolute file path>`, name
    `<catalog>.<schema>.<table>` (the catalog of an attached file is its stem, `gold`); the
    schema facet from an Arrow schema or from (column, type) pairs. The logical name is the
    table's in the gold file, `<stem>.<table>` in another (`analyst.daily_sales`).

    OpenLineage defines no DuckDB naming; this one is unique per file and readable.
    """
    gold = settings.gold_db_path.expanduser().resolve()
    path = (path or gold).expanduser().resolve()
    namespace = f"duckdb://{path}"
    catalog = path.name.split(".", 1)[0]
    facets: dict[str, DatasetFacet] = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace),
        "symlinks": _symlink(table if path == gold else f"{catalog}.{table}"),
    }
    if schema is not None:
        facets["schema"] = schema_facet(schema)
    elif columns is not None:
        facets["schema"] = typed_schema_facet(columns)
    return Dataset(namespace=namespace, name=f"{catalog}.{db_schema}.{table}", facets=facets)


def kafka_dataset(
    settings: Settings,
    topic: str,
    schema: pa.Schema | None = None,
    json_schema: Mapping[str, Any] | None = None,
) -> Dataset:
    """A Kafka topic (spec naming: `kafka://<first bootstrap server>` + topic); its schema
    facet from an Arrow schema or from the topic's JSON Schema contract (field: JSON type)."""
    server = settings.bootstrap.split(",")[0].strip()
    facets: dict[str, DatasetFacet] = {"symlinks": _symlink(topic)}
    if schema is not None:
        facets["schema"] = schema_facet(schema)
    elif json_schema is not None:
        facets["schema"] = json_schema_facet(json_schema)
    return Dataset(namespace=f"kafka://{server}", name=topic, facets=facets)


def mlflow_model_dataset(
    settings: Settings,
    model_name: str,
    version: str,
    features: Sequence[tuple[str, str]] = (),
) -> Dataset:
    """A registered MLflow model version: namespace the tracking URI (the registry holding
    it), name `models/<name>/<version>` (as in a `models:/` URI); its schema facet lists the
    features it scores, (name, type). OpenLineage defines no MLflow naming; this one is
    unique per registry and readable."""
    namespace = settings.mlflow_tracking_uri
    facets: dict[str, DatasetFacet] = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace),
        "symlinks": symlinks_dataset.SymlinksDatasetFacet(
            identifiers=[
                symlinks_dataset.Identifier(
                    namespace=LOGICAL_NAMESPACE, name=f"{model_name}/{version}", type="MODEL"
                )
            ]
        ),
    }
    if features:
        facets["schema"] = typed_schema_facet(features)
    return Dataset(namespace=namespace, name=f"models/{model_name}/{version}", facets=facets)


def file_dataset(
    settings: Settings, name: str, path: str | Path, columns: Sequence[tuple[str, str]] = ()
) -> Dataset:
    """A plain file (labelled training data, a served model file): namespace `file` +
    absolute path, per the naming spec; `name` is its logical name (symlinks facet)."""
    namespace, location = _location(settings, str(Path(path).expanduser().resolve()))
    facets: dict[str, DatasetFacet] = {"symlinks": _symlink(name)}
    if columns:
        facets["schema"] = typed_schema_facet(columns)
    return Dataset(namespace=namespace, name=location, facets=facets)


def json_schema_facet(json_schema: Mapping[str, Any]) -> schema_dataset.SchemaDatasetFacet:
    """Schema facet of a JSON Schema object: each property with its JSON type(s)."""
    fields = []
    for name, sub in json_schema.get("properties", {}).items():
        declared = sub.get("type", "any")
        kind = declared if isinstance(declared, str) else "|".join(declared)
        fields.append(
            schema_dataset.SchemaDatasetFacetFields(
                name=name, type=kind, description=sub.get("description")
            )
        )
    return schema_dataset.SchemaDatasetFacet(fields=fields)


def typed_schema_facet(columns: Sequence[tuple[str, str]]) -> schema_dataset.SchemaDatasetFacet:
    """Schema facet of (name, SQL type) columns (e.g. a dbt model contract)."""
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in columns]
    )


def column_lineage_facet(
    mapping: Mapping[str, Sequence[tuple[Dataset, str]]],
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """{output column: [(input dataset, input column), ...]} as a column-lineage facet."""
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            out_col: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=ds.namespace, name=ds.name, field=in_col
                    )
                    for ds, in_col in sources
                ]
            )
            for out_col, sources in mapping.items()
        }
    )


def with_quality_assertions(
    dataset: Dataset, assertions: Sequence[tuple[str, str | None, bool]]
) -> Dataset:
    """A copy of `dataset` carrying a data-quality-assertions facet: (assertion, column,
    success) per check (dbt tests, Great Expectations expectations)."""
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    facet = dq.DataQualityAssertionsDatasetFacet(
        assertions=[dq.Assertion(assertion=a, success=ok, column=c) for a, c, ok in assertions]
    )
    return attr.evolve(dataset, facets={**(dataset.facets or {}), "dataQualityAssertions": facet})


def with_column_lineage(
    dataset: Dataset, mapping: Mapping[str, Sequence[tuple[Dataset, str]]]
) -> Dataset:
    """A copy of the output `dataset` carrying the column-lineage facet of `mapping`."""
    facets = {**(dataset.facets or {}), "columnLineage": column_lineage_facet(mapping)}
    return attr.evolve(dataset, facets=facets)


def logical_names(dataset: Dataset) -> set[str]:
    """The names a dataset answers to: its OpenLineage name and its symlink names."""
    names = {dataset.name}
    symlinks = (dataset.facets or {}).get("symlinks")
    if isinstance(symlinks, symlinks_dataset.SymlinksDatasetFacet):
        names |= {i.name for i in symlinks.identifiers or []}
    return names


# ---- runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParentRun:
    """A parent run (e.g. the Dagster run): its job name, run id and job namespace
    (None = the emitter's namespace). Non-UUID run ids are mapped with `as_run_id`."""

    job_name: str
    run_id: str
    namespace: str | None = None


def as_run_id(run_id: str | None) -> str:
    """OpenLineage run ids must be UUIDs: keep a UUID, map anything else to a stable UUIDv5,
    and make a new time-ordered UUIDv7 when None."""
    if run_id is None:
        return str(generate_new_uuid())
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{LOGICAL_NAMESPACE}:{run_id}"))


@dataclass
class LineageRun:
    """Handle of a run in progress: record what the job produced before it returns."""

    job_name: str
    run_id: str
    namespace: str
    parent: ParentRun | None = None
    root: ParentRun | None = None
    output_stats: dict[int, output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet] = (
        field(default_factory=dict)
    )
    run_facets: dict[str, RunFacet] = field(default_factory=dict)
    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()

    def add_input(self, dataset: Dataset) -> None:
        """An input known only once the job ran (e.g. the model version it scored with):
        sent with the final event (COMPLETE / FAIL / ABORT)."""
        self.inputs = (*self.inputs, dataset)

    def add_output(self, dataset: Dataset) -> None:
        """An output known only once the job ran (e.g. the model version it registered):
        sent with the final event; `set_output_stats` may then name it."""
        self.outputs = (*self.outputs, dataset)

    def set_output_stats(
        self, name: str, rows: int, *, size_bytes: int | None = None, files: int | None = None
    ) -> None:
        """Rows (bytes, files) written to the output known as `name` (its logical table name
        or OpenLineage name). An unknown name is logged and ignored: lineage never fails a job.
        """
        for index, dataset in enumerate(self.outputs):
            if name in logical_names(dataset):
                self.output_stats[index] = (
                    output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                        rowCount=int(rows),
                        size=None if size_bytes is None else int(size_bytes),
                        fileCount=None if files is None else int(files),
                    )
                )
                return
        known = sorted(n for d in self.outputs for n in logical_names(d))
        log.warning(
            "lineage: %s has no output %r (outputs: %s); statistics ignored",
            self.job_name,
            name,
            ", ".join(known) or "none",
        )

    def add_run_facet(self, key: str, facet: RunFacet) -> None:
        """Extra run facet sent with the final event (COMPLETE / FAIL / ABORT)."""
        self.run_facets[key] = facet

    def as_parent(self) -> ParentRun:
        """This run as the parent of nested runs."""
        return ParentRun(self.job_name, self.run_id, self.namespace)


class _TargetHealth:
    """Per-target (file path / URL) failure state shared by all emitters of the process:
    the warning is logged once per target, and an unreachable HTTP target is skipped for a
    cooldown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._suspended_until: dict[str, float] = {}

    def suspended(self, target: str) -> bool:
        with self._lock:
            return time.monotonic() < self._suspended_until.get(target, 0.0)

    def failed(self, target: str, error: BaseException, cooldown: float) -> None:
        with self._lock:
            first = target not in self._warned
            self._warned.add(target)
            if cooldown > 0:
                self._suspended_until[target] = time.monotonic() + cooldown
        message = "lineage: cannot emit OpenLineage events to %s (%s); the job goes on"
        if first:
            log.warning(message + " (further failures are logged at debug level)", target, error)
        else:
            log.debug(message, target, error)

    def reset(self) -> None:
        with self._lock:
            self._warned.clear()
            self._suspended_until.clear()


_HEALTH = _TargetHealth()


def _http_transport(url: str) -> HttpTransport:
    """`url` may be the server root (the endpoint is then /api/v1/lineage, as for Marquez) or
    the full endpoint URL."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    endpoint = parts.path.lstrip("/") or DEFAULT_HTTP_ENDPOINT
    if parts.query:
        endpoint = f"{endpoint}?{parts.query}"
    config = HttpConfig(
        url=base, endpoint=endpoint, timeout=HTTP_TIMEOUT_SECONDS, retry=dict(HTTP_RETRY)
    )
    return HttpTransport(config)


class LineageEmitter:
    """Emits OpenLineage run events for the jobs of one namespace; never raises on emission.

    Transport: `transport` when given (tests, custom setups); else HTTP to
    `settings.openlineage_url` when set; else JSON lines appended to `settings.lineage_file`.
    """

    def __init__(
        self,
        settings: Settings,
        namespace: str = "lakehouse",
        *,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.namespace = namespace
        if transport is not None:
            self.target = f"{transport.kind} transport"
        elif settings.openlineage_url:
            self.target = settings.openlineage_url
            transport = _http_transport(settings.openlineage_url)
        else:
            path = settings.lineage_file
            self.target = str(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # reported (once) by the first emit
                log.debug("lineage: cannot create %s: %s", path.parent, exc)
            transport = FileTransport(FileConfig(log_file_path=str(path), append=True))
        self._cooldown = HTTP_COOLDOWN_SECONDS if isinstance(transport, HttpTransport) else 0.0
        self.client = OpenLineageClient(transport=transport)
        self.emitted = 0
        self.dropped = 0

    @property
    def transport_kind(self) -> str:
        """`file`, `http`, `noop` (OPENLINEAGE_DISABLED=true) or the custom transport's kind."""
        return str(self.client.transport.kind)

    def emit(self, event: RunEvent) -> bool:
        """Send one event; False (and a warning, once per target) when it could not be sent."""
        if _HEALTH.suspended(self.target):
            self.dropped += 1
            return False
        try:
            self.client.emit(event)
        except Exception as exc:  # lineage must never fail the pipeline
            self.dropped += 1
            # Skip the target for a while only when it is unreachable or unhealthy; a 4xx
            # rejects one event, the next one may well be accepted.
            unreachable = isinstance(
                exc, requests.ConnectionError | requests.Timeout | requests.exceptions.RetryError
            )
            _HEALTH.failed(self.target, exc, self._cooldown if unreachable else 0.0)
            return False
        self.emitted += 1
        return True

    @contextmanager
    def run(
        self,
        job_name: str,
        inputs: Sequence[Dataset],
        outputs: Sequence[Dataset],
        run_id: str | None = None,
        parent: ParentRun | LineageRun | None = None,
        *,
        job_type: str = "JOB",
        job_facets: Mapping[str, JobFacet] | None = None,
    ) -> Iterator[LineageRun]:
        """START now; COMPLETE when the block returns, FAIL (error message + stack) when it
        raises an Exception, ABORT on any other BaseException (interrupt); the exception
        always propagates unchanged.

        `run_id`: this run's id (default: a new UUIDv7; a non-UUID is mapped, see `as_run_id`).
        Give each job its own run id and pass the orchestrator run as `parent`.
        """
        parent_ref = parent.as_parent() if isinstance(parent, LineageRun) else parent
        if parent_ref is not None:
            parent_ref = ParentRun(
                parent_ref.job_name,
                as_run_id(parent_ref.run_id),
                parent_ref.namespace or self.namespace,
            )
        root = parent.root if isinstance(parent, LineageRun) and parent.root else parent_ref
        handle = LineageRun(
            job_name=job_name,
            run_id=as_run_id(run_id),
            namespace=self.namespace,
            parent=parent_ref,
            root=root,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
        )
        job = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="LAKEHOUSE", jobType=job_type
            ),
            **(job_facets or {}),
        }
        self._safe_emit(RunState.START, handle, inputs, outputs, job, {})
        try:
            yield handle
        except Exception as exc:
            error = error_message_run.ErrorMessageRunFacet(
                message=f"{type(exc).__name__}: {exc}",
                programmingLanguage="python",
                stackTrace=traceback.format_exc()[-_MAX_STACK_CHARS:],
            )
            self._final(RunState.FAIL, handle, job, {"errorMessage": error})
            raise
        except BaseException:
            self._final(RunState.ABORT, handle, job, {})
            raise
        self._final(RunState.COMPLETE, handle, job, {})

    def _final(
        self,
        state: RunState,
        handle: LineageRun,
        job_facets: Mapping[str, JobFacet],
        run_facets: Mapping[str, RunFacet],
    ) -> None:
        """The final event, with the datasets the job added while it ran."""
        self._safe_emit(state, handle, handle.inputs, handle.outputs, job_facets, run_facets)

    def _safe_emit(
        self,
        state: RunState,
        handle: LineageRun,
        inputs: Sequence[Dataset],
        outputs: Sequence[Dataset],
        job_facets: Mapping[str, JobFacet],
        run_facets: Mapping[str, RunFacet],
    ) -> None:
        try:
            event = self._event(state, handle, inputs, outputs, job_facets, run_facets)
        except Exception as exc:  # a malformed facet must not fail the job either
            self.dropped += 1
            _HEALTH.failed(f"{self.target} (building {state.value})", exc, 0.0)
            return
        self.emit(event)

    def _event(
        self,
        state: RunState,
        handle: LineageRun,
        inputs: Sequence[Dataset],
        outputs: Sequence[Dataset],
        job_facets: Mapping[str, JobFacet],
        run_facets: Mapping[str, RunFacet],
    ) -> RunEvent:
        facets: dict[str, RunFacet] = {}
        if handle.parent is not None:
            root = handle.root or handle.parent
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=handle.parent.run_id),
                job=parent_run.Job(
                    namespace=handle.parent.namespace or self.namespace,
                    name=handle.parent.job_name,
                ),
                root=parent_run.Root(
                    run=parent_run.RootRun(runId=root.run_id),
                    job=parent_run.RootJob(
                        namespace=root.namespace or self.namespace, name=root.job_name
                    ),
                ),
            )
        final = state is not RunState.START
        if final:
            facets.update(handle.run_facets)
        facets.update(run_facets)
        return RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=handle.run_id, facets=facets),
            job=Job(namespace=self.namespace, name=handle.job_name, facets=dict(job_facets)),
            inputs=[
                InputDataset(namespace=d.namespace, name=d.name, facets=dict(d.facets or {}))
                for d in inputs
            ],
            outputs=[
                OutputDataset(
                    namespace=d.namespace,
                    name=d.name,
                    facets=dict(d.facets or {}),
                    outputFacets=(
                        {"outputStatistics": handle.output_stats[i]}
                        if final and i in handle.output_stats
                        else {}
                    ),
                )
                for i, d in enumerate(outputs)
            ],
            producer=PRODUCER,
        )

    def close(self) -> None:
        """Release the transport (HTTP session); safe to call more than once."""
        try:
            self.client.close()
        except Exception as exc:
            log.debug("lineage: closing the transport failed: %s", exc)


def reset_failure_state() -> None:
    """Forget past emission failures (warnings, HTTP cooldowns): for tests and long-lived
    processes whose lineage server came back."""
    _HEALTH.reset()
