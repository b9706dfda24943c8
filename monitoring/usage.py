"""FinOps usage: what each asset step of each run cost, in the `_usage` Delta table.

`UsageMeter` measures a block of work in the current process: wall time, CPU seconds (this
process and the child processes it waited for, e.g. dbt), the process's peak resident memory
so far (`ru_maxrss`: a high-water mark of the process, not of the block alone), and the bytes
the process read and wrote through system calls during the block (`/proc/self/io` rchar and
wchar: files, Kafka sockets and object-store connections alike; 0 where /proc is missing).
The caller adds the rows the step wrote. One row per step goes to `_usage`, tagged with the
asset's domain, team and cost center (lakehouse/ownership.py); the gold model
`finops_usage_daily` rolls them up per day and owner.

Off the hot path: `UsageWriter.submit` queues a row and returns; one background thread per
process appends what has queued in one Delta commit (a micro-batch's steps share a commit),
and the queue is flushed when the process exits (and by `flush()`, which the CLI runner calls
after each run), so a step never waits for its own accounting.

Plain Python (no Dagster import).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

from lake.tables import UTC_TS
from lakehouse.config import Settings
from lakehouse.ownership import owner_of

USAGE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("job", pa.string(), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("team", pa.string(), nullable=False),
        pa.field("cost_center", pa.string(), nullable=False),
        pa.field("started_at", UTC_TS, nullable=False),
        pa.field("usage_date", pa.date32(), nullable=False),
        pa.field("wall_seconds", pa.float64(), nullable=False),
        pa.field("cpu_seconds", pa.float64(), nullable=False),
        pa.field("peak_memory_bytes", pa.int64(), nullable=False),
        pa.field("bytes_read", pa.int64(), nullable=False),
        pa.field("bytes_written", pa.int64(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("succeeded", pa.bool_(), nullable=False),
    ]
)
log = logging.getLogger(__name__)
_PROC_IO = Path("/proc/self/io")
# ru_maxrss is in kibibytes on Linux, bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


def usage_uri(settings: Settings) -> str:
    return settings.table_uri("_usage", "")


def _io_counters() -> tuple[int, int]:
    """(bytes read, bytes written) by this process's system calls so far."""
    try:
        fields = dict(
            line.split(": ", 1) for line in _PROC_IO.read_text().splitlines() if ": " in line
        )
        return int(fields.get("rchar", 0)), int(fields.get("wchar", 0))
    except (OSError, ValueError):
        return 0, 0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_memory_bytes() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children) * _MAXRSS_UNIT)


@dataclass
class UsageMeter:
    """Measures the block it wraps: `with UsageMeter() as m: ...; m.wall_seconds`."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    _start: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)

    def __enter__(self) -> UsageMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        read, written = _io_counters()
        self._start = (time.perf_counter(), _cpu_seconds(), read, written)

    def stop(self) -> None:
        wall0, cpu0, read0, written0 = self._start
        read, written = _io_counters()
        self.wall_seconds = time.perf_counter() - wall0
        self.cpu_seconds = max(_cpu_seconds() - cpu0, 0.0)
        self.bytes_read = max(read - read0, 0)
        self.bytes_written = max(written - written0, 0)
        self.peak_memory_bytes = _peak_memory_bytes()

    def row(
        self, run_id: str, job: str, asset: str, rows: int, succeeded: bool = True
    ) -> dict[str, Any]:
        owner = owner_of(asset)
        return {
            "run_id": run_id,
            "job": job,
            "asset": asset,
            **owner.tags(),
            "started_at": self.started_at,
            "usage_date": self.started_at.date(),
            "wall_seconds": round(self.wall_seconds, 6),
            "cpu_seconds": round(self.cpu_seconds, 6),
            "peak_memory_bytes": self.peak_memory_bytes,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "rows": int(rows),
            "succeeded": succeeded,
        }


def record_usage(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Append usage rows to `_usage` (appends never conflict; a lost race is retried)."""
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=USAGE_SCHEMA)
    for attempt in range(5):
        try:
            write_deltalake(
                usage_uri(settings),
                table,
                mode="append",
                storage_options=settings.storage_options or None,
            )
            return
        except CommitFailedError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))


class UsageWriter:
    """Background appends of usage rows: one thread, batched commits, flushed at exit."""

    def __init__(self, linger_s: float = 0.5) -> None:
        self._queue: queue.Queue[tuple[Settings, dict[str, Any]]] = queue.Queue()
        self._linger = linger_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0  # submitted, not yet written (under _lock)
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, settings: Settings, row: dict[str, Any]) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((settings, row))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every submitted row is written; False on timeout."""
        return self._idle.wait(timeout_s)

    def _run(self) -> None:
        while True:
            settings, row = self._queue.get()
            time.sleep(self._linger)  # let the run's other steps join this commit
            batch: dict[str, list[dict[str, Any]]] = {usage_uri(settings): [row]}
            targets = {usage_uri(settings): settings}
            while True:
                try:
                    more_settings, more = self._queue.get_nowait()
                except queue.Empty:
                    break
                uri = usage_uri(more_settings)
                batch.setdefault(uri, []).append(more)
                targets.setdefault(uri, more_settings)
            for uri, rows in batch.items():
                try:
                    record_usage(targets[uri], rows)
                except Exception as exc:  # accounting never fails the pipeline
                    log.warning(
                        "%d usage rows not recorded (%s: %s)", len(rows), type(exc).__name__, exc
                    )
            if self._queue.empty():
                self._idle.set()


WRITER = UsageWriter()
atexit.register(WRITER.flush)
