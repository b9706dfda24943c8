"""Data-quality suites for the silver and gold tables, validated with Great Expectations 1.x.

Why this shape:

* The suites are plain data (`ExpectationSpec`: a GX expectation class name + its keyword
  arguments), so they can be read, diffed and edited without importing GX, and the Dagster
  asset checks can list them cheaply. `table_suite()` builds the usual rules of a table from a
  few keyword arguments, which keeps every suite a handful of readable lines.
* `great_expectations` costs seconds to import, so it is imported lazily, on the first
  `run_suite` call, never at module import (the Dagster code location imports this module).
* GX objects (ephemeral context, pandas datasource, one dataframe asset / batch definition /
  suite per table) are built once per process and reused: a repeated check only pays for the
  validation itself. A suite edited at run time gets a new fingerprint, hence a new GX suite.
* Nothing may reach the network: analytics are disabled by environment (`GX_ANALYTICS_ENABLED`)
  and in the context config, and the context is ephemeral (in-memory stores, no data docs).

Plain Python (no Dagster import): the asset checks call `load_for_check` + `run_suite` and turn
`QualityReport.to_metadata()` into check metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CHANNELS = ("web", "app", "store")
UPDATE_TYPES = ("initial", "update", "snapshot")
COVER_STATUSES = ("ok", "out_of_stock", "no_recent_sales")

# Silver tables are read over their last DEFAULT_CHECK_DAYS date partitions (see load_for_check).
DEFAULT_CHECK_DAYS = 7
# How many offending values a failed expectation reports (GX `partial_unexpected_count`).
PARTIAL_UNEXPECTED = 5


class QualityError(LakehouseError):
    """A quality check cannot run (unknown table, missing table or gold file)."""


class NoDataYet(QualityError):
    """The table does not exist because its topic has delivered no rows yet: nothing to check
    (the check reports it and passes; it does not block what other topics feed)."""


# ---- declarative suites ------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: the class name in `great_expectations.expectations` + its kwargs.

    Kept GX-free so suites are plain, printable data. `kwargs` must be JSON-able (it is also
    the fingerprint of the suite); treat it as immutable.
    """

    expectation: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the expectation looks at (empty for table-level expectations)."""
        kw = self.kwargs
        if "column" in kw:
            return (str(kw["column"]),)
        if "column_list" in kw:
            return tuple(str(c) for c in kw["column_list"])
        if "column_A" in kw:
            return (str(kw["column_A"]), str(kw["column_B"]))
        return ()

    def describe(self) -> str:
        """`Expectation(arg=value, ...)`, for logs and reports."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args})"


def expect(expectation: str, **kwargs: Any) -> ExpectationSpec:
    """Any GX expectation by class name, e.g. `expect("ExpectTableRowCountToBeBetween", ...)`."""
    return ExpectationSpec(expectation, dict(kwargs))


def not_null(*columns: str) -> list[ExpectationSpec]:
    return [expect("ExpectColumnValuesToNotBeNull", column=c) for c in columns]


def unique(*columns: str) -> ExpectationSpec:
    """One column: ExpectColumnValuesToBeUnique; several: ExpectCompoundColumnsToBeUnique.

    Rows whose key columns are all null are ignored by GX; keys are also `not_null`-checked.
    """
    if len(columns) == 1:
        return expect("ExpectColumnValuesToBeUnique", column=columns[0])
    return expect("ExpectCompoundColumnsToBeUnique", column_list=list(columns))


def in_set(column: str, values: Iterable[object]) -> ExpectationSpec:
    """Values in a domain (nulls are not checked: pair with `not_null` when required)."""
    return expect("ExpectColumnValuesToBeInSet", column=column, value_set=list(values))


def between(
    column: str, min_value: float | None = None, max_value: float | None = None
) -> ExpectationSpec:
    """Inclusive range; either bound may be open. Nulls pass (e.g. stock_cover_days)."""
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    return expect("ExpectColumnValuesToBeBetween", **kwargs)


def length_equals(column: str, length: int) -> ExpectationSpec:
    return expect("ExpectColumnValueLengthsToEqual", column=column, value=length)


