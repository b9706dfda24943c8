"""Privacy benchmarks, each next to its peer in the same run.

    .venv/bin/python bench/privacy.py ingest [--events 300000]   # raw PII encryption on vs off
    .venv/bin/python bench/privacy.py erasure [--order-lines 1000000 --payments 500000]
    .venv/bin/python bench/privacy.py query [--runs 5]           # query --role vs plain DuckDB

ingest: one embedded broker, N seed-shaped orders produced once, then the whole exactly-once
  path (`ingest_batch` until caught up) into fresh lakes, encryption off and on alternately;
  each encrypted run's peer is the mean of the unencrypted runs before and after it. Encrypted
  runs: subjects new to the key store; known to it in a fresh process (every Dagster run is
  one: key-store reads); known in a process that already made their tokens (later batches of
  `lakehouse materialize --until-caught-up`). Reports events/s and the ratios.
erasure: a silver lake of order lines and payments written the way silver writes them
  (Delta, partitioned by day), gold present, then `lakehouse privacy forget` of one customer
  and of one account: wall time, rows deleted, files removed.
query: the same aggregate over silver_orders through `run_query` (policy session, masks,
  audit row) and in plain DuckDB over the Delta table.
Prints figures, asserts nothing; everything under a temporary LAKEHOUSE_HOME.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _common import load, machine, order_events, print_table


def _env(home: Path, **extra: str) -> None:
    for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        del os.environ[name]
    os.environ["LAKEHOUSE_HOME"] = str(home)
    os.environ.update(extra)


def bench_ingest(events: int, port: int) -> None:
    from governance import crypto
    from ingestion import kafka_client
    from ingestion.broker import EmbeddedBroker
    from ingestion.raw import ingest_batch
    from lakehouse.config import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    _env(root / "broker-home", LAKEHOUSE_BROKER_PORT=str(port))
    broker = EmbeddedBroker(Settings.from_env())
    broker.start()
    broker.ensure_topics()
    try:
        started = time.monotonic()
        kafka_client.produce(broker.bootstrap, "orders", order_events(events))
        print(f"produced {events:,} orders in {time.monotonic() - started:.1f}s", flush=True)
        rows = []
        keys = str(root / "keys" / "subject_keys.db")  # shared: the second "on" run knows them
        # every encrypted run between two unencrypted ones, its peers in time (shared machine)
        runs = [
            ("off", "off"),
            ("on, new subjects", "on"),
            ("off", "off"),
            ("on, known subjects, cold process", "on"),
            ("off", "off"),
            ("on, known subjects, warm process", "on"),
            ("off", "off"),
        ]
        for label, encryption in runs:
            # an encrypted run in a fresh ingest process starts with no token made; the warm one
            # keeps those of the encrypted run before it (the unencrypted runs use none)
            if encryption == "on" and "warm" not in label:
                crypto._token_caches.clear()
            home = root / f"lake-{len(rows)}"
            _env(
                home,
                LAKEHOUSE_BROKER_PORT=str(port),
                LAKEHOUSE_RAW_ENCRYPTION=encryption,
                LAKEHOUSE_KEY_STORE=keys,
            )
            settings = Settings.from_env()
            started, cpu = time.monotonic(), time.process_time()
            written = 0
            while True:
                result = ingest_batch(settings, "orders", broker.bootstrap)
                written += result.rows_written
                if result.records_read == 0 or sum(result.lag.values()) == 0:
                    break
            seconds, cpu = time.monotonic() - started, time.process_time() - cpu
            rows.append(
                (
                    f"encryption {label}",
                    written,
                    round(seconds, 2),
                    round(written / seconds),
                    round(cpu, 2),
                    load(),
                )
            )
            print(f"  encryption {label}: {written:,} rows in {seconds:.1f}s", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_table(["path", "rows", "seconds", "events/s", "CPU s (all threads)", "load after"], rows)
    for i in (1, 3, 5):  # each encrypted run against the mean of the unencrypted runs around it
        peer = (rows[i - 1][3] + rows[i + 1][3]) / 2
        cpu_peer = (rows[i - 1][4] + rows[i + 1][4]) / 2
        print(
            f"{rows[i][0]}: {rows[i][3] / peer:.0%} of the unencrypted rate around it, "
            f"{rows[i][4] / cpu_peer:.2f}x its CPU seconds"
        )


def _silver_lake(home: Path, order_lines: int, payments: int) -> tuple[str, str]:
    """silver_orders / silver_transactions written like silver writes them; returns one
    customer id and one account id present in them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    from governance.pii import pseudonym
    from lake.tables import SILVER_ORDERS_SCHEMA, SILVER_TRANSACTIONS_SCHEMA, silver_uri
    from lakehouse.config import Settings

    settings = Settings.from_env()
    rng = np.random.default_rng(3)
    key = settings.pii_hash_key
    customers = [pseudonym(f"c_{i}", key) for i in range(50_000)]
    accounts = [pseudonym(f"acc_{i}", key) for i in range(20_000)]
    start = datetime(2025, 8, 1, tzinfo=UTC)
    days = 30
    now = datetime.now(UTC)

    def ts(n: int) -> pa.Array:
        seconds = rng.integers(0, days * 86_400, n)
        return pa.array(
            [start + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")
        )

    n = order_lines
    stamps = ts(n)
    cust = pa.array(customers).take(pa.array(rng.integers(0, len(customers), n)))
    orders = pa.table(
        {
            "order_id": [f"o_{i // 2}" for i in range(n)],
            "line": pa.array((np.arange(n) % 2 + 1).astype(np.int32)),
            "ts": stamps,
            "order_date": pc.cast(stamps, pa.date32()),
            "customer_id_hash": cust,
            "channel": pa.array(["web"] * n),
            "store_id": pa.nulls(n, pa.string()),
            "city": pa.array(["Lille"] * n),
            "country": pa.array(["FR"] * n),
            "sku": pa.array([f"SKU{i % 200}" for i in range(n)]),
            "qty": pa.array(np.ones(n, np.int32)),
            "price": pa.array(np.full(n, 9.9)),
            "line_amount": pa.array(np.full(n, 9.9)),
            "source_epoch": pa.array(np.zeros(n, np.int32)),
            "source_partition": pa.array(np.zeros(n, np.int32)),
            "source_offset": pa.array(np.arange(n)),
            "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
    ).cast(SILVER_ORDERS_SCHEMA)
    write_deltalake(silver_uri(settings, "silver_orders"), orders, partition_by=["order_date"])
    m = payments
    stamps = ts(m)
    acc = pa.array(accounts).take(pa.array(rng.integers(0, len(accounts), m)))
    tx = pa.table(
        {
            "transaction_id": [f"tx_{i}" for i in range(m)],
            "ts": stamps,
            "tx_date": pc.cast(stamps, pa.date32()),
            "account_hash": acc,
            "card_hash": acc,
            "amount": pa.array(np.full(m, 20.0)),
            "currency": pa.array(["EUR"] * m),
            "merchant_id": pa.array([f"m_{i % 500}" for i in range(m)]),
            "merchant_category": pa.array(["grocery"] * m),
            "channel": pa.array(["ecom"] * m),
            "country": pa.array(["FR"] * m),
            "device_id": acc,
            "ip_hash": acc,
            "lat": pa.array(np.full(m, 48.85)),
            "lon": pa.array(np.full(m, 2.35)),
            "three_ds_status": pa.nulls(m, pa.string()),
            "source_epoch": pa.array(np.zeros(m, np.int32)),
            "source_partition": pa.array(np.zeros(m, np.int32)),
            "source_offset": pa.array(np.arange(m)),
            "ingested_at": pa.array([now] * m, pa.timestamp("us", tz="UTC")),
        }
    ).cast(SILVER_TRANSACTIONS_SCHEMA)
    write_deltalake(silver_uri(settings, "silver_transactions"), tx, partition_by=["tx_date"])
    first_customer = customers.index(cust[0].as_py())
    first_account = accounts.index(acc[0].as_py())
    return f"c_{first_customer}", f"acc_{first_account}"


def bench_erasure(order_lines: int, payments: int) -> None:
    from governance.erasure import forget
    from lake.tables import open_table, silver_uri
    from lakehouse.config import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    _env(home)
    try:
        started = time.monotonic()
        customer, account = _silver_lake(home, order_lines, payments)
        print(f"lake written in {time.monotonic() - started:.1f}s", flush=True)
        rows = []
        settings = Settings.from_env()
        tables = [silver_uri(settings, n) for n in ("silver_orders", "silver_transactions")]

        def files() -> set[str]:
            return {f for uri in tables for f in open_table(uri, settings).file_uris()}  # type: ignore[union-attr]

        total = len(files())
        print(f"{order_lines:,} order lines + {payments:,} payments in {total} files", flush=True)
        for subject in (f"customer_id={customer}", f"account_id={account}"):
            before = files()
            started = time.monotonic()
            result = forget(Settings.from_env(), subject)
            seconds = time.monotonic() - started
            rows.append(
                (
                    subject.split("=")[0],
                    sum(result.rows_deleted.values()),
                    len(files() - before),
                    sum(result.files_removed.values()),
                    round(seconds, 2),
                    load(),
                )
            )
        print_table(
            [
                "subject",
                "rows deleted",
                "files rewritten",
                "files removed (vacuum)",
                "seconds",
                "load",
            ],
            rows,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def bench_query(runs: int, order_lines: int) -> None:
    import duckdb

    from governance.policy import run_query
    from lake.tables import consistent_dataset, open_table, silver_uri
    from lakehouse.config import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-query-"))
    _env(home)
    try:
        _silver_lake(home, order_lines, 1000)
        settings = Settings.from_env()
        sql = "SELECT order_date, count(*) AS n, sum(line_amount) AS revenue FROM silver.orders GROUP BY 1"
        plain, policy = [], []
        for _ in range(runs):
            started = time.monotonic()
            with duckdb.connect() as con:
                con.register(
                    "orders",
                    consistent_dataset(open_table(silver_uri(settings, "silver_orders"), settings)),
                )  # type: ignore[arg-type]
                con.sql(sql.replace("silver.orders", "orders")).to_arrow_table()
            plain.append(time.monotonic() - started)
            started = time.monotonic()
            run_query(settings, "data_engineer", sql)
            policy.append(time.monotonic() - started)
        p, q = sorted(plain)[runs // 2], sorted(policy)[runs // 2]
        print_table(
            ["path", "median seconds"],
            [("plain DuckDB", round(p, 3)), ("lakehouse query --role data_engineer", round(q, 3))],
        )
        print(f"overhead: +{(q - p) * 1000:.0f} ms per query ({order_lines:,} order lines)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["ingest", "erasure", "query"])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--port", type=int, default=19_420)
    parser.add_argument("--order-lines", type=int, default=1_000_000)
    parser.add_argument("--payments", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{machine()}; {load()}; {date.today()}", flush=True)
    if args.what == "ingest":
        bench_ingest(args.events, args.port)
    elif args.what == "erasure":
        bench_erasure(args.order_lines, args.payments)
    else:
        bench_query(args.runs, args.order_lines)
    print(f"load after: {load()}")


if __name__ == "__main__":
    sys.exit(main())
