"""The scale curve: 1M, 5M and 10M `orders` events end to end on the default engine (embedded
broker → raw Delta → silver → gold with the dbt project), micro-batches capped by
LAKEHOUSE_MAX_BATCH_RECORDS, and the same first size with silver on the Spark engine.

    .venv/bin/python bench/scale.py                          # 1M, 5M, 10M; Spark at 1M
    .venv/bin/python bench/scale.py --sizes 100000 --spark   # smoke (~2 min)
    .venv/bin/python bench/scale.py --sizes 100000 --spark-s3   # + Spark silver on s3:// (moto)
    .venv/bin/python bench/scale.py --sizes 10000000 --root /big/tmp

For each size, in a lake of its own (a temporary LAKEHOUSE_HOME under `--root`, deleted at
the end), with the project's default settings except the broker port:

  1. produce: the seed-shaped events (bench/_common.py, fixed seed) sent to a 3-partition
     `orders` topic of the embedded broker with `kafka_client.produce` (generation included);
  2. raw: `ingestion.raw.ingest_batch` until caught up (what the raw asset runs per batch);
  3. silver: `lake.silver.build_silver(settings, "silver_orders")` once, as the silver asset
     does: it works through the raw backlog in commits of at most the cap;
  4. gold: `lake.gold.run_dbt(settings, ["build"])`, the gold job (every model and test).

Each stage runs in a freshly spawned process, so its wall time, CPU time (its own and its
children's: dbt runs as a subprocess) and peak RSS (VmHWM; for gold, the larger of the stage
process and its dbt child) are its own. The broker's CPU time per stage and its peak RSS (it
keeps the whole topic in memory: `memory://` storage) are read from /proc. With `--spark`,
the first size's raw table is copied into a second lake and silver is built there by
`lake.spark_silver.build_silver_spark` with LAKEHOUSE_ENGINE=spark and
LAKEHOUSE_SPARK_MASTER=local[2] (session built from `spark_config`, as the Dagster pyspark
resource is; its start-up timed apart), then gold by dbt on that silver. With `--spark-s3`,
also the same raw table uploaded to an `s3://` lake on moto's S3 server (a local HTTP endpoint,
LAKEHOUSE_S3_SSE=AES256) and silver built there by the same stage: the Spark tasks read the
raw files with boto3 + pyarrow and put the silver files with boto3 (no Hadoop S3 connector).
Prints Markdown tables and the load average, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _common import (
    Timer,
    child_pids,
    load,
    machine,
    order_events,
    peak_rss_mb,
    print_table,
    proc_peak_rss_mb,
)

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings

TOPIC = "orders"
PARTITIONS = 3


# ---- the stages (each runs in its own spawned process) -------------------------------------
def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _finish(timer: Timer, cpu0: float, out: dict[str, Any]) -> dict[str, Any]:
    out["wall_s"] = timer.seconds
    out["cpu_s"] = _cpu_seconds() - cpu0
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["peak_rss_mb"] = max(peak_rss_mb(), children_mb)
    return out


def stage_produce(env: dict[str, str], bootstrap: str, events: int) -> dict[str, Any]:
    cpu0, timer = _cpu_seconds(), Timer()
    sent = kafka_client.produce(bootstrap, TOPIC, order_events(events))
    return _finish(timer, cpu0, {"events": sent, "note": "generation + send, acks=all"})


def stage_raw(env: dict[str, str], bootstrap: str, events: int) -> dict[str, Any]:
    from ingestion.raw import ingest_batch

    settings = Settings.from_env(env)
    cpu0, timer = _cpu_seconds(), Timer()
    batches = records = rows = dead = 0
    while True:
        result = ingest_batch(settings, TOPIC, bootstrap)
        if result.records_read == 0:
            break
        batches += 1
        records += result.records_read
        rows += result.rows_written
        dead += result.dead_letters
        if sum(result.lag.values()) == 0:
            break
    note = f"{batches} batches, {rows:,} rows, {dead} dead letters"
    return _finish(timer, cpu0, {"events": records, "rows": rows, "note": note})


def stage_silver(env: dict[str, str], bootstrap: str, events: int) -> dict[str, Any]:
    from lake.silver import build_silver

    settings = Settings.from_env(env)
    cpu0, timer = _cpu_seconds(), Timer()
    result = build_silver(settings, "silver_orders")
    note = (
        f"{result.extra.get('commits', 0)} commits, {result.rows_inserted:,} order lines, "
        f"{result.duplicates_skipped:,} duplicates"
    )
    out = {"events": result.raw_rows_read, "rows": result.rows_inserted, "note": note}
    return _finish(timer, cpu0, out)


def stage_silver_spark(env: dict[str, str], bootstrap: str, events: int) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    from lake.spark_silver import build_silver_spark, spark_config

    settings = Settings.from_env(env)
    cpu0, timer = _cpu_seconds(), Timer()
    builder = SparkSession.builder
    for key, value in spark_config(settings, "lakehouse-silver").items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    start_s = timer.seconds
    try:
        result = build_silver_spark(settings, spark, "silver_orders")
        jvm = [p for p in child_pids(os.getpid()) if b"java" in _cmdline(p)]
        jvm_mb = max((proc_peak_rss_mb(p) or 0.0 for p in jvm), default=0.0)
        jvm_cpu = sum(_tree_cpu(p) for p in jvm)  # the JVM and its Python workers
    finally:
        spark.stop()
    note = (
        f"session start {start_s:.1f}s included; {result.rows_inserted:,} order lines; "
        f"python {peak_rss_mb():.0f} MB + JVM {jvm_mb:.0f} MB"
    )
    out = _finish(timer, cpu0, {"events": result.raw_rows_read, "note": note})
    out["cpu_s"] += jvm_cpu
    out["peak_rss_mb"] = peak_rss_mb() + jvm_mb  # driver JVM and Python side by side
    out["start_s"] = start_s
    return out


def stage_gold(env: dict[str, str], bootstrap: str, events: int) -> dict[str, Any]:
    from lake.gold import read_gold, run_dbt

    settings = Settings.from_env(env)
    cpu0, timer = _cpu_seconds(), Timer()
    run_dbt(settings, ["build"])
    out = _finish(timer, cpu0, {"events": events})
    daily = read_gold(settings, "SELECT count(*) AS n, sum(units) AS units FROM daily_sales")
    out["note"] = (
        f"dbt build, DuckDB memory_limit {settings.gold_memory_limit}; daily_sales "
        f"{daily['n'][0].as_py():,} rows, "
        f"{daily['units'][0].as_py():,} units"
    )
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _process_cpu(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of a live process (+ those of its exited, reaped children), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (any thread may have forked them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _process_cpu(current, True)
        todo.extend(parents.get(current, []))
    return total


# ---- driving ---------------------------------------------------------------------------


def _du_mb(path: Path) -> float:
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=False)
    return int(done.stdout.split()[0]) / 1024 if done.returncode == 0 else float("nan")


def _run_stage(
    label: str, fn: Any, env: dict[str, str], bootstrap: str, events: int, broker_pid: int | None
) -> dict[str, Any]:
    print(f"  {label}: running ({load()})", flush=True)
    broker_cpu0 = _process_cpu(broker_pid) if broker_pid else 0.0
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        out = pool.submit(fn, env, bootstrap, events).result()
    out["broker_cpu_s"] = _process_cpu(broker_pid) - broker_cpu0 if broker_pid else 0.0
    out["stage"] = label
    out["load"] = load()
    out["rate"] = events / out["wall_s"] if out["wall_s"] else float("nan")
    print(
        f"  {label}: {out['wall_s']:.1f}s wall, {out['cpu_s']:.1f}s CPU "
        f"(+ broker {out['broker_cpu_s']:.1f}s), {out['rate']:,.0f} events/s, peak RSS "
        f"{out['peak_rss_mb']:.0f} MB; {out.get('note', '')}; {out['load']}",
        flush=True,
    )
    return out


def run_size(
    events: int,
    root: Path,
    port: int,
    batch_records: int | None,
    spark: bool,
    keep: bool,
    spark_s3: bool = False,
) -> list[dict[str, Any]]:
    home = Path(tempfile.mkdtemp(prefix=f"lakehouse-bench-scale-{events}-", dir=root))
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_BROKER_PORT": str(port),
        "LAKEHOUSE_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    if batch_records:
        env["LAKEHOUSE_MAX_BATCH_RECORDS"] = str(batch_records)
    settings = Settings.from_env(env)
    print(
        f"\n=== {events:,} events; batch cap {settings.max_batch_records:,}; lake "
        f"{settings.lake_root}; {load()}",
        flush=True,
    )
    from lake.gold import prepare_manifest

    prepare_manifest(settings)  # `dbt parse`, done once by `make venv`: not timed
    broker = EmbeddedBroker(settings)
    broker.start()
    rows: list[dict[str, Any]] = []
    try:
        kafka_client.ensure_topics(broker.bootstrap, [TOPIC], PARTITIONS)
        pid = broker.status().pid
        for label, fn in (
            ("produce", stage_produce),
            ("raw", stage_raw),
            ("silver", stage_silver),
            ("gold", stage_gold),
        ):
            rows.append(_run_stage(label, fn, env, broker.bootstrap, events, pid))
        broker_mb = proc_peak_rss_mb(pid) if pid else None
    finally:
        broker.stop()
    lake = Path(settings.lake_root)
    sizes = {p.name: _du_mb(p) for p in (lake / "raw", lake / "silver", lake / "gold")}
    print(
        f"  lake on disk: raw {sizes['raw']:,.0f} MB, silver {sizes['silver']:,.0f} MB, gold "
        f"{sizes['gold']:,.0f} MB; broker peak RSS {broker_mb or float('nan'):,.0f} MB",
        flush=True,
    )
    for row in rows:
        row["size"] = events
        row["engine"] = "duckdb"
    rows.append(_total(rows, events, "duckdb"))
    rows[-1]["note"] = f"broker peak RSS {broker_mb or float('nan'):,.0f} MB (memory:// log)"
    if spark or spark_s3:
        rows.extend(_spark_rows(events, home, env, settings))
    if spark_s3:
        rows.extend(_spark_s3_rows(events, env, settings))
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _spark_rows(
    events: int, home: Path, env: dict[str, str], settings: Settings
) -> list[dict[str, Any]]:
    """Silver on Spark local[2] and gold on it, from a copy of this size's raw table."""
    from lake.tables import raw_uri

    spark_env = {
        **env,
        "LAKEHOUSE_LAKE_ROOT": str(home / "lake-spark"),
        "LAKEHOUSE_ENGINE": "spark",
        "LAKEHOUSE_SPARK_MASTER": "local[2]",
    }
    spark_settings = Settings.from_env(spark_env)
    shutil.copytree(raw_uri(settings, TOPIC), raw_uri(spark_settings, TOPIC))
    print(f"\n=== {events:,} events, silver on Spark local[2]; {load()}", flush=True)
    rows = [
        _run_stage("silver (spark local[2])", stage_silver_spark, spark_env, "", events, None),
        _run_stage("gold (on Spark's silver)", stage_gold, spark_env, "", events, None),
    ]
    for row in rows:
        row["size"] = events
        row["engine"] = "spark"
    return rows