def at_least_column(column: str, other: str) -> ExpectationSpec:
    """Row-wise `column >= other` (e.g. sessions >= converted_sessions)."""
    return expect(
        "ExpectColumnPairValuesAToBeGreaterThanB", column_A=column, column_B=other, or_equal=True
    )


def table_suite(
    *,
    key: Sequence[str] = (),
    not_null_columns: Sequence[str] = (),
    unique_columns: Sequence[Sequence[str]] = (),
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    domains: Mapping[str, Iterable[object]] | None = None,
    extra: Sequence[ExpectationSpec] = (),
) -> list[ExpectationSpec]:
    """The usual rules of a table in one call.

    key: not null and unique together; not_null_columns: other required columns;
    unique_columns: other unique column sets; ranges: {column: (min, max)}, None = open;
    domains: {column: allowed values}; extra: any other `ExpectationSpec`.
    """
    specs = not_null(*key, *(c for c in not_null_columns if c not in key))
    if key:
        specs.append(unique(*key))
    specs += [unique(*cols) for cols in unique_columns]
    specs += [between(col, low, high) for col, (low, high) in (ranges or {}).items()]
    specs += [in_set(col, values) for col, values in (domains or {}).items()]
    specs += list(extra)
    return specs


SUITES: dict[str, list[ExpectationSpec]] = {
    # ---- silver: Delta tables built by lake/silver.py ----
    "silver_orders": table_suite(
        key=("order_id", "line"),
        not_null_columns=(
            "ts",
            "order_date",
            "customer_id_hash",
            "channel",
            "city",
            "country",
            "sku",
            "qty",
            "price",
            "line_amount",
        ),
        ranges={
            "line": (1, None),
            "qty": (1, 10_000),
            "price": (0, None),
            "line_amount": (0, None),
        },
        domains={"channel": CHANNELS},
        extra=[length_equals("country", 2)],
    ),
    "silver_sessions": table_suite(
        key=("session_id",),
        not_null_columns=("ts", "session_date", "customer_id_hash", "channel", "city"),
        domains={"channel": CHANNELS},
    ),
    "silver_inventory": table_suite(
        key=("sku", "store_id", "ts", "update_type"),
        not_null_columns=("update_date", "on_hand", "on_order", "sold_qty", "received_qty"),
        ranges={
            "on_hand": (0, None),
            "on_order": (0, None),
            "sold_qty": (0, None),
            "received_qty": (0, None),
        },
        domains={"update_type": UPDATE_TYPES},
    ),
    "silver_inventory_current": table_suite(
        key=("sku", "store_id"),
        not_null_columns=("ts", "on_hand", "on_order"),
        ranges={"on_hand": (0, None), "on_order": (0, None)},
    ),
    # ---- gold: dbt models in the DuckDB gold file (column names: dbt/models/gold/*.sql) ----
    "daily_sales": table_suite(
        key=("d", "city", "sku"),
        not_null_columns=("units", "revenue"),
        ranges={"units": (0, None), "revenue": (0, None)},
    ),
    "top_sku_7d": table_suite(
        key=("sku",),
        not_null_columns=(
            "units_7d",
            "revenue_7d",
            "rank_units",
            "rank_revenue",
            "window_start",
            "window_end",
        ),
        unique_columns=(("rank_units",), ("rank_revenue",)),
        ranges={
            "units_7d": (0, None),
            "revenue_7d": (0, None),
            "rank_units": (1, None),
            "rank_revenue": (1, None),
        },
        extra=[at_least_column("window_end", "window_start")],
    ),
    "conversion_by_channel": table_suite(
        key=("d", "channel"),
        not_null_columns=("sessions", "converted_sessions", "orders"),
        ranges={
            "sessions": (0, None),
            "converted_sessions": (0, None),
            "orders": (0, None),
            "conversion_rate": (0, 1),  # null when sessions = 0
        },
        domains={"channel": CHANNELS},
        extra=[at_least_column("sessions", "converted_sessions")],
    ),
    "stock_cover_days": table_suite(
        key=("sku", "store_id"),
        not_null_columns=("on_hand", "avg_daily_units_7d", "cover_status"),
        ranges={
            "on_hand": (0, None),
            "avg_daily_units_7d": (0, None),
            "stock_cover_days": (0, None),  # null = no recent sales (infinite cover)
        },
        domains={"cover_status": COVER_STATUSES},
    ),
}


