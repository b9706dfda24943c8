"""Shared helpers of the benchmarks: seed-shaped order events, raw Arrow rows, memory, load,
tables. Deterministic (fixed seeds), no network, no Dagster."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from lake.tables import RAW_SCHEMA

CITIES = (
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Lille", "FR"),
    ("Marseille", "FR"),
    ("Nantes", "FR"),
    ("Toulouse", "FR"),
    ("Bordeaux", "FR"),
    ("Bruxelles", "BE"),
    ("Geneve", "CH"),
    ("Luxembourg", "LU"),
)
N_SKUS = 200
N_CUSTOMERS = 200_000
# 1-5 items per order, mean 2.29 (450k orders -> ~1.03M order lines)
ITEM_WEIGHTS = (0.33, 0.30, 0.19, 0.11, 0.07)
CHANNELS = ("web", "app", "store")
START = datetime(2025, 8, 1, tzinfo=UTC)
DAYS = 30


def _sku_catalogue(rng: np.random.Generator) -> tuple[list[str], list[float]]:
    skus = [f"{chr(65 + i % 26)}{100 + i:03d}" for i in range(N_SKUS)]
    prices = [round(float(p), 2) for p in rng.uniform(1.5, 150.0, N_SKUS)]
    return skus, prices


def order_events(n: int, seed: int = 7, first_id: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """`n` orders events (Kafka key = order_id, value = JSON) shaped like the seed's example,
    ~240 bytes each: 1-5 items, 10 cities, 200 SKUs, 30 days of August 2025, store_id only
    for the store channel."""
    rng = np.random.default_rng(seed)
    skus, prices = _sku_catalogue(np.random.default_rng(1))
    chunk = 100_000
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        n_items = rng.choice(np.arange(1, 6), size=m, p=ITEM_WEIGHTS)
        seconds = rng.integers(0, DAYS * 86_400, size=m)
        customers = rng.integers(0, N_CUSTOMERS, size=m)
        channels = rng.integers(0, 3, size=m)
        cities = rng.integers(0, len(CITIES), size=m)
        total = int(n_items.sum())
        item_skus = rng.integers(0, N_SKUS, size=total).tolist()
        item_qty = rng.integers(1, 5, size=total).tolist()
        base = int(START.timestamp())
        k = 0
        for i in range(m):
            order_id = f"o_{first_id + lo + i:010d}"
            ts = datetime.fromtimestamp(base + int(seconds[i]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            items = []
            for _ in range(int(n_items[i])):
                s = item_skus[k]
                items.append(f'{{"sku":"{skus[s]}","qty":{item_qty[k]},"price":{prices[s]}}}')
                k += 1
            channel = CHANNELS[channels[i]]
            city, country = CITIES[cities[i]]
            store = f'"s_{city.lower()}"' if channel == "store" else "null"
            value = (
                f'{{"order_id":"{order_id}","ts":"{ts}","customer_id":"c_{customers[i]:07d}",'
                f'"items":[{",".join(items)}],"channel":"{channel}","store_id":{store},'
                f'"city":"{city}","country":"{country}"}}'
            )
            yield order_id.encode(), value.encode()


def raw_orders_table(
    n_orders: int,
    partitions: int = 3,
    duplicate_fraction: float = 0.005,
    seed: int = 7,
    first_id: int = 0,
    first_offsets: Sequence[int] | None = None,
) -> pa.Table:
    """Raw `orders` rows (RAW_SCHEMA) as ingestion would have written them, built directly in
    Arrow: `n_orders` events spread over `partitions` by key, plus `duplicate_fraction`
    re-delivered copies (same key and value at a later offset: silver keeps the first)."""
    events = list(order_events(n_orders, seed, first_id))
    rng = np.random.default_rng(seed + 1)
    dups = rng.choice(n_orders, size=int(n_orders * duplicate_fraction), replace=False)
    events.extend(events[int(i)] for i in np.sort(dups))
    keys = [k for k, _ in events]
    values = [v for _, v in events]
    part = np.array([hash_partition(k, partitions) for k in keys], dtype=np.int32)
    offsets = np.zeros(len(events), dtype=np.int64)
    for p in range(partitions):
        mask = part == p
        start = first_offsets[p] if first_offsets else 0
        offsets[mask] = np.arange(start, start + int(mask.sum()))
    n = len(events)
    now = datetime.now(UTC)
    kafka_ts = pa.array(
        np.full(n, int(now.timestamp() * 1_000_000), dtype=np.int64), pa.int64()
    ).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "epoch": pa.array(np.zeros(n, dtype=np.int32)),
            "topic": pa.array(["orders"] * n, pa.string()),
            "partition": pa.array(part),
            "offset": pa.array(offsets),
            "key": pa.array(keys, pa.binary()).cast(pa.string()),
            "value": pa.array(values, pa.large_binary()).cast(pa.large_string()),
            "kafka_timestamp": kafka_ts,
            "headers": pa.array([[]] * n, RAW_SCHEMA.field("headers").type),
            "ingested_at": pa.array([now] * n, RAW_SCHEMA.field("ingested_at").type),
            "batch_id": pa.array(["bench"] * n, pa.string()),
            "ingest_date": pa.array([date(2025, 9, 1)] * n, pa.date32()),
            "schema_version": pa.array(np.ones(n, dtype=np.int32)),
        },
        schema=RAW_SCHEMA,
    )


def hash_partition(key: bytes, partitions: int) -> int:
    """Stable key -> partition (not Kafka's murmur2; only the spread matters here)."""
    return int.from_bytes(key[-4:], "big") % partitions


# ---- measuring ---------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process: VmHWM of its own address space. (Linux keeps
    ru_maxrss across fork + exec, so a spawned child would report its parent's peak.)"""
    peak = proc_peak_rss_mb(os.getpid())
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_peak_rss_mb(pid: int) -> float | None:
    """Peak RSS (VmHWM) of another process, e.g. the Spark JVM, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def machine() -> str:
    total_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
    except OSError:
        pass
    return (
        f"{platform.machine()} {os.cpu_count()} cores, {total_kb / 1024 / 1024:.1f} GiB RAM, "
        f"Python {sys.version.split()[0]}"
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pastes into docs/benchmarks.md as is)."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
