"""Lineage + usage accounting overhead per micro-batch: the same raw + silver micro-batch with
its two lineage runs (START + COMPLETE each, schema facets, file transport = the default) and
its two `_usage` rows (UsageMeter + one Delta append per step, as every asset step records
them) vs without either, alternating in one process so both see the same machine.

    .venv/bin/python bench/lineage.py              # 40 micro-batches of 200 orders per arm
    .venv/bin/python bench/lineage.py --batches 10

No broker: a micro-batch appends raw `orders` rows (one Delta commit, as ingestion writes them)
and runs `build_silver` (read new raw files, transform, anti-join, append) — the work of `raw_orders` and
`silver_orders`, wrapped as `dagster_project/lineage.py` wraps them (lineage_run: emitter run
+ UsageMeter + `record_step_usage`, whose background `_usage` commits run during the following
batches, so their CPU is inside those batches' times). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack

from _common import load, machine, print_table, raw_orders_table
from deltalake import DeltaTable, write_deltalake

from dagster_project.lineage import record_step_usage
from lake.silver import build_silver
from lake.tables import RAW_SCHEMA, SILVER_ORDERS_SCHEMA, raw_uri, silver_uri
from lakehouse.config import Settings
from lakehouse.lineage import LineageEmitter, ParentRun, delta_dataset, kafka_dataset
from monitoring.usage import WRITER, UsageMeter, usage_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="micro-batches per arm")
    parser.add_argument("--orders-per-batch", type=int, default=200)
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="bench-lineage-")
    os.environ["LAKEHOUSE_HOME"] = home
    settings = Settings.from_env()
    emitter = LineageEmitter(settings)
    print(f"{machine()}; {load()}", flush=True)
    raw_ds = delta_dataset(settings, "raw_orders", raw_uri(settings, "orders"), RAW_SCHEMA)
    silver_ds = delta_dataset(
        settings, "silver_orders", silver_uri(settings, "silver_orders"), SILVER_ORDERS_SCHEMA
    )
    topic = kafka_dataset(settings, "orders")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    offsets = [0, 0, 0]
    try:
        for b in range(2 * args.batches + 2):
            with_lineage = b % 2 == 0
            raw = raw_orders_table(
                args.orders_per_batch,
                duplicate_fraction=0.0,
                seed=b,
                first_id=b * args.orders_per_batch,
                first_offsets=offsets,
            )
            for p in range(3):
                offsets[p] += raw["partition"].to_pylist().count(p)
            started = time.perf_counter()
            parent = ParentRun("dagster.ingest_orders", f"bench-{b}")
            with ExitStack() as stack:
                if with_lineage:
                    meter = stack.enter_context(UsageMeter())
                    run = stack.enter_context(
                        emitter.run("raw_orders", [topic], [raw_ds], parent=parent)
                    )
                write_deltalake(
                    raw_uri(settings, "orders"), raw, mode="append", partition_by=["ingest_date"]
                )
                if with_lineage:
                    run.set_output_stats("raw_orders", raw.num_rows)
                    stack.close()
                    record_step_usage(
                        settings,
                        f"bench-{b}",
                        "ingest_orders",
                        "raw_orders",
                        meter,
                        raw.num_rows,
                        True,
                    )
                    meter = stack.enter_context(UsageMeter())
                    run = stack.enter_context(
                        emitter.run("silver_orders", [raw_ds], [silver_ds], parent=parent)
                    )
                result = build_silver(settings, "silver_orders")
                if with_lineage:
                    run.set_output_stats("silver_orders", result.rows_inserted)
                    stack.close()
                    record_step_usage(
                        settings,
                        f"bench-{b}",
                        "ingest_orders",
                        "silver_orders",
                        meter,
                        result.rows_inserted,
                        True,
                    )
            if b >= 2:  # the first pair warms caches (imports, table creation)
                seconds[with_lineage].append(time.perf_counter() - started)
        WRITER.flush()
        usage_rows = DeltaTable(usage_uri(settings)).to_pyarrow_table().num_rows
        on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
        print(
            f"\n{args.batches} micro-batches per arm, {args.orders_per_batch} orders each; {load()}"
        )
        print_table(
            ["arm", "median batch ms", "mean batch ms", "events"],
            [
                [
                    "with lineage (file) + usage",
                    on * 1000,
                    statistics.mean(seconds[True]) * 1000,
                    emitter.emitted,
                ],
                ["without", off * 1000, statistics.mean(seconds[False]) * 1000, 0],
            ],
        )
        print(
            f"{usage_rows} usage rows written; lineage + usage overhead: {on - off:+.4f} s per "
            "micro-batch = "
            f"{(on - off) / off:+.1%} (median)"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