# ---- reports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedExpectation:
    """One failed (or unevaluable) expectation and what GX observed."""

    expectation: str  # class name as written in SUITES, e.g. "ExpectColumnValuesToNotBeNull"
    columns: tuple[str, ...]
    kwargs: dict[str, Any]
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected: list[Any] = field(default_factory=list)
    observed_value: Any = None  # aggregate expectations (row count, min, ...)
    error: str | None = None  # GX could not evaluate it (e.g. the column does not exist)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expectation": self.expectation,
            "columns": list(self.columns),
            "kwargs": _jsonable(self.kwargs),
        }
        if self.unexpected_count is not None:
            out["unexpected_count"] = self.unexpected_count
        if self.unexpected_percent is not None:
            out["unexpected_percent"] = round(self.unexpected_percent, 4)
        if self.partial_unexpected:
            out["partial_unexpected"] = _jsonable(self.partial_unexpected)
        if self.observed_value is not None:
            out["observed_value"] = _jsonable(self.observed_value)
        if self.error is not None:
            out["error"] = self.error
        return out

    def summary(self) -> str:
        where = ",".join(self.columns) or "table"
        if self.error is not None:
            return f"{self.expectation}[{where}]: not evaluated ({self.error})"
        if self.unexpected_count is not None:
            sample = _jsonable(self.partial_unexpected[:3])
            return f"{self.expectation}[{where}]: {self.unexpected_count} unexpected, e.g. {sample}"
        return f"{self.expectation}[{where}]: observed {_jsonable(self.observed_value)}"


