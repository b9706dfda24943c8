"""The `_audit` Delta table: one append-only row per query, per-role publish, erasure, denial.

The table is created with `delta.appendOnly = true`, so Delta itself refuses a DELETE or an
UPDATE of its rows. Statements are stored as their SHA-256, never as text (a WHERE clause may
quote a personal value).
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from deltalake import write_deltalake

from lake.tables import consistent_dataset, open_table
from lakehouse.config import Settings

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("who", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),  # query | publish | erasure | request
        pa.field("statement_sha256", pa.string()),
        pa.field("tables", pa.list_(pa.string())),
        pa.field("columns", pa.list_(pa.string())),
        pa.field("rows_returned", pa.int64(), nullable=False),
        pa.field("allowed", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)


@dataclass
class AuditEvent:
    role: str
    action: str
    allowed: bool
    statement: str | None = None
    tables: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows_returned: int = 0
    reason: str | None = None
    who: str | None = None


def audit_uri(settings: Settings) -> str:
    return settings.table_uri("_audit", "")


def current_user() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no login name (containers): the uid
        import os

        return f"uid:{os.getuid()}"


def record(settings: Settings, event: AuditEvent) -> None:
    digest = hashlib.sha256(event.statement.encode()).hexdigest() if event.statement else None
    row = {
        "at": [datetime.now(UTC)],
        "who": [event.who or current_user()],
        "role": [event.role],
        "action": [event.action],
        "statement_sha256": [digest],
        "tables": [sorted(event.tables)],
        "columns": [sorted(event.columns)],
        "rows_returned": [event.rows_returned],
        "allowed": [event.allowed],
        "reason": [event.reason],
    }
    uri = audit_uri(settings)
    first = open_table(uri, settings) is None
    write_deltalake(
        uri,
        pa.table(row, schema=AUDIT_SCHEMA),
        mode="append",
        storage_options=settings.storage_options or None,
        configuration={"delta.appendOnly": "true"} if first else None,
    )


def read_audit(
    settings: Settings,
    *,
    role: str | None = None,
    who: str | None = None,
    action: str | None = None,
    allowed: bool | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> pa.Table:
    """Audit rows, newest first, filtered."""
    table = open_table(audit_uri(settings), settings)
    if table is None:
        return AUDIT_SCHEMA.empty_table()
    where, params = ["true"], []
    for column, value in (("role", role), ("who", who), ("action", action)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if allowed is not None:
        where.append("allowed = ?")
        params.append(allowed)
    if since is not None:
        where.append('"at" >= ?')
        params.append(since)
    with duckdb.connect() as con:
        con.register("audit", consistent_dataset(table))
        return con.sql(
            f'SELECT * FROM audit WHERE {" AND ".join(where)} ORDER BY "at" DESC LIMIT {int(limit)}',
            params=params,
        ).to_arrow_table()
