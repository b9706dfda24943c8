"""Silver's deduplication of one batch against a large silver table: the shipped anti-join
(`lake.silver.fresh_rows`: stored keys read within the batch's key range per partition)
against the same anti-join over each touched partition's every key (its form before the
range), same table, same batches, same process.

    .venv/bin/python bench/silver_dedup.py                 # 16 commits of 500,000 lines
    .venv/bin/python bench/silver_dedup.py --commits 4     # smoke

The table has silver_orders' key (`order_id`, `line`) and partitioning (`order_date`, 30 days,
every commit touching every day: the worst case for reading partitions). Two batches of
500,000 lines: the stream's next one (order ids after the stored ones, 1,000 of them
re-delivered), and one whose ids span the whole table (nothing skippable: the range costs
what the whole partition costs). Prints CPU seconds and fresh rows; asserts that both forms
keep the same rows.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _common import load, machine, print_table
from deltalake import DeltaTable, QueryBuilder, write_deltalake

from lake.silver import fresh_rows

KEY = ("order_id", "line")
PARTITION = "order_date"
LINES = 500_000


def lines(ids: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([f"o_{i:010d}" for i in ids]),
            "line": pa.array((ids % 3 + 1).astype(np.int32)),
            PARTITION: pa.array(
                (np.datetime64("2025-08-01") + (ids * 7919 % 30)).astype("datetime64[D]")
            ),
            "qty": pa.array((ids % 5 + 1).astype(np.int32)),
        }
    )


def whole_partitions(target: DeltaTable, rows: pa.Table) -> pa.Table:
    """The peer: the anti-join against every stored key of each touched partition."""
    stored = QueryBuilder().register("target", target)
    con = duckdb.connect()
    con.register("batch", rows)
    parts = []
    for value in pc.unique(rows[PARTITION]):
        day = value.as_py().isoformat()
        existing = pa.table(
            stored.execute(
                f"SELECT order_id, line, {PARTITION} FROM target WHERE {PARTITION} = DATE '{day}'"
            ).read_all()
        )
        con.register("existing", existing)
        parts.append(
            con.sql(
                f"SELECT * FROM (SELECT * FROM batch WHERE {PARTITION} = DATE '{day}') "
                f"ANTI JOIN existing USING (order_id, line, {PARTITION})"
            ).to_arrow_table()
        )
        con.unregister("existing")
    con.close()
    return pa.concat_tables(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=16)
    args = parser.parse_args()
    if args.commits < 1:
        sys.exit("--commits must be at least 1")
    print(f"bench/silver_dedup.py: {machine()}\n{load()}", flush=True)
    root = tempfile.mkdtemp(prefix="bench-silver-dedup-")
    try:
        for commit in range(args.commits):
            ids = np.arange(commit * LINES, (commit + 1) * LINES)
            write_deltalake(root, lines(ids), mode="append", partition_by=[PARTITION])
        stored = args.commits * LINES
        print(f"silver table: {stored:,} lines in {args.commits} commits", flush=True)
        target = DeltaTable(root)
        rng = np.random.default_rng(7)
        batches = {
            "the stream's next batch": lines(np.arange(stored - 1_000, stored - 1_000 + LINES)),
            "ids spanning the table": lines(rng.choice(stored + LINES, LINES, replace=False)),
        }
        rows = []
        for label, batch in batches.items():
            for form, dedup in (
                ("within the batch's key range (shipped)", fresh_rows),
                ("whole partitions (peer)", None),
            ):
                cpu, wall = time.process_time(), time.monotonic()
                if dedup is None:
                    fresh = whole_partitions(target, batch)
                else:
                    fresh = dedup(target, batch, KEY, PARTITION)
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
                rows.append((label, form, fresh.num_rows, round(cpu, 2), round(wall, 2), load()))
                print(f"  {label}, {form}: {fresh.num_rows:,} fresh, {cpu:.2f} CPU s", flush=True)
            assert rows[-1][2] == rows[-2][2], "both forms must keep the same rows"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(["batch", "deduplication", "fresh rows", "CPU s", "wall s", "load after"], rows)


if __name__ == "__main__":
    main()
