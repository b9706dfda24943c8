"""Delta maintenance: files, bytes and a gold rebuild's time on a lake after N micro-batches,
before vs after `lakehouse lake maintain` (same lake, same run).

    .venv/bin/python bench/maintenance.py                  # 1,000 micro-batches of 50 orders
    .venv/bin/python bench/maintenance.py --batches 100    # smoke

No broker: each micro-batch appends raw `orders` rows (RAW_SCHEMA, as ingestion writes them,
one Delta commit each); the shipped silver step (`build_silver`: read the new raw files,
transform, anti-join, append) runs after every `--silver-every` raw batches (default 10: a silver run
every 10 raw micro-batches, as when the sensor's runs queue up). Then the whole gold job (`dbt build`, every model and test, through
`lake.gold.run_dbt`) is timed, the lake maintained (`lake.maintenance.maintain_lake`, default
settings), and the same gold build timed again. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from _common import Timer, load, machine, print_table, raw_orders_table
from deltalake import DeltaTable, write_deltalake

from lake.gold import prepare_manifest, run_dbt
from lake.maintenance import file_stats, maintain_lake
from lake.silver import build_silver
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings


def _files(settings: Settings) -> tuple[int, int, int, int]:
    raw = file_stats(DeltaTable(raw_uri(settings, "orders")))
    silver = file_stats(DeltaTable(silver_uri(settings, "silver_orders")))
    return raw[0], raw[1], silver[0], silver[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--orders-per-batch", type=int, default=50)
    parser.add_argument("--silver-every", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="bench-maintenance-")
    os.environ["LAKEHOUSE_HOME"] = home
    os.environ.setdefault("OPENLINEAGE_DISABLED", "true")
    settings = Settings.from_env()
    print(f"{machine()}; {load()}", flush=True)
    try:
        offsets = [0, 0, 0]
        built = Timer()
        for b in range(args.batches):
            raw = raw_orders_table(
                args.orders_per_batch,
                duplicate_fraction=0.0,
                seed=b,
                first_id=b * args.orders_per_batch,
                first_offsets=offsets,
            )
            for p in range(3):
                offsets[p] += sum(1 for x in raw["partition"].to_pylist() if x == p)
            write_deltalake(
                raw_uri(settings, "orders"), raw, mode="append", partition_by=["ingest_date"]
            )
            if (b + 1) % args.silver_every == 0 or b + 1 == args.batches:
                build_silver(settings, "silver_orders")
            if (b + 1) % 100 == 0:
                print(f"  {b + 1} micro-batches in {built.seconds:.0f} s", flush=True)
        prepare_manifest(settings)
        before = _files(settings)
        gold_before = Timer()
        run_dbt(settings, ["build"])
        gold_before_s = gold_before.seconds
        maintained = Timer()
        report = maintain_lake(settings, progress=lambda line: print("  " + line, flush=True))
        maintain_s = maintained.seconds
        after = _files(settings)
        gold_after = Timer()
        run_dbt(settings, ["build"])
        gold_after_s = gold_after.seconds
        print(
            f"\n{args.batches} raw micro-batches of {args.orders_per_batch} orders, silver every "
            f"{args.silver_every}; {load()}"
        )
        print_table(
            [
                "",
                "raw_orders files",
                "raw MB",
                "silver_orders files",
                "silver MB",
                "gold dbt build s",
            ],
            [
                [
                    "before maintenance",
                    before[0],
                    before[1] / 1e6,
                    before[2],
                    before[3] / 1e6,
                    gold_before_s,
                ],
                [
                    "after maintenance",
                    after[0],
                    after[1] / 1e6,
                    after[2],
                    after[3] / 1e6,
                    gold_after_s,
                ],
            ],
        )
        print(
            f"maintenance of {len(report.tables)} tables: {maintain_s:.1f} s ({report.summary()})"
        )
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"lake kept in {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
