"""Orphan files: data files under a Delta table that no version in its log references.

A writer that crashed after writing its Parquet files but before its commit, a copy gone
wrong or a hand edit leaves files the table will never read: they cost storage and confuse
anything that lists folders. A file is an orphan when no `add` or `remove` action of the log
(JSON commits and the last checkpoint) names it and it is older than
`LAKEHOUSE_MAINTENANCE_RETENTION_HOURS`: younger files may belong to a commit in progress.
`lakehouse lake maintain` (VACUUM) deletes them.

Plain Python (no Dagster import).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lake.maintenance import lake_tables
from lakehouse.config import Settings
from monitoring.alerts import ORPHAN_FILES, Condition

_LOG = "_delta_log"
_SKIPPED_FOLDERS = (_LOG, "_change_data")


@dataclass(frozen=True)
class OrphanFile:
    path: str  # relative to the table root
    size: int
    modified_at: datetime


@dataclass
class TableOrphans:
    table: str  # relative to the lake root: raw/orders
    files: list[OrphanFile] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def _referenced(fs: pafs.FileSystem, log_dir: str) -> set[str]:
    """Every path an add or remove action of the log names (relative, URL-decoded)."""
    paths: set[str] = set()
    entries = fs.get_file_info(pafs.FileSelector(log_dir))
    checkpoints = sorted(e.path for e in entries if e.path.endswith(".checkpoint.parquet"))
    if checkpoints:  # the last checkpoint summarises the commits it covers
        last = checkpoints[-1]
        version = last.rsplit("/", 1)[-1].split(".", 1)[0]
        with fs.open_input_file(last) as handle:
            actions = pq.read_table(handle, columns=["add", "remove"])
        for column in ("add", "remove"):
            for item in actions[column].to_pylist():
                if item and item.get("path"):
                    paths.add(unquote(item["path"]))
        commits = [e.path for e in entries if e.path.endswith(".json")]
        commits = [c for c in commits if c.rsplit("/", 1)[-1].split(".", 1)[0] >= version]
    else:
        commits = [e.path for e in entries if e.path.endswith(".json")]
    for commit in commits:
        with fs.open_input_stream(commit) as handle:
            for line in handle.read().decode().splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                for kind in ("add", "remove"):
                    if kind in action and action[kind].get("path"):
                        paths.add(unquote(action[kind]["path"]))
    return paths


def table_orphans(
    settings: Settings, table: str, now: datetime | None = None, min_age: timedelta | None = None
) -> TableOrphans:
    """Orphan data files of one table (`raw/orders`), older than `min_age` (default: the
    maintenance retention)."""
    now = now or datetime.now(UTC)
    min_age = (
        min_age if min_age is not None else timedelta(hours=settings.maintenance_retention_hours)
    )
    fs, root = pafs.FileSystem.from_uri(settings.lake_root)
    base = f"{root.rstrip('/')}/{table}"
    referenced = _referenced(fs, f"{base}/{_LOG}")
    found = TableOrphans(table)
    for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if entry.type != pafs.FileType.File or not entry.path.endswith(".parquet"):
            continue
        relative = entry.path[len(base) + 1 :]
        if relative.split("/", 1)[0] in _SKIPPED_FOLDERS or relative in referenced:
            continue
        modified = entry.mtime if entry.mtime is not None else now
        modified = modified if modified.tzinfo else modified.replace(tzinfo=UTC)
        if now - modified >= min_age:
            found.files.append(OrphanFile(relative, int(entry.size or 0), modified))
    return found


def lake_orphans(settings: Settings, now: datetime | None = None) -> list[TableOrphans]:
    """Orphan files of every Delta table of the lake (tables without any: empty lists)."""
    return [table_orphans(settings, t, now) for t in lake_tables(settings)]


def orphan_condition(found: TableOrphans, retention_hours: int) -> Condition:
    n = len(found.files)
    summary = (
        f"Table {found.table}: {n} data files ({found.bytes / 1e6:.1f} MB) that no version "
        f"of its Delta log references, older than the {retention_hours} h retention"
    )
    if n:
        summary += f" (e.g. {found.files[0].path})"
    return Condition(
        kind=ORPHAN_FILES,
        subject=found.table,
        detail="",
        firing=n > 0,
        value=float(n),
        threshold=0.0,
        summary=summary,
        fix=f"lakehouse lake maintain --table {found.table}",
        severity="warning",
        since=min((f.modified_at for f in found.files), default=None),
    )