def gold_again(home: Path, events: int) -> int:
    """The gold stage again on a kept lake (e.g. after changing a gold setting)."""
    from lake.gold import prepare_manifest

    env = {"LAKEHOUSE_HOME": str(home)}
    settings = Settings.from_env(env)
    print(
        f"bench/scale.py --gold-on {home}: {events:,} events; gold memory limit "
        f"{settings.gold_memory_limit}; {machine()}; {load()}",
        flush=True,
    )
    prepare_manifest(settings)
    _run_stage("gold", stage_gold, env, "", events, None)
    return 0


def _total(rows: list[dict[str, Any]], events: int, engine: str) -> dict[str, Any]:
    wall = sum(r["wall_s"] for r in rows)
    return {
        "size": events,
        "engine": engine,
        "stage": "end to end",
        "wall_s": wall,
        "cpu_s": sum(r["cpu_s"] for r in rows),
        "broker_cpu_s": sum(r["broker_cpu_s"] for r in rows),
        "rate": events / wall,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "load": rows[-1]["load"],
    }


def _linearity(rows: list[dict[str, Any]]) -> None:
    """Wall and CPU seconds per million events, and peak RSS, per stage across sizes."""
    default = [r for r in rows if r["engine"] == "duckdb"]
    sizes = sorted({r["size"] for r in default})
    if len(sizes) < 2:
        return
    stages = list(dict.fromkeys(r["stage"] for r in default))
    table = []
    for stage in stages:
        by_size = {r["size"]: r for r in default if r["stage"] == stage}
        cells: list[object] = [stage]
        for size in sizes:
            r = by_size[size]
            m = size / 1e6
            cells.append(f"{r['wall_s'] / m:.1f} / {r['cpu_s'] / m:.1f} / {r['peak_rss_mb']:.0f}")
        table.append(cells)
    print("\nper million events: wall s / CPU s / peak RSS MB")
    print_table(["stage", *[f"{s:,}" for s in sizes]], table)


