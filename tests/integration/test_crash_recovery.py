"""SIGKILL at random points during ingest + silver, several times: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from deltalake import DeltaTable
from testkit import order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

WORKER = """
import sys
from ingestion.raw import ingest_batch
from lake.silver import build_silver
from lakehouse.config import Settings
settings = Settings.from_env()
while True:
    result = ingest_batch(settings, "orders", sys.argv[1], max_records=400)
    build_silver(settings, "silver_orders")
    if result.records_read == 0:
        break
print("caught up")
"""


def test_sigkill_during_ingest_neither_loses_nor_duplicates(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    produced = 20000
    # every order has two items and one order in 20 is sent twice (a producer retry)
    messages = [order_message(i) for i in range(produced)]
    messages += [order_message(i) for i in range(0, produced, 20)]
    kafka_client.produce(broker.bootstrap, "orders", messages)

    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, broker.bootstrap], env=env)
        time.sleep(rng.uniform(1.2, 3.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the worker finished too fast to be killed mid-way"

    finish = subprocess.run(
        [sys.executable, "-c", WORKER, broker.bootstrap],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finish.returncode == 0, finish.stderr[-2000:]

    con = duckdb.connect()
    con.register("raw", DeltaTable(raw_uri(settings, "orders")).to_pyarrow_dataset())
    total, distinct = con.sql(
        'SELECT count(*), count(DISTINCT (epoch, "partition", "offset")) FROM raw'
    ).fetchall()[0]
    assert total == distinct == len(messages)  # raw == produced, no duplicate offsets

    con.register("silver", DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_dataset())
    lines, keys = con.sql(
        "SELECT count(*), count(DISTINCT (order_id, line)) FROM silver"
    ).fetchall()[0]
    assert lines == keys == 2 * produced
