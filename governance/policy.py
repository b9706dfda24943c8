"""Access policy as code (`governance/policy.yaml`), enforced where people read.

A role names the tables it may read (`<zone>.<table>` patterns), what it sees of personal
columns (those the contracts classify, `governance.pii`), column masks and row filters
(`{attribute}` replaced by the role's attribute; an attribute of `*` lifts the filter).

`run_query` builds, for one role, a DuckDB session whose `gold` and `silver` schemas hold
only views of the tables the role may read, masked and filtered; the statement is checked
first (tables it names, no table functions, no file access), run, and audited.
`publish_role_gold` writes a role's own DuckDB file for BI with the same views materialised.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from governance import pii
from governance.audit import AuditEvent, record
from lake.tables import consistent_dataset, open_table
from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
MASKS = ("keep", "hash", "redact", "null", "generalise", "deny")


class AccessDenied(LakehouseError):
    """A statement the policy refuses (one line naming the rule)."""


@dataclass(frozen=True)
class Role:
    name: str
    attributes: dict[str, str]
    tables: tuple[str, ...]
    personal: str
    masks: dict[str, str] = field(default_factory=dict)
    row_filters: dict[str, str] = field(default_factory=dict)

    def may_read(self, table: str) -> bool:
        return any(fnmatch.fnmatchcase(table, pattern) for pattern in self.tables)

    def mask_of(self, table: str, column: str) -> tuple[str, str]:
        """(mask, the rule that set it)."""
        explicit = self.masks.get(f"{table}.{column}")
        if explicit:
            return explicit, f"roles.{self.name}.masks.{table}.{column}"
        if column in personal_columns():
            return self.personal, f"roles.{self.name}.personal"
        return "keep", ""

    def row_filter(self, table: str) -> str | None:
        predicate = self.row_filters.get(table)
        if not predicate:
            return None
        names = re.findall(r"\{(\w+)\}", predicate)
        if any(self.attributes.get(n) == "*" for n in names):
            return None
        return predicate.format(
            **{k: str(v).replace("'", "''") for k, v in self.attributes.items()}
        )


@cache
def personal_columns() -> frozenset[str]:
    """Silver column names that carry personal data, from the contracts."""
    return frozenset(f.silver_name for f in pii.personal_fields())


def load_policy(path: Path | None = None) -> dict[str, Role]:
    path = path or DEFAULT_POLICY
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the access policy {path}: {exc}") from None
    roles: dict[str, Role] = {}
    for name, spec in (doc or {}).get("roles", {}).items():
        personal = spec.get("personal", "deny")
        masks = {str(k): str(v) for k, v in (spec.get("masks") or {}).items()}
        for rule, mask in [("personal", personal), *masks.items()]:
            if mask not in MASKS:
                raise ConfigError(
                    f"{path}: roles.{name}.{rule} = {mask!r}: use one of {', '.join(MASKS)}"
                )
        roles[name] = Role(
            name,
            {str(k): str(v) for k, v in (spec.get("attributes") or {}).items()},
            tuple(spec.get("tables") or ()),
            personal,
            masks,
            {str(k): str(v) for k, v in (spec.get("row_filters") or {}).items()},
        )
    return roles


def role_of(settings: Settings, name: str) -> Role:
    roles = load_policy(settings.policy_path)
    if name not in roles:
        raise ConfigError(f"unknown role {name!r}: use one of {', '.join(sorted(roles))}")
    return roles[name]


# ---- the tables a session can see ----------------------------------------------------------


def silver_tables(settings: Settings) -> dict[str, str]:
    """`silver.<folder>` → Delta URI, for every silver table on disk."""
    root = Path(settings.lake_root) / "silver"
    if not settings.is_local_lake or not root.exists():
        return {}
    return {f"silver.{p.parent.name}": str(p.parent) for p in sorted(root.glob("*/_delta_log"))}


def _mask_sql(column: str, arrow_type: pa.DataType, mask: str, salt: str) -> str:
    quoted = f'"{column}"'
    if mask == "hash":
        return f"md5('{salt}' || CAST({quoted} AS VARCHAR)) AS {quoted}"
    if mask == "redact":
        return f"CASE WHEN {quoted} IS NULL THEN NULL ELSE '[redacted]' END AS {quoted}"
    if mask == "null":
        return f"CAST(NULL AS {_duck_type(arrow_type)}) AS {quoted}"
    if mask == "generalise":
        if pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type):
            return f"round({quoted}, -1) AS {quoted}"
        if pa.types.is_timestamp(arrow_type):
            return f"date_trunc('day', {quoted}) AS {quoted}"
        return f"left(CAST({quoted} AS VARCHAR), 2) || '*' AS {quoted}"
    return quoted


def _duck_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    return "VARCHAR"


@dataclass
class Session:
    con: duckdb.DuckDBPyConnection
    role: Role
    tables: dict[str, list[str]]  # visible table -> visible columns
    denied_columns: dict[str, str]  # "<table>.<column>" -> rule


def open_session(settings: Settings, role: Role) -> Session:
    """A DuckDB connection whose `gold`/`silver` schemas hold the role's masked views, with
    file access off and the configuration locked."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    salt = hashlib.sha256(f"{settings.pii_hash_key}|mask|{role.name}".encode()).hexdigest()[:32]
    sources: dict[str, tuple[str, pa.Schema]] = {}
    for name, uri in silver_tables(settings).items():
        if role.may_read(name):
            table = open_table(uri, settings)
            if table is None:
                continue
            dataset = consistent_dataset(table)
            source = "_src_" + re.sub(r"\W", "_", name)
            con.register(source, dataset)
            sources[name] = (source, dataset.schema)
    gold = settings.gold_db_path
    if gold.exists():
        con.execute(f"ATTACH '{gold}' AS _gold_src (READ_ONLY)")
        for (table_name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = '_gold_src'"
        ).fetchall():
            name = f"gold.{table_name}"
            if role.may_read(name):
                schema = (
                    con.sql(f'SELECT * FROM _gold_src.main."{table_name}" LIMIT 0')
                    .to_arrow_table()
                    .schema
                )
                sources[name] = (f'_gold_src.main."{table_name}"', schema)
    con.execute("CREATE SCHEMA gold")
    con.execute("CREATE SCHEMA silver")
    visible: dict[str, list[str]] = {}
    denied: dict[str, str] = {}
    for name, (source, schema) in sources.items():
        columns, shown = [], []
        for f in schema:
            mask, rule = role.mask_of(name, f.name)
            if mask == "deny":
                denied[f"{name}.{f.name}"] = rule
                continue
            columns.append(_mask_sql(f.name, f.type, mask, salt))
            shown.append(f.name)
        if not columns:
            continue
        predicate = role.row_filter(name)
        where = f" WHERE {predicate}" if predicate else ""
        zone, table = name.split(".", 1)
        con.execute(
            f'CREATE VIEW {zone}."{table}" AS SELECT {", ".join(columns)} FROM {source}{where}'
        )
        visible[name] = shown
    con.execute("SET python_enable_replacements = false")  # no Python variable as a table
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return Session(con, role, visible, denied)


