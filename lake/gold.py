"""The gold layer: the dbt-duckdb project in `dbt/`, run as a subprocess, published atomically.

dbt reads the silver Delta tables through dbt-duckdb's `delta` plugin (the `deltalake`
package; no DuckDB extension) and writes the KPI tables into one DuckDB file,
`settings.gold_db_path` (`<lake>/gold/gold.duckdb` by default). BI tools open that file
read-only, so it is never written in place: a run builds `gold.duckdb.build` (a copy of the
current file, so a partial selection keeps the other tables), and `os.replace` swaps it in
only when dbt succeeded. Builds are serialised by an advisory lock (`gold.duckdb.lock`).
Every published table is also written as Parquet, `<lake>/gold/<table>/<table>.parquet`, for
tools that read a folder rather than DuckDB (Tableau, Power BI, Spark); each file is written
under a hidden name first and renamed over the old one (readers skip names starting with '.').

Plain Python (no Dagster import): the Dagster assets and the CLI call these functions.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from lake.tables import silver_uri
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

log = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
DEFAULT_TARGET_DIR = DBT_PROJECT_DIR / "target"
MANIFEST_PATH = DEFAULT_TARGET_DIR / "manifest.json"
GOLD_TABLES = (
    "daily_sales",
    "top_sku_7d",
    "conversion_by_channel",
    "stock_cover_days",
    "fraud_kpis",
)
# The silver tables declared as dbt sources (dbt/models/staging/_sources.yml); the other silver
# tables (supply-chain topics, transactions, ...) are read by Python assets, not by dbt, and
# the use-case tables dbt reads declare an empty schema for when they do not exist yet.
DBT_SILVER_SOURCES = (
    "silver_orders",
    "silver_sessions",
    "silver_inventory",
    "silver_inventory_current",
)

# dbt sub-commands that never open the DuckDB file; every other one runs on a build copy.
_NO_DATABASE_COMMANDS = frozenset({"parse", "ls", "list", "clean", "deps", "init", "docs serve"})
_WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "run-operation"})
_FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
_TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?\s+")


class GoldBuildError(LakehouseError):
    """dbt failed (a model, a test, or the project itself); the published gold is unchanged."""


def dbt_executable() -> Path:
    """The `dbt` script of this interpreter's environment, as an absolute path."""
    # Not resolved: a venv's python is a symlink to the base interpreter, dbt is not beside it.
    path = Path(sys.executable).absolute().parent / "dbt"
    if not path.exists():
        raise LakehouseError(
            f"dbt is not installed next to {sys.executable}: install the project "
            "(pip install -e . -c constraints.txt) in this environment"
        )
    return path


def gold_db_path(settings: Settings) -> Path:
    """Absolute path of the published gold DuckDB file."""
    return settings.gold_db_path.expanduser().resolve()


def build_db_path(settings: Settings) -> Path:
    """The sibling file a dbt run writes before it is published: `<gold>.build`."""
    gold = gold_db_path(settings)
    return gold.with_name(gold.name + ".build")


