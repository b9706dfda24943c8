"""raw -> silver_orders -> gold daily_sales: the default engine (DuckDB + deltalake + the dbt
project) vs PySpark local[2].

    .venv/bin/python bench/silver_gold.py                 # 450,000 orders, ~1.03M order lines
    .venv/bin/python bench/silver_gold.py --quick         # 50,000 orders (smoke)
    .venv/bin/python bench/silver_gold.py --orders 900000

No broker: raw `orders` rows (RAW_SCHEMA, seed-shaped JSON, 1-5 items, 0.5 % re-delivered
duplicates) are generated in Arrow and written as a raw Delta table in several commits (one
Parquet file each, like micro-batches). Then, on the same files:

  (a) default engine: `lake.silver.build_silver(settings, "silver_orders")` (read the raw
      Delta files, DuckDB transform, write the silver Delta table), then gold with the real
      dbt project through `lake.gold.run_dbt` (what the gold asset runs): the whole gold job
      (`dbt build`: seeds, every model and test, published into the gold DuckDB file), then
      the `daily_sales` model alone (`dbt build --select daily_sales`: model + its tests);
      and, separately, the pure transform (Arrow in, Arrow out);
  (b) PySpark local[2]: session start-up; read the raw table's Parquet files
      (`DeltaTable.file_uris()`), the same transform, silver written as Parquet (partitioned
      by order_date like the Delta table); daily_sales from that Parquet, written as Parquet;
      and the pure transform (noop sink).

Checks that both engines produced identical silver rows (sorted, every column, exact) and the
same daily_sales as the dbt model (units exact, revenue within the model's rounding to the
cent). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from _common import (
    Timer,
    child_pids,
    load,
    machine,
    peak_rss_mb,
    print_table,
    proc_peak_rss_mb,
    raw_orders_table,
)
from deltalake import DeltaTable, write_deltalake

from lake.gold import prepare_manifest, read_gold, run_dbt
from lake.silver import SPECS, build_silver, transform
from lake.tables import SILVER_ORDERS_SCHEMA, raw_uri, silver_uri
from lakehouse.config import Settings


def dbt_daily_sales(settings: Settings) -> pa.Table:
    """The dbt model's rows, read from the published gold DuckDB file."""
    return read_gold(settings, "SELECT d, city, sku, units, revenue FROM daily_sales")


