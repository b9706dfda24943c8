"""Ingestion benchmark: Kafka `orders` -> raw Delta, exactly-once path vs plain consume loops.

    .venv/bin/python bench/ingest.py              # 1,000,000 events
    .venv/bin/python bench/ingest.py --quick      # 100,000 events (smoke)
    .venv/bin/python bench/ingest.py --profile    # + where the exactly-once path spends time

Starts its own embedded broker (own LAKEHOUSE_HOME under /tmp, port 19300 by default), creates
`orders` with 3 partitions, produces N seed-shaped JSON orders with the project's
`kafka_client.produce`, then reads the same topic data with:

  (a) the exactly-once path: `ingest_batch` until caught up (consume + DuckDB JSON-Schema
      validation + Delta append with the offsets in the commit);
  (b) the ceiling: a plain kafka-python assign/seek/poll loop that writes nothing, with the
      project's consumer settings (measured before and after (a); the faster run is the ceiling);
  (c) a plain confluent-kafka loop, as a second reference.

Each path runs in a fresh process (spawn), so its peak RSS and CPU time are its own. Prints
figures, asserts nothing. Stops the broker and removes its folder at the end.
`--profile` adds, after the main table (which stays unprofiled), one batch of (a) replayed step
by step with wall and CPU times plus what-ifs, and a whole (a) run under cProfile, each into a
lake of its own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _common import Timer, load, machine, order_events, peak_rss_mb, percentile, print_table

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings

TOPIC = "orders"

# cProfile stages of one exactly-once batch: (label, module file suffix, function name)
STAGES = (
    ("probe high-water marks", "kafka_client.py", "probe_high_watermarks"),
    ("lake offsets (Delta log)", "raw.py", "lake_offsets"),
    ("broker-vs-lake check", "raw.py", "_check_broker_matches_lake"),
    ("consume (read_range: poll + Arrow chunks)", "kafka_client.py", "read_range"),
    ("  of which KafkaConsumer.poll", "consumer/group.py", "poll"),
    ("  of which Arrow columns (records_table)", "kafka_client.py", "records_table"),
    ("DuckDB JSON-Schema validation", "validation.py", "validate"),
    ("dead letters", "raw.py", "_write_dead_letters"),
    ("raw rows (_raw_rows)", "raw.py", "_raw_rows"),
    ("Delta append (write_deltalake)", "deltalake/writer/writer.py", "write_deltalake"),
    ("last record per partition + fingerprints", "raw.py", "_last_records"),
)


# ---- the measured paths (each runs in its own process) -----------------------------------
def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_exactly_once(env: dict[str, str], bootstrap: str, profile: bool) -> dict[str, Any]:
    from ingestion.raw import ingest_batch  # imported here: the child's own import cost

    settings = Settings.from_env(env)
    profiler = cProfile.Profile() if profile else None
    latencies: list[float] = []
    rows = dead = records = 0
    cpu0 = _cpu_seconds()
    timer = Timer()
    while True:
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = ingest_batch(settings, TOPIC, bootstrap)
        if profiler is not None:
            profiler.disable()
        if result.records_read == 0:  # only when the previous batch left no lag
            break
        latencies.append(time.perf_counter() - started)
        rows += result.rows_written
        dead += result.dead_letters
        records += result.records_read
        if sum(result.lag.values()) == 0:
            break
    seconds = timer.seconds
    out: dict[str, Any] = {
        "events": records,
        "seconds": seconds,
        "rows_written": rows,
        "dead_letters": dead,
        "latencies": latencies,
        "peak_rss_mb": peak_rss_mb(),
        "cpu_s": _cpu_seconds() - cpu0,
        "load": load(),
    }
    if profiler is not None:
        out["profile"] = _profile_report(profiler, seconds)
    return out


def _profile_report(profiler: cProfile.Profile, wall: float) -> str:
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())  # total own time = profiled time
    lines = [f"profiled {total:.1f}s of {wall:.1f}s wall (cumulative time per stage)"]
    for label, suffix, name in STAGES:
        cum = sum(
            v[3] for (file, _, func), v in raw.items() if func == name and file.endswith(suffix)
        )
        lines.append(f"  {label:<46} {cum:7.2f}s  {100 * cum / max(total, 1e-9):5.1f} %")
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(15)
    lines.append("top 15 functions by own time:")
    lines.extend(
        "  " + line for line in buffer.getvalue().splitlines() if line.strip() and "/" in line
    )
    return "\n".join(lines)


def run_kafka_python(bootstrap: str, high_watermarks: dict[int, int]) -> dict[str, Any]:
    from kafka import TopicPartition

    consumer = kafka_client._consumer(bootstrap)  # the project's consumer settings
    cpu0 = _cpu_seconds()
    timer = Timer()
    count = nbytes = 0
    try:
        tps = [TopicPartition(TOPIC, p) for p in sorted(high_watermarks)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        todo = {tp for tp in tps if high_watermarks[tp.partition] > 0}
        deadline = time.monotonic() + 600
        while todo and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500, max_records=50_000)
            for tp, msgs in polled.items():
                count += len(msgs)
                nbytes += sum(len(m.value) for m in msgs)
                if msgs and msgs[-1].offset + 1 >= high_watermarks[tp.partition]:
                    todo.discard(tp)
                    consumer.pause(tp)
        seconds = timer.seconds
    finally:
        consumer.close()
    return _loop_result(count, seconds, nbytes, cpu0)


def _loop_result(count: int, seconds: float, nbytes: int, cpu0: float) -> dict[str, Any]:
    """Figures of a plain consume loop, measured in its own process."""
    return {
        "events": count,
        "seconds": seconds,
        "bytes": nbytes,
        "peak_rss_mb": peak_rss_mb(),
        "cpu_s": _cpu_seconds() - cpu0,
        "load": load(),
    }


def run_confluent(bootstrap: str, high_watermarks: dict[int, int]) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-ingest-ceiling",  # required by the client; assign() never joins
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 32 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    cpu0 = _cpu_seconds()
    timer = Timer()
    count = nbytes = 0
    try:
        consumer.assign(
            [TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in sorted(high_watermarks)]
        )
        todo = {p for p, hw in high_watermarks.items() if hw > 0}
        deadline = time.monotonic() + 600
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    raise RuntimeError(str(msg.error()))
                count += 1
                nbytes += len(msg.value() or b"")
                if msg.offset() + 1 >= high_watermarks[msg.partition()]:
                    todo.discard(msg.partition())
        seconds = timer.seconds
    finally:
        consumer.close()
    return _loop_result(count, seconds, nbytes, cpu0)


def _plain_poll(bootstrap: str, high_watermarks: dict[int, int], cap: int, **overrides: Any) -> int:
    from kafka import TopicPartition

    consumer = kafka_client._consumer(bootstrap, **overrides)
    count = 0
    try:
        tps = [TopicPartition(TOPIC, p) for p in sorted(high_watermarks)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        target = min(cap, sum(high_watermarks.values()))
        while count < target:
            polled = consumer.poll(timeout_ms=500, max_records=min(50_000, target - count))
            count += sum(len(msgs) for msgs in polled.values())
    finally:
        consumer.close()
    return count


def _read_last_small_fetch(bootstrap: str, offsets: dict[int, int]) -> dict[int, bytes | None]:
    """The record at `offsets[p]` of each partition, fetching at most 64 KiB per request."""
    from kafka import TopicPartition

    consumer = kafka_client._consumer(
        bootstrap, fetch_max_bytes=1 << 16, max_partition_fetch_bytes=1 << 16
    )
    found: dict[int, bytes | None] = {}
    try:
        tps = {p: TopicPartition(TOPIC, p) for p in offsets}
        consumer.assign(list(tps.values()))
        for p, offset in offsets.items():
            consumer.seek(tps[p], offset)
        deadline = time.monotonic() + 10
        while len(found) < len(offsets) and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=500, max_records=len(offsets)).items():
                for m in msgs:
                    if m.offset == offsets[tp.partition]:
                        found[tp.partition] = m.value
                        consumer.pause(tp)
    finally:
        consumer.close()
    return found


def _confluent_to_arrow(bootstrap: str, high_watermarks: dict[int, int], cap: int) -> Any:
    import pyarrow as pa
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from lake.tables import RAW_SCHEMA

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-ingest-stages",
            "enable.auto.commit": False,
            "fetch.max.bytes": 32 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    partitions: list[int] = []
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    stamps: list[int] = []
    headers: list[list[dict[str, Any]]] = []
    try:
        consumer.assign(
            [TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in sorted(high_watermarks)]
        )
        target = min(cap, sum(high_watermarks.values()))
        while len(offsets) < target:
            want = min(10_000, target - len(offsets))
            for msg in consumer.consume(num_messages=want, timeout=0.5):
                if msg.error():
                    raise RuntimeError(str(msg.error()))
                partitions.append(msg.partition())
                offsets.append(msg.offset())
                keys.append(msg.key())
                values.append(msg.value())
                stamps.append(msg.timestamp()[1])
                headers.append([{"key": k, "value": v} for k, v in msg.headers() or ()])
    finally:
        consumer.close()
    return pa.table(
        {
            "partition": pa.array(partitions, pa.int32()),
            "offset": pa.array(offsets, pa.int64()),
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.large_binary()),
            "timestamp_ms": pa.array(stamps, pa.int64()),
            "headers": pa.array(headers, RAW_SCHEMA.field("headers").type),
        }
    )


def run_stages(
    env: dict[str, str], bootstrap: str, high_watermarks: dict[int, int], cap: int
) -> dict[str, Any]:
    """The steps of one `ingest_batch` replayed one by one on its first `cap` records (into a
    separate raw table), each timed in wall and CPU seconds (CPU > wall = several threads),
    then what-ifs on the same records. No profiler overhead, unlike cProfile."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    from ingestion import raw as raw_module
    from ingestion.contracts import contract
    from ingestion.validation import validate
    from lake.tables import raw_uri

    settings = Settings.from_env(env)
    steps: list[tuple[str, float, float]] = []

    def step(label: str, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        steps.append((label, time.perf_counter() - wall, time.process_time() - cpu))
        return out

    start = dict.fromkeys(high_watermarks, 0)
    step("probe high-water marks", lambda: kafka_client.probe_high_watermarks(bootstrap, TOPIC))
    batch = step(
        "consume: read_range -> Arrow chunks, concatenated",
        lambda: pa.concat_tables(
            kafka_client.read_range(bootstrap, TOPIC, start, high_watermarks, max_records=cap)
        ),
    )
    reasons = step("DuckDB JSON-Schema validation", lambda: validate(batch, contract(TOPIC).schema))
    now = datetime.now(UTC)
    good = batch.filter(pc.invert(pc.is_valid(reasons)))
    rows = step("raw rows (_raw_rows)", lambda: raw_module._raw_rows(good, TOPIC, 0, "stages", now))
    step(
        "Delta append (write_deltalake)",
        lambda: write_deltalake(
            raw_uri(settings, TOPIC), rows, mode="append", partition_by=["ingest_date"]
        ),
    )
    n = batch.num_rows
    ends, fingerprints = step(
        "last record per partition + fingerprints", lambda: raw_module._last_records(batch)
    )
    state = raw_module.LakeOffsets(0, ends, fingerprints)
    step(
        "next batch's broker-vs-lake check (_check_broker_matches_lake)",
        lambda: raw_module._check_broker_matches_lake(bootstrap, TOPIC, state, high_watermarks),
    )
    last = {p: o - 1 for p, o in ends.items()}
    step(
        "what-if: that re-read with the default 32/8 MiB fetches",
        lambda: list(kafka_client.read_range(bootstrap, TOPIC, last, ends, idle_timeout_s=5)),
    )
    step(
        "what-if: that re-read with 64 KiB fetches",
        lambda: _read_last_small_fetch(bootstrap, last),
    )
    step(
        "what-if: plain kafka-python poll, same records",
        lambda: _plain_poll(bootstrap, high_watermarks, n),
    )
    step(
        "what-if: plain poll with check_crcs=False",
        lambda: _plain_poll(bootstrap, high_watermarks, n, check_crcs=False),
    )
    step(
        "what-if: confluent-kafka consume + Arrow arrays",
        lambda: _confluent_to_arrow(bootstrap, high_watermarks, n),
    )
    return {"records": n, "steps": steps}


# ---- driver -------------------------------------------------------------------------------
def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _process_cpu(pid: int) -> float:
    """utime + stime of a process (e.g. the broker), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    label: str, broker_pid: int | None, fn: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    print(f"\n--- {label}: running ({load()})", flush=True)
    broker_cpu0 = _process_cpu(broker_pid) if broker_pid else 0.0
    out = _in_child(fn, *args)
    out["broker_cpu_s"] = (_process_cpu(broker_pid) - broker_cpu0) if broker_pid else float("nan")
    out["rate"] = out["events"] / out["seconds"] if out["seconds"] else 0.0
    print(
        f"{label}: {out['events']:,} events in {out['seconds']:.1f}s = {out['rate']:,.0f} ev/s; "
        f"client CPU {out['cpu_s']:.1f}s, broker CPU {out['broker_cpu_s']:.1f}s, "
        f"peak RSS {out['peak_rss_mb']:.0f} MB; {out['load']}",
        flush=True,
    )
    return out


def _profile(
    env: dict[str, str],
    home: str,
    broker_pid: int | None,
    bootstrap: str,
    high_watermarks: dict[int, int],
    cap: int,
) -> None:
    """Where the exactly-once path spends its time: one batch replayed step by step (wall +
    CPU), then a whole run under cProfile (each into a lake of its own)."""
    print(f"\n--- (a) step by step, first batch ({load()})", flush=True)
    stages_env = {**env, "LAKEHOUSE_LAKE_ROOT": f"{home}/lake-stages"}
    out = _in_child(run_stages, stages_env, bootstrap, high_watermarks, cap)
    n = out["records"]
    print_table(
        ["step (one batch)", "wall s", "CPU s", "µs/record (wall)"],
        [[label, wall, cpu, 1e6 * wall / n] for label, wall, cpu in out["steps"]],
    )
    profiled_env = {**env, "LAKEHOUSE_LAKE_ROOT": f"{home}/lake-profiled"}
    a = _measure("(a) under cProfile", broker_pid, run_exactly_once, profiled_env, bootstrap, True)
    print("\n(a) cProfile:\n" + a["profile"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 events (smoke run)")
    parser.add_argument("--batch-records", type=int, default=250_000)
    parser.add_argument("--port", type=int, default=19300)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the exactly-once path")
    parser.add_argument("--keep", action="store_true", help="keep the LAKEHOUSE_HOME folder")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.events

    home = tempfile.mkdtemp(prefix="lakehouse-bench-ingest-", dir="/tmp")
    env = {
        "LAKEHOUSE_HOME": home,
        "LAKEHOUSE_BROKER_PORT": str(args.port),
        "LAKEHOUSE_TOPIC_PARTITIONS": str(args.partitions),
        "LAKEHOUSE_MAX_BATCH_RECORDS": str(args.batch_records),
    }
    settings = Settings.from_env(env)
    versions = ", ".join(
        f"{p} {version(p)}" for p in ("kafka-python", "confluent-kafka", "duckdb", "deltalake")
    )
    print(
        f"bench/ingest.py: {n:,} orders events, {args.partitions} partitions, "
        f"batch cap {args.batch_records:,}"
    )
    print(f"{machine()}; {versions}")
    print(f"LAKEHOUSE_HOME={home}, broker port {args.port}; {load()}", flush=True)

    broker = EmbeddedBroker(settings)
    broker.start()
    try:
        bootstrap = broker.bootstrap
        broker_pid = broker.status().pid
        kafka_client.ensure_topics(bootstrap, [TOPIC], args.partitions)

        timer = Timer()
        messages = list(order_events(n))
        generate_s = timer.seconds
        avg_bytes = sum(len(v) for _, v in messages) / max(n, 1)
        print(f"\ngenerated {n:,} events ({avg_bytes:.0f} bytes avg) in {generate_s:.1f}s")
        timer = Timer()
        sent = kafka_client.produce(bootstrap, TOPIC, messages)
        produce_s = timer.seconds
        del messages
        print(
            f"produced {sent:,} in {produce_s:.1f}s = {sent / produce_s:,.0f} msg/s "
            f"(kafka_client.produce: gzip, linger 20 ms, acks=all); {load()}",
            flush=True,
        )

        high_watermarks = kafka_client.probe_high_watermarks(bootstrap, TOPIC)
        print(f"high-water marks {high_watermarks} (sum {sum(high_watermarks.values()):,})")

        b1 = _measure(
            "(b) kafka-python plain consume",
            broker_pid,
            run_kafka_python,
            bootstrap,
            high_watermarks,
        )
        c = _measure(
            "(c) confluent-kafka plain consume",
            broker_pid,
            run_confluent,
            bootstrap,
            high_watermarks,
        )
        a = _measure(
            "(a) exactly-once ingest_batch",
            broker_pid,
            run_exactly_once,
            env,
            bootstrap,
            False,
        )
        b2 = _measure(
            "(b) kafka-python plain consume, again",
            broker_pid,
            run_kafka_python,
            bootstrap,
            high_watermarks,
        )
        ceiling = max(b1["rate"], b2["rate"])

        lat = a["latencies"]
        print(
            f"\n(a) {len(lat)} batches; per-batch latency P50 {percentile(lat, 50):.2f}s, "
            f"P95 {percentile(lat, 95):.2f}s, P99 {percentile(lat, 99):.2f}s, "
            f"max {max(lat, default=0):.2f}s; rows written {a['rows_written']:,}, "
            f"dead letters {a['dead_letters']:,} (expected {n:,} rows, 0 dead letters)"
        )
        if args.profile:
            _profile(env, home, broker_pid, bootstrap, high_watermarks, args.batch_records)

        print(f"\nproduce: {sent:,} events, {produce_s:.1f}s, {sent / produce_s:,.0f} msg/s\n")
        rows = []
        for label, r in (
            ("(a) exactly-once ingest_batch -> raw Delta", a),
            ("(b) kafka-python consume, no write (1st)", b1),
            ("(b) kafka-python consume, no write (2nd)", b2),
            ("(c) confluent-kafka consume, no write", c),
        ):
            rows.append(
                [
                    label,
                    r["events"],
                    r["seconds"],
                    r["rate"],
                    f"{100 * r['rate'] / ceiling:.0f} %",
                    r["cpu_s"],
                    r["broker_cpu_s"],
                    r["peak_rss_mb"],
                ]
            )
        print_table(
            [
                "path",
                "events",
                "seconds",
                "events/s",
                "% of ceiling",
                "client CPU s",
                "broker CPU s",
                "peak RSS MB",
            ],
            rows,
        )
        share = 100 * a["rate"] / ceiling
        verdict = "met" if share >= 50 else "NOT met"
        print(f"\ntarget (a) >= 50 % of (b): {share:.0f} % -> {verdict}; {load()}")
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