def dbt_env(settings: Settings, gold_db: Path | None = None) -> dict[str, str]:
    """Environment variables the dbt project needs (to add to `os.environ`).

    `gold_db` is the DuckDB file dbt writes. Default: the build file `gold.duckdb.build`,
    never the published one, so a dbt run outside `gold_build` cannot write under a BI
    reader (it just publishes nothing); keeping one path also keeps dbt's partial parsing
    valid between `dbt parse` and the builds.
    """
    lake_root = settings.lake_root
    if settings.is_local_lake:
        lake_root = str(Path(lake_root).expanduser().resolve())
    env = {
        "DBT_LAKEHOUSE_LAKE_ROOT": lake_root,
        "DBT_LAKEHOUSE_GOLD_DB": str(gold_db if gold_db is not None else build_db_path(settings)),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_USE_COLORS": "False",
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
        "DBT_LAKEHOUSE_OUR_BRAND": settings.sentiment_brands[0],
        "DBT_LAKEHOUSE_MEMORY_LIMIT": settings.gold_memory_limit,
    }
    # deltalake (inside the dbt process) reads the AWS_* variables for an s3:// lake root.
    env.update(settings.storage_options)
    return env


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _build_lock(gold: Path) -> Iterator[None]:
    lock_path = gold.with_name(gold.name + ".lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(build: Path, gold: Path) -> None:
    # Fold any write-ahead log into the file: only the main file is renamed.
    with duckdb.connect(str(build)) as con:
        con.execute("CHECKPOINT")
    if _wal(build).exists():
        raise LakehouseError(f"{build} still has a write-ahead log after CHECKPOINT: not published")
    _fsync(build)
    # A WAL left by some earlier writer of the published file must not be replayed onto
    # the new file.
    _remove(_wal(gold))
    os.replace(build, gold)
    _fsync(gold.parent)


def gold_parquet_uri(settings: Settings, table: str) -> str:
    """Where table `table` of the gold file is published as Parquet (a folder per table)."""
    return f"{settings.table_uri('gold', table)}/{table}.parquet"


def publish_parquet(settings: Settings, gold: Path | None = None) -> list[str]:
    """Write every table of the published gold file as Parquet under `<lake>/gold/<table>/`
    (hidden temporary name, then a rename over the previous file). Returns the tables."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    gold = gold or gold_db_path(settings)
    fs, root = pafs.FileSystem.from_uri(settings.table_uri("gold", "x"))
    root = root.rsplit("/", 1)[0]
    with duckdb.connect(str(gold), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        for table in tables:
            data = con.table(f'"{table}"').to_arrow_table()
            folder = f"{root}/{table}"
            fs.create_dir(folder, recursive=True)
            hidden = f"{folder}/.{table}.parquet.tmp"
            pq.write_table(data, hidden, filesystem=fs)
            fs.move(hidden, f"{folder}/{table}.parquet")
    return tables


@contextmanager
def gold_build(settings: Settings, *, publish: bool = True) -> Iterator[Path]:
    """Yield the path dbt must write (`gold.duckdb.build`); publish it on success.

    The build file starts as a copy of the published gold file when there is one. On a
    normal exit it is checkpointed and renamed over `gold.duckdb` (atomic: readers see the
    old file or the new one); on an exception, or with `publish=False` (a command that only
    reads, such as `dbt test` or `dbt docs generate`), it is deleted and the published file
    is untouched. Concurrent builds of the same gold file wait for each other.
    """
    gold = gold_db_path(settings)
    gold.parent.mkdir(parents=True, exist_ok=True)
    build = build_db_path(settings)
    with _build_lock(gold):
        _remove(build, _wal(build))
        if gold.exists():
            shutil.copyfile(gold, build)
        try:
            yield build
        except BaseException:
            _remove(build, _wal(build))
            raise
        try:
            if publish and build.exists():
                _publish(build, gold)
                publish_parquet(settings, gold)
        finally:
            _remove(build, _wal(build))


def _failure_summary(command: str, run_results: Path | None, output: str) -> str:
    """One line naming what failed, from run_results.json or else from dbt's output."""
    failures: list[str] = []
    try:
        results = json.loads(run_results.read_text())["results"] if run_results else []
    except (OSError, ValueError, KeyError):
        results = []
    for result in results:
        if result.get("status") not in _FAILED_STATUSES:
            continue
        # unique_id: <resource>.<project>.<name>[.<hash of a test>]
        parts = str(result.get("unique_id", "?")).split(".")
        resource, name = parts[0], parts[2] if len(parts) > 2 else parts[-1]
        message = " ".join(str(result.get("message") or "").split())
        failures.append(f"{resource} {name} ({result['status']}: {message[:200]})")
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        skipped = sum(1 for result in results if result.get("status") == "skipped")
        skips = f", {skipped} downstream node(s) skipped" if skipped else ""
        return (
            f"dbt {command} failed: {failures[0]}{more}{skips}; see {DBT_PROJECT_DIR}/logs/dbt.log"
        )
    lines = [_TIMESTAMP.sub("", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    marker = next((i for i, line in enumerate(lines) if "Encountered an error" in line), None)
    if marker is not None and marker + 1 < len(lines):
        detail = " ".join(lines[marker + 1 : marker + 5])
    else:
        errors = [line for line in lines if "error" in line.lower()]
        detail = errors[0] if errors else (lines[-1] if lines else "no output")
    return f"dbt {command} failed: {detail[:400]}; see {DBT_PROJECT_DIR}/logs/dbt.log"


def _run(
    settings: Settings,
    args: Sequence[str],
    *,
    gold_db: Path | None,
    target_path: Path | None,
    command: str,
) -> subprocess.CompletedProcess[str]:
    target = Path(target_path or DEFAULT_TARGET_DIR).resolve()
    cmd = [
        str(dbt_executable()),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
    ]
    env = {**os.environ, **dbt_env(settings, gold_db)}
    run_results = target / "run_results.json" if gold_db is not None else None
    if run_results is not None:  # under the build lock: no other build writes this target
        _remove(run_results)
    result = subprocess.run(
        cmd, cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = result.stdout + "\n" + result.stderr
        raise GoldBuildError(_failure_summary(command, run_results, output))
    return result


def run_dbt(
    settings: Settings, args: Sequence[str], *, target_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `dbt <args>` on the project and return the finished process.

    Commands that open the DuckDB file run on the build copy of `gold_build`: build, run,
    seed, snapshot and run-operation publish it on success; the others (test, docs
    generate, show, compile, debug, ...) leave the published file untouched. Raises
    `GoldBuildError`, with a one-line message naming the failed model or test, when dbt
    exits non-zero.
    `target_path` (default dbt/target, where `dbt docs serve` and dagster-dbt look) isolates
    the manifest, run results and docs of concurrent runs of different gold files.
    `docs generate` gets `--no-compile` while the lake has no silver tables yet.
    """
    if not args:
        raise LakehouseError("run_dbt needs a dbt command, e.g. ['build']")
    args = list(args)
    command = " ".join(a for a in args[:2] if not a.startswith("-"))
    if command == "docs generate" and "--no-compile" not in args and not _silver_present(settings):
        # Compiling loads every silver source: a fresh lake still gets its KPI glossary.
        log.info(
            "silver tables missing under %s: dbt docs generate --no-compile", settings.lake_root
        )
        args.append("--no-compile")
    if args[0] in _NO_DATABASE_COMMANDS or command in _NO_DATABASE_COMMANDS:
        return _run(settings, args, gold_db=None, target_path=target_path, command=command)
    with gold_build(settings, publish=args[0] in _WRITING_COMMANDS) as build:
        return _run(settings, args, gold_db=build, target_path=target_path, command=command)


def prepare_manifest(settings: Settings | None = None) -> Path:
    """Run `dbt parse` so that dbt/target/manifest.json exists (dagster-dbt loads it at import).

    Parsing opens neither the lake nor the gold file: any settings do.
    """
    run_dbt(settings if settings is not None else Settings.from_env(), ["parse"])
    return MANIFEST_PATH


def _silver_present(settings: Settings) -> bool:
    options = settings.storage_options or None
    return all(
        DeltaTable.is_deltatable(silver_uri(settings, name), storage_options=options)
        for name in DBT_SILVER_SOURCES
    )


def generate_docs(settings: Settings, *, target_path: Path | None = None) -> Path:
    """Build the dbt docs site (the KPI glossary) and return its index.html.

    Same as `run_dbt(settings, ["docs", "generate"])`: compiled SQL and silver column types
    are included when every silver table exists, otherwise the site is built with
    `--no-compile` (compiling loads the sources). Serve it with `dbt docs serve`.
    """
    run_dbt(settings, ["docs", "generate"], target_path=target_path)
    return Path(target_path or DEFAULT_TARGET_DIR).resolve() / "index.html"


def read_gold(
    settings: Settings, sql: str, params: Sequence[object] | Mapping[str, object] | None = None
) -> pa.Table:
    """Run one query on the published gold file, opened read-only."""
    gold = gold_db_path(settings)
    if not gold.exists():
        raise LakehouseError(
            f"the gold database {gold} does not exist yet: materialise the gold assets "
            "(dbt build) first"
        )
    with duckdb.connect(str(gold), read_only=True) as con:
        return con.sql(sql, params=params).to_arrow_table()


def gold_contract_violations(manifest_path: Path = MANIFEST_PATH) -> list[str]:
    """One line per gold dbt model that is not a BI-safe contract: its contract not enforced, a
    column without a declared data_type, or an owner (meta owner/domain/team/cost_center)
    other than lakehouse/ownership.py's for the model's name."""
    from lakehouse.ownership import owner_of

    manifest = json.loads(manifest_path.read_text("utf-8"))
    out: list[str] = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or not node["original_file_path"].startswith(
            "models/gold"
        ):
            continue
        name = node["name"]
        if not node["config"].get("contract", {}).get("enforced"):
            out.append(f"gold model {name}: contract not enforced (set contract.enforced: true)")
        untyped = [c for c, col in node["columns"].items() if not col.get("data_type")]
        if untyped:
            out.append(f"gold model {name}: column(s) without data_type: {', '.join(untyped)}")
        if not node["columns"]:
            out.append(f"gold model {name}: no columns declared (an enforced contract needs all)")
        owner = owner_of(name)
        expected = {"owner": owner.contact, **owner.tags()}
        meta = node["config"].get("meta", {})
        for key, value in expected.items():
            if meta.get(key) != value:
                out.append(
                    f"gold model {name}: meta {key} is {meta.get(key)!r}, lakehouse/ownership.py "
                    f"says {value!r} (dbt/dbt_project.yml +meta)"
                )
    return out


# ---- lineage: one OpenLineage job per dbt model ------------------------------------------

_DBT_STATES = {"success": "COMPLETE", "pass": "COMPLETE", "warn": "COMPLETE"}


def _source_dataset(settings: Settings, source: Mapping[str, Any]) -> Any:
    """A dbt source as the Delta table it reads, by its storage URI."""
    from lakehouse.lineage import delta_dataset

    path = source["config"].get("meta", {}).get("delta_table_path") or source["meta"].get(
        "delta_table_path", ""
    )
    # rendered with the lake root at parse time: keep <zone>/<table> (or the zone table
    # `_usage`), relative to this process's lake root
    parts = str(path).rstrip("/").split("/")
    relative = parts[-1] if parts[-1].startswith("_") else "/".join(parts[-2:])
    key = (source["config"].get("meta", {}).get("dagster") or {}).get("asset_key")
    name = key[0] if key else f"silver_{source['name']}"
    return delta_dataset(settings, name, relative)


def _dbt_inputs(
    settings: Settings, manifest: Mapping[str, Any], unique_id: str, seen: set[str] | None = None
) -> list[Any]:
    """The datasets a model reads: its sources (the silver / gold Delta tables by their storage
    URI) and the tables of the refs it selects from; ephemeral refs (staging CTEs) are walked
    through to what they read."""
    from lakehouse.lineage import duckdb_dataset

    seen = set() if seen is None else seen
    node = manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
    out: list[Any] = []
    for parent in node.get("depends_on", {}).get("nodes", []):
        if parent in seen:
            continue
        seen.add(parent)
        if parent.startswith("source."):
            out.append(_source_dataset(settings, manifest["sources"][parent]))
        else:
            upstream = manifest["nodes"][parent]
            if upstream["config"].get("materialized") == "ephemeral":
                out.extend(_dbt_inputs(settings, manifest, parent, seen))
            else:
                out.append(duckdb_dataset(settings, upstream["name"]))
    return out


Relation = tuple[str, str, str]  # (database, schema, table) as the compiled SQL names it


@lru_cache(maxsize=512)
def sql_column_sources(
    sql: str, columns: tuple[str, ...]
) -> tuple[tuple[str, tuple[tuple[Relation, str], ...]], ...]:
    """Per output column of a compiled SELECT, the (relation, column) pairs it reads, traced
    through CTEs and sub-queries by sqlglot (DuckDB dialect). A column sqlglot cannot trace to
    a table (a `SELECT *` over an unknown schema, a constant) gets no mapping rather than a
    wrong one. Cached: the 15-minute refresh compiles the same SQL again."""
    from sqlglot import exp, parse_one
    from sqlglot.errors import SqlglotError
    from sqlglot.lineage import lineage

    expression = parse_one(sql, dialect="duckdb")
    traced: list[tuple[str, tuple[tuple[Relation, str], ...]]] = []
    for column in columns:
        try:
            root = lineage(column, expression, None, dialect="duckdb")
        except (SqlglotError, KeyError, ValueError):
            continue
        leaves = {
            (
                (n.source.catalog.lower(), n.source.db.lower(), n.source.name.lower()),
                n.name.rsplit(".", 1)[-1].lower(),
            )
            for n in root.walk()
            if not n.downstream and isinstance(n.source, exp.Table)
        }
        if leaves:
            traced.append((column, tuple(sorted(leaves))))
    return tuple(traced)


def _relations(settings: Settings, manifest: Mapping[str, Any]) -> dict[Relation, Any]:
    """Every relation a compiled gold model may select from, as its OpenLineage dataset."""
    from lakehouse.lineage import duckdb_dataset

    found: dict[Relation, Any] = {}
    for source in manifest["sources"].values():
        table = (source.get("identifier") or source["name"]).lower()
        key = (str(source.get("database") or "").lower(), source["schema"].lower(), table)
        found[key] = _source_dataset(settings, source)
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "seed") and (
            node["config"].get("materialized") != "ephemeral"
        ):
            table = (node.get("alias") or node["name"]).lower()
            key = (str(node.get("database") or "").lower(), node["schema"].lower(), table)
            found[key] = duckdb_dataset(settings, node["name"])
    return found


def column_lineage(
    compiled_sql: str, columns: Sequence[str], relations: Mapping[Relation, Any]
) -> dict[str, list[tuple[Any, str]]]:
    """{output column: [(input dataset, input column)]} of one compiled model."""
    mapping: dict[str, list[tuple[Any, str]]] = {}
    for column, sources in sql_column_sources(compiled_sql, tuple(columns)):
        pairs = [(relations[rel], col) for rel, col in sources if rel in relations]
        if pairs:
            mapping[column] = pairs
    return mapping


def _row_counts(gold_db: Path | None, tables: Sequence[str]) -> dict[str, int]:
    if gold_db is None or not gold_db.exists() or not tables:
        return {}
    con = duckdb.connect(str(gold_db), read_only=True)
    try:
        present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return {
            t: int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # type: ignore[index]
            for t in tables
            if t in present
        }
    finally:
        con.close()


def emit_gold_lineage(
    settings: Settings,
    emitter: Any,
    manifest_path: Path,
    run_results_path: Path | None,
    parent: Any = None,
    gold_db: Path | None = None,
    compiled_manifest_path: Path | None = None,
) -> int:
    """START + COMPLETE/FAIL for every gold model dbt ran (run_results.json), job `dbt.<model>`,
    inputs from its refs and sources (the dbt manifest), output the gold DuckDB table with the
    contract's schema facet and a data-quality-assertions facet from the model's dbt tests.

    Read from dbt's own artifacts instead of openlineage-dbt's processor: that processor wants
    a dbt adapter it knows (duckdb is not one) and its own profile parsing; the manifest gives
    the same graph. Output row counts: dbt's when the adapter reports one, else counted in
    `gold_db` (the file dbt just built). Column lineage: each output column's input columns,
    traced in the model's compiled SQL (`compiled_manifest_path`, the build's own manifest).
    Returns the number of model jobs emitted."""
    from openlineage.client.facet_v2 import data_quality_assertions_dataset

    from lakehouse.lineage import column_lineage_facet, duckdb_dataset, typed_schema_facet

    manifest = json.loads(manifest_path.read_text("utf-8"))
    compiled: dict[str, str] = {}
    if compiled_manifest_path is not None and compiled_manifest_path.exists():
        built = json.loads(compiled_manifest_path.read_text("utf-8"))
        compiled = {
            u: n["compiled_code"] for u, n in built["nodes"].items() if n.get("compiled_code")
        }
    relations = _relations(settings, manifest) if compiled else {}
    results: dict[str, Mapping[str, Any]] = {}
    if run_results_path is not None and run_results_path.exists():
        for result in json.loads(run_results_path.read_text("utf-8"))["results"]:
            results[result["unique_id"]] = result
    tests_of: dict[str, list[tuple[str, str | None, bool]]] = {}
    for uid, result in results.items():
        node = manifest["nodes"].get(uid)
        if node is None or node["resource_type"] != "test":
            continue
        attached = node.get("attached_node") or next(iter(node["depends_on"]["nodes"]), None)
        name = (node.get("test_metadata") or {}).get("name") or node["name"]
        column = node.get("column_name")
        tests_of.setdefault(attached, []).append((name, column, result["status"] != "fail"))
    counts = _row_counts(
        gold_db, [manifest["nodes"][u]["name"] for u in results if u.startswith("model.")]
    )
    emitted = 0
    for uid, result in results.items():
        node = manifest["nodes"].get(uid)
        if node is None or node["resource_type"] != "model":
            continue
        if node["config"].get("materialized") == "ephemeral":
            continue
        columns = [(c, col.get("data_type") or "unknown") for c, col in node["columns"].items()]
        output = duckdb_dataset(settings, node["name"])
        facets = dict(output.facets or {})
        if columns:
            facets["schema"] = typed_schema_facet(columns)
        if uid in tests_of:
            facets["dataQualityAssertions"] = (
                data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=[
                        data_quality_assertions_dataset.Assertion(
                            assertion=name, success=ok, column=column
                        )
                        for name, column, ok in tests_of[uid]
                    ]
                )
            )
        if uid in compiled:
            mapping = column_lineage(compiled[uid], [c for c, _ in columns], relations)
            if mapping:
                facets["columnLineage"] = column_lineage_facet(mapping)
        output = type(output)(namespace=output.namespace, name=output.name, facets=facets)
        inputs = _dbt_inputs(settings, manifest, uid)
        failed = _DBT_STATES.get(result["status"]) is None
        try:
            with emitter.run(f"dbt.{node['name']}", inputs, [output], parent=parent) as handle:
                if failed:
                    raise LakehouseError(
                        f"dbt {result['status']}: {(result.get('message') or '')[:500]}"
                    )
                rows = (result.get("adapter_response") or {}).get("rows_affected")
                rows = counts.get(node["name"]) if rows is None or rows < 0 else int(rows)
                if rows is not None:
                    handle.set_output_stats(node["name"], rows)
        except LakehouseError:
            pass  # the FAIL event is the outcome; dbt's own error is raised by the caller
        emitted += 1
    return emitted