def write_raw(home: str, n_orders: int, files: int) -> tuple[int, float, float]:
    """Generate the raw rows and append them to the raw Delta table in `files` commits."""
    settings = Settings.from_env({"LAKEHOUSE_HOME": home})
    timer = Timer()
    raw = raw_orders_table(n_orders)
    generate_s = timer.seconds
    timer = Timer()
    step = -(-raw.num_rows // files)
    for lo in range(0, raw.num_rows, step):
        write_deltalake(
            raw_uri(settings, "orders"),
            raw.slice(lo, step),
            mode="append",
            partition_by=["ingest_date"],
        )
    return raw.num_rows, generate_s, timer.seconds


def _java_pid() -> int | None:
    for pid in child_pids(os.getpid()):
        try:
            if b"java" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def _compare_silver(duck: pa.Table, spark: pa.Table) -> str:
    if duck.num_rows != spark.num_rows:
        return f"DIFFERENT row counts: default {duck.num_rows:,}, spark {spark.num_rows:,}"
    keys = ["order_id", "line"]
    duck, spark = _sorted(duck, keys), _sorted(spark, keys)
    differing = [
        name
        for name in duck.column_names
        if not duck[name].combine_chunks().equals(spark[name].combine_chunks())
    ]
    if differing:
        return f"DIFFERENT columns {differing}"
    return f"identical: {duck.num_rows:,} rows, all {duck.num_columns} columns equal (sorted)"


def _compare_daily(dbt_model: pa.Table, spark: pa.Table) -> str:
    """The dbt model rounds revenue to the cent; Spark's sum is unrounded."""
    keys = ["d", "city", "sku"]
    dbt_model = _sorted(dbt_model.select([*keys, "units", "revenue"]), keys)
    spark = _sorted(spark.select([*keys, "units", "revenue"]).cast(dbt_model.schema), keys)
    if dbt_model.num_rows != spark.num_rows:
        return f"DIFFERENT row counts: dbt {dbt_model.num_rows:,}, spark {spark.num_rows:,}"
    same_keys = all(dbt_model[k].equals(spark[k]) for k in [*keys, "units"])
    diff = pc.max(pc.abs(pc.subtract(dbt_model["revenue"], spark["revenue"]))).as_py() or 0.0
    if same_keys and diff <= 0.005 + 1e-6:
        return (
            f"identical: {dbt_model.num_rows:,} rows, keys and units equal, revenue max |diff| "
            f"{diff:.1e} (≤ half a cent: the dbt model rounds to the cent)"
        )
    return f"DIFFERENT: keys/units equal {same_keys}, revenue max |diff| {diff}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=450_000)
    parser.add_argument("--quick", action="store_true", help="50,000 orders (smoke run)")
    parser.add_argument("--files", type=int, default=5, help="raw commits (one file each)")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake")
    args = parser.parse_args(argv)
    n_orders = 50_000 if args.quick else args.orders

    home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-silver-", dir="/tmp"))
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    versions = ", ".join(f"{p} {version(p)}" for p in ("duckdb", "deltalake", "pyarrow", "pyspark"))
    print(f"bench/silver_gold.py: {n_orders:,} orders; {machine()}; {versions}")
    print(f"lake {settings.lake_root}; {load()}", flush=True)
    spark = None
    try:
        # ---- raw Delta table (built in a child process: its memory is not ours) -------------
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            raw_rows, generate_s, write_s = pool.submit(
                write_raw, str(home), n_orders, args.files
            ).result()
        raw_table = DeltaTable(raw_uri(settings, "orders"))
        raw_mb = sum(Path(u.removeprefix("file://")).stat().st_size for u in raw_table.file_uris())
        print(
            f"raw: {raw_rows:,} rows generated in {generate_s:.1f}s, written as "
            f"{len(raw_table.file_uris())} Delta files ({raw_mb / 2**20:.0f} MB) in "
            f"{write_s:.1f}s; {load()}",
            flush=True,
        )

        # ---- (a) default engine: DuckDB + deltalake ---------------------------------------
        print(f"\n--- (a) default engine ({load()})", flush=True)
        timer = Timer()
        result = build_silver(settings, "silver_orders")
        build_s = timer.seconds
        lines = result.rows_inserted
        print(f"build_silver: {result.summary()}", flush=True)
        silver_ds = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_dataset()
        prepare_manifest(settings)  # dbt parse, as `make venv` does (not timed)
        timer = Timer()
        run_dbt(settings, ["build"])  # the gold job: seeds, every model and test
        gold_job_s = timer.seconds
        timer = Timer()
        run_dbt(settings, ["build", "--select", "daily_sales"])  # the model + its tests again
        daily_s = timer.seconds
        daily_duck = dbt_daily_sales(settings)
        default_rss = peak_rss_mb()
        timer = Timer()
        raw_batch = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_dataset().to_table()
        read_raw_s = timer.seconds
        timer = Timer()
        transformed = transform(SPECS["silver_orders"], raw_batch, settings.pii_hash_key)
        transform_s = timer.seconds
        del raw_batch, transformed
        print(
            f"dbt build daily_sales {daily_s:.1f}s ({daily_duck.num_rows:,} rows), whole gold "
            f"job (dbt build) {gold_job_s:.1f}s; pure transform "
            f"{transform_s:.1f}s (+ {read_raw_s:.1f}s reading raw); peak RSS "
            f"{default_rss:.0f} MB; {load()}",
            flush=True,
        )

        # ---- (b) PySpark local[2] --------------------------------------------------------
        from lake.spark_silver import (
            local_spark,
            read_delta,
            spark_daily_sales,
            spark_silver_orders,
        )

        print(f"\n--- (b) PySpark local[2] ({load()})", flush=True)
        out = home / "spark"
        timer = Timer()
        spark = local_spark("bench-silver-gold", cores=2, driver_memory=args.driver_memory)
        start_s = timer.seconds
        key = settings.pii_hash_key
        timer = Timer()
        silver_df = spark_silver_orders(spark, read_delta(spark, raw_uri(settings, "orders")), key)
        silver_df.write.mode("overwrite").partitionBy("order_date").parquet(
            str(out / "silver_orders")
        )
        spark_silver_s = timer.seconds
        timer = Timer()
        spark_daily_sales(spark.read.parquet(str(out / "silver_orders"))).write.mode(
            "overwrite"
        ).parquet(str(out / "daily_sales"))
        spark_daily_s = timer.seconds
        timer = Timer()
        spark_silver_orders(
            spark, read_delta(spark, raw_uri(settings, "orders")), key
        ).write.format("noop").mode("overwrite").save()
        spark_transform_s = timer.seconds
        timer = Timer()  # the silver job again, in a warm JVM: Spark's best case
        spark_silver_orders(spark, read_delta(spark, raw_uri(settings, "orders")), key).write.mode(
            "overwrite"
        ).partitionBy("order_date").parquet(str(out / "silver_warm"))
        spark_silver_warm_s = timer.seconds
        java = _java_pid()
        jvm_rss = proc_peak_rss_mb(java) if java else None
        print(
            f"start-up {start_s:.1f}s, silver {spark_silver_s:.1f}s, daily_sales "
            f"{spark_daily_s:.1f}s, pure transform {spark_transform_s:.1f}s, silver again (warm "
            f"JVM) {spark_silver_warm_s:.1f}s; JVM peak RSS "
            f"{jvm_rss or float('nan'):.0f} MB; {load()}",
            flush=True,
        )
        spark.stop()
        spark = None

        # ---- same rows? ------------------------------------------------------------------
        duck_silver = silver_ds.to_table().select(SILVER_ORDERS_SCHEMA.names)
        spark_silver = (
            pads.dataset(
                str(out / "silver_orders"),
                format="parquet",
                partitioning=pads.partitioning(
                    pa.schema([("order_date", pa.date32())]), flavor="hive"
                ),
            )
            .to_table()
            .select(SILVER_ORDERS_SCHEMA.names)
            .cast(SILVER_ORDERS_SCHEMA)
        )
        silver_check = _compare_silver(duck_silver.cast(SILVER_ORDERS_SCHEMA), spark_silver)
        del duck_silver, spark_silver
        daily_spark = pads.dataset(str(out / "daily_sales"), format="parquet").to_table()
        daily_check = _compare_daily(daily_duck, daily_spark)

        # ---- table -----------------------------------------------------------------------
        default_total = build_s + daily_s  # the same work as Spark: silver + daily_sales
        spark_total = spark_silver_s + spark_daily_s
        spark_warm_total = spark_silver_warm_s + spark_daily_s
        rows = [
            ["(a) default: build_silver (read raw Delta + transform + write Delta)", build_s],
            ["(a) default: gold daily_sales (dbt build --select daily_sales)", daily_s],
            ["(a) default: total (build_silver + dbt daily_sales)", default_total],
            ["(a) default: whole gold job (dbt build, every model and test)", gold_job_s],
            ["(a) default: pure transform (Arrow -> Arrow, DuckDB)", transform_s],
            ["(b) spark: session start-up", start_s],
            ["(b) spark: silver (read raw Parquet + transform + write Parquet)", spark_silver_s],
            ["(b) spark: daily_sales (read silver Parquet, write Parquet)", spark_daily_s],
            ["(b) spark: total without start-up", spark_total],
            ["(b) spark: total with start-up", spark_total + start_s],
            ["(b) spark: pure transform (noop sink, warm JVM)", spark_transform_s],
            ["(b) spark: silver again, warm JVM (Spark's best case)", spark_silver_warm_s],
            ["(b) spark: total, warm JVM (silver again + daily_sales)", spark_warm_total],
        ]
        print(
            f"\n{raw_rows:,} raw rows -> {lines:,} silver order lines -> "
            f"{daily_duck.num_rows:,} daily_sales rows (rows/s = silver order lines per second)\n"
        )
        print_table(
            ["step", "seconds", "rows/s"],
            [
                [
                    label,
                    s,
                    lines / s if s and not label.endswith("session start-up") else float("nan"),
                ]
                for label, s in rows
            ],
        )
        speedup = spark_total / default_total
        speedup_start = (spark_total + start_s) / default_total
        speedup_warm = spark_warm_total / default_total
        print(
            f"\nspeed-up of the default engine over PySpark: {speedup:.1f}x without Spark "
            f"start-up, {speedup_start:.1f}x with it, {speedup_warm:.1f}x against a warm JVM; "
            f"pure transform {spark_transform_s / transform_s:.1f}x"
        )
        verdict = "met" if speedup >= 5 else "NOT met"
        print(
            f"target default >= 5x faster than PySpark (without start-up): {verdict} "
            f"({speedup:.1f}x; warm JVM {speedup_warm:.1f}x)"
        )
        print(f"silver rows: {silver_check}")
        print(f"daily_sales: {daily_check}")
        print(
            f"peak RSS: python process {default_rss:.0f} MB after the default engine, "
            f"{peak_rss_mb():.0f} MB at the end (incl. the comparison); Spark JVM "
            f"{jvm_rss or float('nan'):.0f} MB; {load()}"
        )
    finally:
        if spark is not None:
            spark.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
