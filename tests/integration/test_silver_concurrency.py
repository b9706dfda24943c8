"""Silver's anti-join append: re-delivered keys are skipped, and two writers of one silver
table never append one key twice (the loser of a commit race re-reads and retries)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import duckdb
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from testkit import order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake import silver
from lake.tables import open_table, raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration


def _silver_keys(settings: Settings) -> tuple[int, int]:
    con = duckdb.connect()
    con.register("s", DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_dataset())
    lines, keys = con.execute("SELECT count(*), count(DISTINCT (order_id, line)) FROM s").fetchone()  # type: ignore[misc]
    return int(lines), int(keys)


def test_a_writer_that_lost_a_commit_race_appends_only_the_keys_the_winner_did_not(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(300)])
    ingest_batch(settings, "orders", broker.bootstrap)
    assert silver.build_silver(settings, "silver_orders").rows_inserted == 600  # 2 lines each

    # orders 200-299 delivered again (a producer retry) and 300-399 new
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(200, 400)])
    ingest_batch(settings, "orders", broker.bootstrap)
    spec = silver.SPECS["silver_orders"]
    uri = silver_uri(settings, "silver_orders")
    stale = open_table(uri, settings)
    assert stale is not None
    raw = open_table(raw_uri(settings, "orders"), settings)
    assert raw is not None
    batch = raw.to_pyarrow_table()

    # another writer processes the same raw rows first
    winner = silver.build_silver(settings, "silver_orders")
    assert (winner.rows_inserted, winner.duplicates_skipped) == (200, 200)

    # a commit made against the version read before the winner's fails, whatever it holds
    rows = silver.transform(spec, batch, settings.pii_hash_key).cast(
        silver.SILVER_TABLES["silver_orders"][1]
    )
    with pytest.raises(CommitFailedError):
        silver._append_fresh(settings, spec, uri, stale, rows.slice(0, 0), None, 0)

    # the whole batch path retries on the new version: nothing is appended twice
    late = silver.SilverResult("silver_orders", None, None)
    silver._write_batch(settings, spec, uri, stale, batch, None, late)
    assert late.extra["concurrent_retries"] == 1
    assert late.rows_in_batch == 800 and late.rows_inserted == 0
    assert _silver_keys(settings) == (800, 800)


WRITER = """
import sys
from lake.silver import build_silver
from lakehouse.config import Settings
result = build_silver(Settings.from_env(), "silver_orders")
print(result.rows_inserted, result.extra.get("concurrent_retries", 0), result.extra.get("commits"))
"""


def test_two_concurrent_silver_writers_end_with_every_key_once(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    produced = 6000
    messages = [order_message(i) for i in range(produced)]
    messages += [order_message(i) for i in range(0, produced, 10)]  # re-deliveries
    kafka_client.produce(broker.bootstrap, "orders", messages)
    small = dataclasses.replace(settings, max_batch_records=500)
    while ingest_batch(small, "orders", broker.bootstrap).records_read:
        pass

    # both writers start from an empty silver table and walk the same raw backlog in batches
    # of 400 raw rows: their commits race on the table's creation and on every batch
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LAKEHOUSE_MAX_BATCH_RECORDS": "400"}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0].split() for w in writers]
    assert [w.returncode for w in writers] == [0, 0]

    assert _silver_keys(settings) == (2 * produced, 2 * produced)
    inserted = sum(int(out[0]) for out in outputs)
    assert inserted == 2 * produced  # what one writer appended, the other skipped
