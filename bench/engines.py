"""Silver on the two engines: LAKEHOUSE_ENGINE=duckdb against LAKEHOUSE_ENGINE=spark local[2].

    .venv/bin/python bench/engines.py                  # 200,000 orders (~450,000 lines)
    .venv/bin/python bench/engines.py --orders 50000   # smoke

What ships, default configuration: raw `orders` rows with the customer id AES-GCM encrypted
per subject (governance.crypto, as ingestion writes them), in several raw commits; then, on
two copies of that lake, the whole silver build of `silver_orders` by each engine's own
function — `lake.silver.build_silver` (DuckDB transform, anti-join, Delta append) and
`lake.spark_silver.build_silver_spark` (Spark tasks decrypt, transform, write Parquet; the
driver commits) — first on an empty silver table, then for a second micro-batch (10 % new
orders, 5 % re-deliveries: each engine's anti-join). The Spark session's start is
timed apart (a Dagster run pays it once). Checks both lakes end with identical silver rows.
Prints figures and the load average, asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from _common import Timer, load, machine, print_table, raw_orders_table
from deltalake import DeltaTable, write_deltalake

from governance.crypto import encrypt_raw
from lake.silver import build_silver
from lake.tables import RAW_SCHEMA, raw_uri, silver_uri
from lakehouse.config import Settings


def _raw(settings: Settings, n: int, first_id: int, offsets: dict[int, int]) -> pa.Table:
    table = raw_orders_table(
        n, first_id=first_id, first_offsets=[offsets.get(p, 0) for p in range(3)]
    )
    for p in range(3):
        mine = table.filter(pc.equal(table["partition"], p))
        if mine.num_rows:
            offsets[p] = pc.max(mine["offset"]).as_py() + 1
    return encrypt_raw(settings, "orders", table)


def _write(settings: Settings, table: pa.Table, commits: int) -> None:
    step = -(-table.num_rows // commits)
    for start in range(0, table.num_rows, step):
        write_deltalake(
            raw_uri(settings, "orders"),
            table.slice(start, step),
            mode="append",
            partition_by=["ingest_date"],
        )


def _silver_rows(settings: Settings) -> pa.Table:
    table = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    return table.sort_by([("order_id", "ascending"), ("line", "ascending")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--commits", type=int, default=8, help="raw commits of the first batch")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    try:
        base = Settings.from_env({"LAKEHOUSE_HOME": str(root / "base")})
        offsets: dict[int, int] = {}
        first = _raw(base, args.orders, 0, offsets)
        second_new = _raw(base, args.orders // 10, args.orders, offsets)
        # re-deliveries: the first 5 % of the first batch again, at later offsets
        again = first.slice(0, args.orders // 20)
        redelivered = again.set_column(
            RAW_SCHEMA.get_field_index("offset"),
            RAW_SCHEMA.field("offset"),
            pa.array(range(10**9, 10**9 + again.num_rows), pa.int64()),
        )
        second = pa.concat_tables([second_new, redelivered])
        _write(base, first, args.commits)
        homes = {e: root / e for e in ("duckdb", "spark")}
        for home in homes.values():
            shutil.copytree(root / "base", home)
        duck = Settings.from_env({"LAKEHOUSE_HOME": str(homes["duckdb"])})
        spark_settings = Settings.from_env({"LAKEHOUSE_HOME": str(homes["spark"])})

        t = Timer()
        duck_first = build_silver(duck, "silver_orders")
        duck_first_s = t.seconds

        from lake.spark_silver import build_silver_spark, local_spark

        t = Timer()
        spark = local_spark("bench-engines", cores=2)
        spark.range(1).count()
        start_s = t.seconds
        t = Timer()
        spark_first = build_silver_spark(spark_settings, spark, "silver_orders")
        spark_first_s = t.seconds
        load_after_first = load()

        for settings in (duck, spark_settings):
            write_deltalake(
                raw_uri(settings, "orders"), second, mode="append", partition_by=["ingest_date"]
            )
        t = Timer()
        duck_second = build_silver(duck, "silver_orders")
        duck_second_s = t.seconds
        t = Timer()
        spark_second = build_silver_spark(spark_settings, spark, "silver_orders")
        spark_second_s = t.seconds
        spark.stop()

        same = _silver_rows(duck).equals(_silver_rows(spark_settings))
        lines = duck_first.rows_inserted
        print(machine())
        print(f"raw orders: {first.num_rows:,} (+ {second.num_rows:,} in the second batch)")
        print(
            f"silver lines: {lines:,} then +{duck_second.rows_inserted:,} "
            f"({duck_second.duplicates_skipped:,} duplicates skipped)"
        )
        print(f"identical silver rows on both engines: {same}")
        print_table(
            ["step", "duckdb s", "spark local[2] s", "spark / duckdb"],
            [
                ["spark session start (once per run)", 0.0, start_s, ""],
                [
                    f"first batch: {lines:,} lines into an empty table",
                    duck_first_s,
                    spark_first_s,
                    f"{spark_first_s / duck_first_s:.1f}x",
                ],
                [
                    f"second batch: +{duck_second.rows_inserted:,}, anti-join on both",
                    duck_second_s,
                    spark_second_s,
                    f"{spark_second_s / duck_second_s:.1f}x",
                ],
            ],
        )
        for name, seconds in (("duckdb", duck_first_s), ("spark local[2]", spark_first_s)):
            print(
                f"{name}: {lines / seconds:,.0f} lines/s on 2 cores, "
                f"{lines / seconds / 2:,.0f} lines/s per core (first batch)"
            )
        print(
            f"rows inserted, spark vs duckdb: {spark_first.rows_inserted:,} vs {lines:,}, "
            f"{spark_second.rows_inserted:,} vs {duck_second.rows_inserted:,}"
        )
        print(f"load average after the first batch: {load_after_first}; at the end: {load()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
