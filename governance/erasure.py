"""Erasure of one data subject: `lakehouse privacy forget --subject customer_id=c_77`.

1. The subject's pseudonym (the silver keyed hash) finds its rows: every Delta table under
   silver/ and gold/ with the subject's silver column (`governance.pii`: `customer_id_hash`,
   `account_hash`, `card_hash`) loses them (Delta DELETE); an account's or a card's
   transactions also leave every table keyed by `transaction_id` (fraud features,
   decisions, labels). Dead letters whose payload names the subject are deleted too.
2. VACUUM with `LAKEHOUSE_ERASURE_RETENTION_HOURS` (default 0) removes the files that still
   held those rows: past the retention no file on disk holds them (nor can time travel read
   them back; a longer retention keeps time travel and the erased rows for that long).
3. The published gold DuckDB file is rewritten without them (a fresh file, not freed pages),
   and its Parquet copies (`<lake>/gold/<table>/`) are written again from it.
4. The subject's raw key is destroyed: its raw tokens no longer decrypt, and silver leaves
   its rows out on any replay.
5. The Redis online fraud store forgets the account's/card's entries (an in-process store
   is warmed from silver, which no longer holds them).
6. The request lands in the `_erasure_log` Delta table (the subject's key id, never its value).

Re-running is harmless: nothing is left to delete, and the log says when it was erased.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from governance import pii
from governance.audit import AuditEvent, record
from governance.crypto import key_id
from governance.keystore import open_key_store
from lake.tables import consistent_dataset, dead_letter_uri, open_table, sql_string
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

ERASURE_LOG_SCHEMA = pa.schema(
    [
        pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("requested_by", pa.string(), nullable=False),
        pa.field("subject", pa.string(), nullable=False),
        pa.field("key_id", pa.string(), nullable=False),
        pa.field("tables", pa.list_(pa.string())),
        pa.field("rows_deleted", pa.int64(), nullable=False),
        pa.field("files_removed", pa.int64(), nullable=False),
        pa.field("key_destroyed", pa.bool_(), nullable=False),
    ]
)


@dataclass
class ErasureResult:
    subject: str
    key_id: str
    rows_deleted: dict[str, int] = field(default_factory=dict)
    files_removed: dict[str, int] = field(default_factory=dict)
    key_destroyed: bool = False
    online_keys_removed: int = 0
    erased_before: str | None = None

    @property
    def found(self) -> bool:
        return bool(self.rows_deleted) or self.key_destroyed

    def summary(self) -> str:
        if not self.found:
            if self.erased_before:
                return f"{self.subject}: already erased on {self.erased_before}; nothing left"
            return f"{self.subject}: no data names this subject (nothing to erase; check the value)"
        lines = [f"{self.subject} erased (key id {self.key_id}):"]
        for table, n in sorted(self.rows_deleted.items()):
            files = self.files_removed.get(table, 0)
            lines.append(f"  {table}: {n} rows deleted, {files} files removed by vacuum")
        lines.append(f"  raw key destroyed: {'yes' if self.key_destroyed else 'no (none held)'}")
        if self.online_keys_removed:
            lines.append(f"  online fraud store: {self.online_keys_removed} entries removed")
        return "\n".join(lines)


def parse_subject(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise ConfigError(f"--subject {text!r}: use <subject>=<value>, e.g. customer_id=c_77")
    return pii.subject_name(name.strip()), value.strip()


def erasure_log_uri(settings: Settings) -> str:
    return settings.table_uri("_erasure_log", "")


def _lake_tables(settings: Settings) -> list[str]:
    if not settings.is_local_lake:
        raise ConfigError("erasure lists tables on a local lake only: run it where the lake is")
    root = Path(settings.lake_root)
    out = []
    for zone in ("silver", "gold"):
        if (root / zone).exists():
            out.extend(str(p.parent) for p in sorted((root / zone).rglob("_delta_log")))
    return out


def _delete(table: DeltaTable, predicate: str) -> int:
    metrics = table.delete(predicate)
    return int(metrics.get("num_deleted_rows", 0))


def forget(settings: Settings, subject_text: str) -> ErasureResult:
    subject, value = parse_subject(subject_text)
    hashed = str(pii.pseudonym(value, settings.pii_hash_key))
    kid = key_id(subject, value, settings.pii_hash_key)
    result = ErasureResult(f"{subject}={value}", kid)
    columns = sorted({f.silver_name for f in pii.subjects()[subject]})
    root = Path(settings.lake_root)

    # the subject's transactions (account, card): their ids key the fraud tables
    transaction_ids: set[str] = set()
    cards: set[str] = {hashed} if subject == "card" else set()
    accounts: set[str] = {hashed} if subject == "account_id" else set()
    for uri in _lake_tables(settings):
        table = open_table(uri, settings)
        names = set(table.schema().to_arrow().names) if table else set()  # type: ignore[union-attr]
        if table is None or "transaction_id" not in names:
            continue
        for column in columns:
            if column in names:
                wanted = ", ".join(c for c in ("transaction_id", "card_hash") if c in names)
                with duckdb.connect() as con:
                    con.register("t", consistent_dataset(table))
                    rows = con.sql(
                        f'SELECT {wanted} FROM t WHERE "{column}" = ?', params=[hashed]
                    ).to_arrow_table()
                transaction_ids.update(str(t) for t in rows["transaction_id"].to_pylist())
                if "card_hash" in rows.column_names:
                    cards.update(str(c) for c in rows["card_hash"].to_pylist())

    for uri in _lake_tables(settings):
        table = open_table(uri, settings)
        if table is None:
            continue
        names = set(table.schema().to_arrow().names)
        deleted = 0
        for column in columns:
            if column in names:
                deleted += _delete(table, f"{column} = {sql_string(hashed)}")
        if transaction_ids and "transaction_id" in names:
            ids = sorted(transaction_ids)
            for start in range(0, len(ids), 1000):
                chunk = ", ".join(sql_string(t) for t in ids[start : start + 1000])
                deleted += _delete(table, f"transaction_id IN ({chunk})")
        if deleted:
            name = str(Path(uri).relative_to(root))
            result.rows_deleted[name] = deleted
            result.files_removed[name] = _vacuum(table, settings)

    dead = _forget_dead_letters(settings, value)
    if dead:
        result.rows_deleted["_dead_letter"] = dead
        table = open_table(dead_letter_uri(settings), settings)
        result.files_removed["_dead_letter"] = _vacuum(table, settings)  # type: ignore[arg-type]

    gold_rows = _rewrite_gold(settings.gold_db_path, columns, hashed, transaction_ids)
    if gold_rows:
        result.rows_deleted["gold.duckdb"] = gold_rows
        from lake.gold import publish_parquet

        publish_parquet(settings)  # the Parquet copies of gold, rewritten from the fresh file

    with open_key_store(settings) as store:
        result.key_destroyed = store.destroy([kid]) > 0

    if settings.redis_url and (accounts or cards):
        from fraud.store import RedisStore

        online = RedisStore(settings.redis_url, settings.redis_prefix)
        try:
            result.online_keys_removed = online.forget(accounts, cards)
        finally:
            online.close()

    previous = _erased_before(settings, kid)
    if result.found:
        _log(settings, result, subject)
    else:
        result.erased_before = previous
    record(
        settings,
        AuditEvent(
            "-",
            "erasure",
            True,
            tables=sorted(result.rows_deleted),
            rows_returned=sum(result.rows_deleted.values()),
            reason=f"{subject} key {kid}: " + ("erased" if result.found else "nothing to erase"),
        ),
    )
    return result


def _vacuum(table: DeltaTable, settings: Settings) -> int:
    removed = table.vacuum(
        retention_hours=int(settings.erasure_retention_hours),
        enforce_retention_duration=False,
        dry_run=False,
    )
    return len(removed)


def _forget_dead_letters(settings: Settings, value: str) -> int:
    """Dead letters whose payload holds the subject's value (they were never encrypted: an
    invalid payload cannot be parsed reliably)."""
    table = open_table(dead_letter_uri(settings), settings)
    if table is None:
        return 0
    rows = table.to_pyarrow_table(columns=["topic", "epoch", "partition", "offset", "payload"])
    needle = value.encode()
    hit = pc.fill_null(pc.match_substring(rows["payload"], needle.decode()), False)
    matched = rows.filter(hit)
    if not matched.num_rows:
        return 0
    deleted = 0
    for row in matched.select(["topic", "epoch", "partition", "offset"]).to_pylist():
        deleted += _delete(
            table,
            f"topic = {sql_string(row['topic'])} AND epoch = {row['epoch']} AND "
            f'"partition" = {row["partition"]} AND "offset" = {row["offset"]}',
        )
    return deleted


def _rewrite_gold(path: Path, columns: list[str], hashed: str, transaction_ids: set[str]) -> int:
    """Delete the subject's rows from the gold DuckDB file, then copy it into a fresh file
    (DuckDB reuses freed blocks without zeroing them) swapped in atomically."""
    if not path.exists():
        return 0
    deleted = 0
    with duckdb.connect(str(path)) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, name in tables:
            cols = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [schema, name],
                ).fetchall()
            }
            target = f'"{schema}"."{name}"'
            for column in columns:
                if column in cols:
                    n = con.execute(f'DELETE FROM {target} WHERE "{column}" = ?', [hashed])
                    deleted += n.fetchone()[0]  # type: ignore[index]
            if transaction_ids and "transaction_id" in cols:
                n = con.execute(
                    f"DELETE FROM {target} WHERE transaction_id IN (SELECT unnest(?))",
                    [sorted(transaction_ids)],
                )
                deleted += n.fetchone()[0]  # type: ignore[index]
    if deleted:
        fresh = path.with_suffix(".erasure")
        fresh.unlink(missing_ok=True)
        with duckdb.connect() as con:
            con.execute(f"ATTACH '{path}' AS old (READ_ONLY)")
            con.execute(f"ATTACH '{fresh}' AS new")
            con.execute("COPY FROM DATABASE old TO new")
        os.replace(fresh, path)
    return deleted


def _erased_before(settings: Settings, kid: str) -> str | None:
    table = open_table(erasure_log_uri(settings), settings)
    if table is None:
        return None
    rows = table.to_pyarrow_table(filters=[("key_id", "=", kid)])
    if not rows.num_rows:
        return None
    return pc.min(rows["requested_at"]).as_py().isoformat(timespec="seconds")


def _log(settings: Settings, result: ErasureResult, subject: str) -> None:
    row = {
        "requested_at": [datetime.now(UTC)],
        "requested_by": [getpass.getuser()],
        "subject": [subject],  # the kind of subject, never the value
        "key_id": [result.key_id],
        "tables": [sorted(result.rows_deleted)],
        "rows_deleted": [sum(result.rows_deleted.values())],
        "files_removed": [sum(result.files_removed.values())],
        "key_destroyed": [result.key_destroyed],
    }
    write_deltalake(
        erasure_log_uri(settings),
        pa.table(row, schema=ERASURE_LOG_SCHEMA),
        mode="append",
        storage_options=settings.storage_options or None,
    )
