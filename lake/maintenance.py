"""Delta table maintenance: OPTIMIZE (compaction, z-order of the hot tables), checkpoints and
VACUUM, with a report of files and bytes before and after.

Why it is safe while the pipeline runs:
- **Exactly-once offsets** are Delta transaction identifiers (`txn` actions) in the log, not
  data files: compaction and VACUUM never touch them, a checkpoint carries them over, so
  `lake_offsets` reads the same next offsets after maintenance (tested).
- **Readers**: VACUUM only deletes files no version of the last
  `LAKEHOUSE_MAINTENANCE_RETENTION_HOURS` references (default 168 h), so a reader that opened a
  snapshot within that time keeps its files; shorter is refused by the setting's bounds (1 h).
- **Writers**: compaction commits with the log's conflict checks. Appends (raw ingestion) never
  conflict with it; a silver commit racing a compaction of the same table is the one that
  retries (`lakehouse materialize` / the next sensor tick). Downstream incremental readers see
  a compacted file as new and re-read it; their anti-join on the business key writes nothing twice.

Plain Python (no Dagster import)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable

from lakehouse.config import Settings

log = logging.getLogger(__name__)

# Hot tables: the columns their readers filter or join on. Z-ordering co-locates those values
# (fewer files read per card or SKU); elsewhere plain compaction is enough.
Z_ORDER: dict[str, tuple[str, ...]] = {
    "silver/orders": ("sku", "city"),
    "silver/transactions": ("card_hash",),
}
# zones whose sub-folders are Delta tables (the dead-letter table is the zone itself)
_ZONES = ("raw", "silver", "gold", "_dead_letter", "_outbox", "_usage", "_platform")


@dataclass
class TableMaintenance:
    table: str  # path relative to the lake root: raw/orders
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    files_compacted: int = 0  # files removed by OPTIMIZE (rewritten into fewer)
    files_added: int = 0
    z_order: tuple[str, ...] = ()
    vacuumed: int = 0  # files deleted from storage
    checkpoint_version: int | None = None
    seconds: float = 0.0
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"{self.table}: skipped ({self.error})"
        how = f"z-order {', '.join(self.z_order)}" if self.z_order else "compact"
        return (
            f"{self.table}: {self.files_before} files / {_mb(self.bytes_before)} -> "
            f"{self.files_after} files / {_mb(self.bytes_after)} ({how}: "
            f"{self.files_compacted} rewritten into {self.files_added}; vacuum deleted "
            f"{self.vacuumed}; checkpoint at v{self.checkpoint_version}) in {self.seconds:.1f} s"
        )


@dataclass
class MaintenanceReport:
    tables: list[TableMaintenance] = field(default_factory=list)

    @property
    def files_before(self) -> int:
        return sum(t.files_before for t in self.tables)

    @property
    def files_after(self) -> int:
        return sum(t.files_after for t in self.tables)

    def summary(self) -> str:
        before = sum(t.bytes_before for t in self.tables)
        after = sum(t.bytes_after for t in self.tables)
        return (
            f"{len(self.tables)} tables: {self.files_before} files / {_mb(before)} -> "
            f"{self.files_after} files / {_mb(after)}"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def file_stats(table: DeltaTable) -> tuple[int, int]:
    """(files, bytes) the current version references."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0, 0
    return actions.num_rows, int(pa.compute.sum(actions["size_bytes"]).as_py() or 0)


def lake_tables(settings: Settings) -> list[str]:
    """Delta tables under the lake root (relative paths), found by their `_delta_log`."""
    fs, root = pafs.FileSystem.from_uri(settings.lake_root)
    found: list[str] = []
    for zone in _ZONES:
        base = f"{root.rstrip('/')}/{zone}"
        if fs.get_file_info(f"{base}/_delta_log").type == pafs.FileType.Directory:
            found.append(zone)
            continue
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            continue
        for entry in fs.get_file_info(pafs.FileSelector(base)):
            if entry.type != pafs.FileType.Directory:
                continue
            if fs.get_file_info(f"{entry.path}/_delta_log").type == pafs.FileType.Directory:
                found.append(f"{zone}/{entry.base_name}")
    return sorted(found)


def maintain_table(settings: Settings, relative: str, *, vacuum: bool = True) -> TableMaintenance:
    started = time.monotonic()
    report = TableMaintenance(relative)
    uri = f"{settings.lake_root.rstrip('/')}/{relative}"
    options = settings.storage_options or None
    table = DeltaTable(uri, storage_options=options)
    report.files_before, report.bytes_before = file_stats(table)
    target = settings.maintenance_target_file_mb * 1024 * 1024
    z_order = tuple(c for c in Z_ORDER.get(relative, ()) if c in table.schema().to_arrow().names)
    if z_order:
        metrics = table.optimize.z_order(list(z_order), target_size=target)
        report.z_order = z_order
    else:
        metrics = table.optimize.compact(target_size=target)
    report.files_compacted = int(metrics.get("numFilesRemoved", 0))
    report.files_added = int(metrics.get("numFilesAdded", 0))
    table = DeltaTable(uri, storage_options=options)
    table.create_checkpoint()
    report.checkpoint_version = table.version()
    if vacuum:
        deleted = table.vacuum(
            retention_hours=settings.maintenance_retention_hours,
            dry_run=False,
            enforce_retention_duration=False,  # the setting's bounds are the guard
            # full: also the orphan files no log version names (a writer that crashed before
            # its commit), older than the retention too (monitoring/orphans.py alerts on them)
            full=True,
        )
        report.vacuumed = len(deleted)
    report.files_after, report.bytes_after = file_stats(DeltaTable(uri, storage_options=options))
    report.seconds = time.monotonic() - started
    return report


def maintain_lake(
    settings: Settings,
    tables: Iterable[str] | None = None,
    progress: Callable[[str], None] = log.info,
    *,
    vacuum: bool = True,
) -> MaintenanceReport:
    """Maintain every Delta table of the lake (or `tables`), one after the other; a table that
    cannot be maintained now (a concurrent writer won the commit) is reported and skipped."""
    report = MaintenanceReport()
    for relative in tables if tables is not None else lake_tables(settings):
        try:
            done = maintain_table(settings, relative, vacuum=vacuum)
        except Exception as exc:  # one table's conflict must not stop the others
            done = TableMaintenance(relative, error=f"{type(exc).__name__}: {exc}"[:300])
        report.tables.append(done)
        progress(done.line())
    return report