@dataclass(frozen=True)
class QualityReport:
    """Outcome of one suite on one frame; `to_metadata()` is plain JSON for Dagster."""

    table: str
    success: bool
    evaluated: int
    failed: list[FailedExpectation]
    rows: int
    seconds: float

    def to_metadata(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "success": self.success,
            "rows_checked": self.rows,
            "expectations_evaluated": self.evaluated,
            "expectations_failed": len(self.failed),
            "failed": [f.to_dict() for f in self.failed],
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        head = (
            f"{self.table}: {self.evaluated - len(self.failed)}/{self.evaluated} expectations "
            f"passed on {self.rows} rows in {self.seconds:.2f}s"
        )
        return "; ".join([head, *(f.summary() for f in self.failed)])

    def failed_expectations(self) -> set[str]:
        return {f.expectation for f in self.failed}

    def assertions(self) -> list[tuple[str, str | None, bool]]:
        """(expectation, column or None, passed) for every expectation of the suite: the
        OpenLineage data-quality assertions of this validation."""
        failed = {(f.expectation, f.columns) for f in self.failed}
        return [
            (s.expectation, ",".join(s.columns) or None, (s.expectation, s.columns) not in failed)
            for s in suite_for(self.table)
        ]


def _jsonable(value: Any) -> Any:
    """GX observations (numpy scalars, timestamps, tuples, NaN) -> plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp / NaT
    if callable(isoformat):
        text = isoformat()
        return None if text == "NaT" else text
    return str(value)


# ---- Great Expectations runtime ----------------------------------------------------------


class _GxRuntime:
    """Per-process GX objects: one ephemeral context, one pandas datasource, and per table a
    dataframe asset + whole-dataframe batch definition + suite (keyed by suite fingerprint)."""

    def __init__(self) -> None:
        # Before the import: GX reads it when building contexts. Forced, not setdefault: the
        # lakehouse must work offline whatever the caller's environment says.
        os.environ["GX_ANALYTICS_ENABLED"] = "False"
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.gx = gx
        config = DataContextConfig(
            analytics_enabled=False,
            # tqdm bars would clutter Dagster's captured stderr
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        )
        self.context = gx.get_context(project_config=config, mode="ephemeral")
        self.datasource = self.context.data_sources.add_pandas("lakehouse_quality")
        self._batch_definitions: dict[str, Any] = {}
        self._suites: dict[tuple[str, str], Any] = {}

    def batch_definition(self, table: str) -> Any:
        if table not in self._batch_definitions:
            asset = self.datasource.add_dataframe_asset(name=table)
            self._batch_definitions[table] = asset.add_batch_definition_whole_dataframe(
                f"{table}_whole"
            )
        return self._batch_definitions[table]

    def suite(self, table: str, specs: Sequence[ExpectationSpec]) -> Any:
        fingerprint = _fingerprint(specs)
        key = (table, fingerprint)
        if key not in self._suites:
            expectations = []
            for index, spec in enumerate(specs):
                cls = getattr(self.gx.expectations, spec.expectation, None)
                if cls is None:
                    raise QualityError(
                        f"suite {table!r}: {spec.expectation!r} is not an expectation of "
                        "great_expectations.expectations; fix the name in lake/quality.py SUITES"
                    )
                # meta carries the spec index: GX does not return results in suite order
                expectations.append(cls(**dict(spec.kwargs), meta={"lakehouse_spec": index}))
            suite = self.gx.ExpectationSuite(
                name=f"{table}-{fingerprint}", expectations=expectations
            )
            self._suites[key] = self.context.suites.add(suite)
        return self._suites[key]


_RUNTIME: _GxRuntime | None = None
# GX contexts are not thread-safe; Dagster may run checks in threads of one process.
_LOCK = threading.RLock()


def _runtime() -> _GxRuntime:
    global _RUNTIME
    if _RUNTIME is None:
        started = time.monotonic()
        _RUNTIME = _GxRuntime()
        log.debug("Great Expectations ready in %.1fs", time.monotonic() - started)
    return _RUNTIME


def _fingerprint(specs: Sequence[ExpectationSpec]) -> str:
    text = json.dumps(
        [[s.expectation, _jsonable(s.kwargs)] for s in specs], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _error_message(exception_info: Any) -> str | None:
    """GX puts either {raised_exception, exception_message} or {metric_id: {...}} here."""
    if not isinstance(exception_info, Mapping):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "exception")
    for value in exception_info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception")
    return None


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """A consolidated copy of `frame`, narrow numeric columns widened to int64 / float64.

    GX's pandas `column_values.between` metric is vectorised only for `int64`/`float64`
    columns; any other numeric dtype (silver `qty`/`line` are int32) falls back to a Python
    call per row, ~3x slower on the whole suite. Nullable extension dtypes become float64
    (NaN is what GX treats as missing).
    """
    import pandas as pd

    changes: dict[str, str] = {}
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
                changes[str(name)] = "float64"
        elif dtype.kind in "iu" and dtype != "int64":
            changes[str(name)] = "float64" if dtype == "uint64" else "int64"
        elif dtype.kind == "f" and dtype != "float64":
            changes[str(name)] = "float64"
    # One deep copy up front also consolidates pandas blocks: GX copies the frame for every
    # metric domain, and each copy of an unconsolidated frame re-consolidates (~2/3 of the
    # validation time on a 100k-row silver_orders frame).
    return (frame.astype(changes) if changes else frame).copy()


def suite_for(table_name: str) -> list[ExpectationSpec]:
    try:
        return SUITES[table_name]
    except KeyError:
        raise QualityError(
            f"no quality suite for {table_name!r}: known tables are {', '.join(sorted(SUITES))}"
        ) from None


def run_suite(table_name: str, frame: pd.DataFrame) -> QualityReport:
    """Validate `frame` against `SUITES[table_name]` with GX; never raises on bad data.

    An expectation GX cannot evaluate (typically a renamed column) counts as failed, with
    its error message, so a schema drift shows up in the report instead of crashing the check.
    The first call in a process imports GX (seconds); later calls only validate.
    """
    specs = suite_for(table_name)
    started = time.monotonic()
    frame = _prepare(frame)
    with _LOCK:
        runtime = _runtime()
        suite = runtime.suite(table_name, specs)
        batch = runtime.batch_definition(table_name).get_batch(
            batch_parameters={"dataframe": frame}
        )
        result = batch.validate(
            suite,
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": PARTIAL_UNEXPECTED,
            },
        )

    failed: list[FailedExpectation] = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        index = (config.meta or {}).get("lakehouse_spec") if config is not None else None
        spec = (
            specs[index]
            if isinstance(index, int)
            else ExpectationSpec(getattr(config, "type", "?"))
        )
        observed = item.result or {}
        count = observed.get("unexpected_count")
        percent = observed.get("unexpected_percent")
        failed.append(
            FailedExpectation(
                expectation=spec.expectation,
                columns=spec.columns,
                kwargs=dict(spec.kwargs),
                unexpected_count=int(count) if count is not None else None,
                unexpected_percent=float(percent) if percent is not None else None,
                partial_unexpected=list(observed.get("partial_unexpected_list") or []),
                observed_value=observed.get("observed_value"),
                error=_error_message(item.exception_info),
            )
        )
    failed.sort(key=lambda f: (f.expectation, f.columns))
    report = QualityReport(
        table=table_name,
        success=bool(result.success) and not failed,
        evaluated=len(result.results),
        failed=failed,
        rows=len(frame),
        seconds=time.monotonic() - started,
    )
    log.info("%s", report.summary())
    return report


# ---- loading -----------------------------------------------------------------------------


def load_for_check(
    settings: Settings, table_name: str, *, days: int | None = DEFAULT_CHECK_DAYS
) -> pd.DataFrame:
    """The rows a quality check validates, as pandas.

    Silver (Delta, `settings.storage_options`): the date-partitioned tables are read over
    their last `days` partitions, counted back from the newest partition present (not from
    today, so a replay of old data checks the same rows), which keeps a check fast however
    old the lake is. Key uniqueness stays exact within that window because every silver key
    determines its date partition (the date is derived from the key's event ts), so
    duplicates always share a partition. `days=None` reads the whole table. The small
    unpartitioned silver_inventory_current is always read whole.

    Gold: the whole table, from the published DuckDB file opened read-only.
    """
    from lake.gold import GOLD_TABLES
    from lake.tables import SILVER_TABLES

    if days is not None and days < 1:
        raise QualityError(f"days={days} is invalid: use a positive number of days, or None")
    if table_name in SILVER_TABLES:
        return _load_silver(settings, table_name, days)
    if table_name in GOLD_TABLES or table_name in SUITES:  # any other suite: a gold table
        return _load_gold(settings, table_name)
    raise QualityError(
        f"cannot load {table_name!r} for a quality check: not a silver or gold table"
    )


def _load_silver(settings: Settings, table_name: str, days: int | None) -> pd.DataFrame:
    from lake.silver import SPECS
    from lake.tables import open_table, silver_uri

    uri = silver_uri(settings, table_name)
    table = open_table(uri, settings)
    if table is None:
        raise NoDataYet(f"{table_name}: no data yet (its topic has delivered no rows to {uri})")
    spec = SPECS.get(table_name)
    if spec is None or days is None:
        return table.to_pandas()
    column = spec.partition_by
    dates = [p[column] for p in table.partitions() if p.get(column)]
    if not dates:
        return table.to_pandas()
    newest = dt.date.fromisoformat(max(dates))
    since = newest - dt.timedelta(days=days - 1)
    return table.to_pandas(filters=[(column, ">=", since)])


def _load_gold(settings: Settings, table_name: str) -> pd.DataFrame:
    import duckdb

    from lake.gold import read_gold

    quoted = '"' + table_name.replace('"', '""') + '"'
    try:
        return read_gold(settings, f"SELECT * FROM {quoted}").to_pandas()
    except duckdb.CatalogException:
        raise QualityError(
            f"the gold database has no table {table_name!r}: run the gold assets (dbt build)"
        ) from None