@contextmanager
def _moto_s3() -> Iterator[str]:
    """moto's S3 server (its own process) on a free loopback port; yields the endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _spark_s3_rows(events: int, env: dict[str, str], settings: Settings) -> list[dict[str, Any]]:
    """Silver on Spark local[2] on an s3:// lake (moto), from an upload of the same raw table."""
    import boto3

    from lake.tables import raw_uri

    with _moto_s3() as endpoint:
        s3_env = {
            **env,
            "LAKEHOUSE_LAKE_ROOT": "s3://bench-lake/lakehouse",
            "LAKEHOUSE_ENGINE": "spark",
            "LAKEHOUSE_SPARK_MASTER": "local[2]",
            "LAKEHOUSE_S3_SSE": "AES256",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="bench-lake")
        local = Path(raw_uri(settings, TOPIC))
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            key = f"lakehouse/raw/{TOPIC}/{path.relative_to(local).as_posix()}"
            client.upload_file(str(path), "bench-lake", key)
        print(f"\n=== {events:,} events, silver on Spark local[2], s3:// (moto); {load()}")
        row = _run_stage(
            "silver (spark local[2], s3:// moto)", stage_silver_spark, s3_env, "", events, None
        )
    row["size"] = events
    row["engine"] = "spark"
    return [row]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000,10000000", help="comma-separated")
    parser.add_argument("--spark", action="store_true", help="silver on Spark at the first size")
    parser.add_argument(
        "--spark-s3",
        action="store_true",
        help="--spark, then silver on Spark on an s3:// lake (moto) from the same raw table",
    )
    parser.add_argument(
        "--batch-records",
        type=int,
        default=None,
        help="LAKEHOUSE_MAX_BATCH_RECORDS (default: the setting's default)",
    )
    parser.add_argument("--root", default="/tmp", help="folder for the temporary lakes")
    parser.add_argument("--port", type=int, default=19320)
    parser.add_argument("--keep", action="store_true", help="keep the temporary lakes")
    parser.add_argument(
        "--gold-on",
        metavar="HOME",
        help="only the gold stage, on the lake a --keep run left (LAKEHOUSE_HOME; --sizes: its size)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.gold_on:
        return gold_again(Path(args.gold_on), sizes[0])

    versions = ", ".join(
        f"{p} {version(p)}" for p in ("kafka-python", "duckdb", "deltalake", "dbt-duckdb")
    )
    print(f"bench/scale.py: sizes {', '.join(f'{s:,}' for s in sizes)}; {machine()}; {versions}")
    print(f"{load()}", flush=True)
    rows: list[dict[str, Any]] = []
    for i, events in enumerate(sizes):
        rows.extend(
            run_size(
                events,
                Path(args.root),
                args.port,
                args.batch_records,
                args.spark and i == 0,
                args.keep,
                args.spark_s3 and i == 0,
            )
        )
    print()
    print_table(
        [
            "events",
            "engine",
            "stage",
            "wall s",
            "CPU s",
            "broker CPU s",
            "events/s",
            "peak RSS MB",
            "load after (1/5/15)",
        ],
        [
            [
                r["size"],
                r["engine"],
                r["stage"],
                r["wall_s"],
                r["cpu_s"],
                r["broker_cpu_s"],
                r["rate"],
                r["peak_rss_mb"],
                r["load"].removeprefix("load ").split(" (")[0],
            ]
            for r in rows
        ],
    )
    _linearity(rows)
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