# ---- statements ------------------------------------------------------------------------------


def _table_functions(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION":
            function = node.get("function") or {}
            found.append(str(function.get("function_name", "?")))
        for value in node.values():
            found.extend(_table_functions(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_table_functions(value))
    return found


def _base_tables(node: Any) -> list[tuple[str, str, str]]:
    """(catalog, schema, table) of every table the statement names, catalog views included."""
    found: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE":
            found.append(
                (
                    str(node.get("catalog_name") or ""),
                    str(node.get("schema_name") or ""),
                    str(node.get("table_name") or ""),
                )
            )
        for value in node.values():
            found.extend(_base_tables(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_base_tables(value))
    return found


def _cte_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(e.get("key")).lower() for e in cte_map.get("map", []))
        for value in node.values():
            names |= _cte_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _cte_names(value)
    return names


def check_statement(session: Session, sql: str) -> list[str]:
    """The tables `sql` reads, or AccessDenied naming the rule it breaks."""
    role = session.role
    serialized = json.loads(
        session.con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    )
    if serialized.get("error"):
        message = serialized.get("error_message", "not a single SELECT statement")
        raise AccessDenied(f"only SELECT statements are run through the policy ({message})")
    functions = _table_functions(serialized)
    if functions:
        raise AccessDenied(
            f"table function {functions[0]}() refused: role {role.name} reads tables only "
            "(policy: tables)"
        )
    read: list[str] = []
    ctes = _cte_names(serialized)
    for catalog, schema, table in _base_tables(serialized):
        name = ".".join(p for p in (catalog, schema, table) if p)
        if not catalog and not schema and table.lower() in ctes:
            continue  # a common table expression of the statement itself
        if name not in session.tables:
            rule = f"roles.{role.name}.tables" if not role.may_read(name) else "no such table yet"
            raise AccessDenied(f"table {name} is not readable by role {role.name} ({rule})")
        if name not in read:
            read.append(name)
    return read


@dataclass
class QueryResult:
    table: pa.Table
    tables: list[str]


def run_query(settings: Settings, role_name: str, sql: str, who: str | None = None) -> QueryResult:
    """Run `sql` as `role_name` through the policy; every outcome is audited."""
    role = role_of(settings, role_name)
    session = open_session(settings, role)
    try:
        try:
            tables = check_statement(session, sql)
            try:
                result = session.con.sql(sql).to_arrow_table()
            except duckdb.BinderException as exc:
                raise AccessDenied(_denied_column(session, tables, str(exc))) from None
            except duckdb.Error as exc:
                raise AccessDenied(f"statement failed: {str(exc).splitlines()[0]}") from None
        except AccessDenied as denied:
            record(
                settings, AuditEvent(role.name, "query", False, sql, reason=str(denied), who=who)
            )
            raise
        columns = (
            sorted(
                {f"{t}.{c}" for t in tables for c in session.tables[t]}
                & {f"{t}.{c}" for t in tables for c in result.column_names}
            )
            or result.column_names
        )
        record(
            settings,
            AuditEvent(
                role.name, "query", True, sql, tables, list(columns), result.num_rows, who=who
            ),
        )
        return QueryResult(result, tables)
    finally:
        session.con.close()


def _denied_column(session: Session, tables: list[str], message: str) -> str:
    match = re.search(r'column (?:with name )?"?(\w+)"? (?:not found|does not exist)', message)
    if match:
        column = match.group(1)
        for table in tables:
            rule = session.denied_columns.get(f"{table}.{column}")
            if rule:
                return f"column {table}.{column} is denied to role {session.role.name} ({rule})"
    return f"statement failed: {message.splitlines()[0]}"


# ---- per-role gold for BI ----------------------------------------------------------------------


def role_gold_path(settings: Settings, role: str) -> Path:
    return settings.gold_db_path.parent / "roles" / f"{role}.duckdb"


def publish_role_gold(
    settings: Settings, role_name: str, who: str | None = None
) -> tuple[Path, dict[str, int]]:
    """The role's own DuckDB file: every gold table it may read, masked and filtered, as plain
    tables (a BI connection to this file reaches nothing else). Swapped in atomically; an
    OpenLineage run (job `governance.publish.<role>`, a child job per table,
    `governance.publish.<role>.<table>`) records each gold table in, the role's table out."""
    from lakehouse.lineage import LineageEmitter, duckdb_dataset

    role = role_of(settings, role_name)
    session = open_session(settings, role)
    path = role_gold_path(settings, role_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    build = path.with_suffix(".build")
    build.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    emitter = LineageEmitter(settings)
    try:
        queries = {
            name[5:]: session.con.sql(f'SELECT * FROM gold."{name[5:]}"')
            for name in sorted(session.tables)
            if name.startswith("gold.")
        }
        with contextlib.ExitStack() as runs, duckdb.connect(str(build)) as out:
            parent = runs.enter_context(emitter.run(f"governance.publish.{role.name}", [], []))
            for table, query in queries.items():
                # one job per table, as each dbt model is: the graph stays per table
                columns = [
                    (c, str(t).lower()) for c, t in zip(query.columns, query.types, strict=True)
                ]
                published = duckdb_dataset(settings, table, path=path, columns=columns)
                lineage = runs.enter_context(
                    emitter.run(
                        f"governance.publish.{role.name}.{table}",
                        [duckdb_dataset(settings, table)],
                        [published],
                        parent=parent,
                    )
                )
                rows = query.to_arrow_table()
                out.register("rows", rows)
                out.execute(f'CREATE TABLE "{table}" AS SELECT * FROM rows')
                out.unregister("rows")
                counts[f"gold.{table}"] = rows.num_rows
                lineage.set_output_stats(published.name, rows.num_rows)
            out.execute("CHECKPOINT")
            out.close()
            os.replace(build, path)
    finally:
        session.con.close()
        emitter.close()
        build.unlink(missing_ok=True)
    record(
        settings,
        AuditEvent(
            role.name,
            "publish",
            True,
            tables=list(counts),
            rows_returned=sum(counts.values()),
            reason=str(path),
            who=who,
        ),
    )
    return path, counts


# ---- documentation ---------------------------------------------------------------------------


def column_access(table: str, columns: list[str], path: Path | None = None) -> dict[str, list[str]]:
    """{column: ['role (mask)', ...]} for the roles that may read `table`."""
    out: dict[str, list[str]] = {c: [] for c in columns}
    for role in load_policy(path).values():
        if not role.may_read(table):
            continue
        for column in columns:
            mask, _ = role.mask_of(table, column)
            if mask != "deny":
                out[column].append(role.name if mask == "keep" else f"{role.name} ({mask})")
    return out


def access_note(table: str, columns: list[str], path: Path | None = None) -> str:
    """One paragraph for an asset description: who sees which personal columns."""
    access = column_access(table, columns, path)
    readers = sorted({r.split(" ")[0] for roles in access.values() for r in roles})
    if not readers:
        return f"Access ({table}): data_engineer only."
    personal = [c for c in columns if c in personal_columns()]
    parts = [f"Access ({table}): roles {', '.join(readers)}."]
    for column in personal:
        parts.append(f"`{column}`: {', '.join(access[column]) or 'no role'}.")
    return " ".join(parts)


def policy_markdown(path: Path | None = None) -> str:
    """The access policy as a Markdown table (README): per role its attributes, tables, what
    it sees of personal columns, its masks and row filters, and the services it may use."""
    from governance.tokens import service_roles

    policy_file = path or DEFAULT_POLICY
    doc = yaml.safe_load(policy_file.read_text("utf-8")) or {}
    services = sorted(doc.get("services") or {})
    lines = [
        "| role | attributes | tables | personal columns | masks | row filters | services |",
        "|---|---|---|---|---|---|---|",
    ]
    for role in load_policy(policy_file).values():
        attributes = ", ".join(f"{k}={v}" for k, v in role.attributes.items())
        masks = ", ".join(f"`{c}`: {m}" for c, m in role.masks.items()) or "—"
        filters = ", ".join(f"`{t}`: `{f}`" for t, f in role.row_filters.items()) or "—"
        allowed = [s for s in services if role.name in service_roles(s, policy_file)]
        lines.append(
            f"| {role.name} | {attributes} | {', '.join(f'`{t}`' for t in role.tables)} | "
            f"{role.personal} | {masks} | {filters} | {', '.join(allowed) or '—'} |"
        )
    return "\n".join(lines)


def render_doc_blocks(text: str, path: Path | None = None) -> str:
    """`text` with every `<!-- <name>:begin -->…<!-- <name>:end -->` block regenerated."""
    from governance.pii import classification_markdown

    generated = {"classification": classification_markdown(), "policy": policy_markdown(path)}
    for name, body in generated.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text
