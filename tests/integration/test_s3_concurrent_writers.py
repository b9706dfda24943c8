"""Two writers on one S3 Delta table (moto's server): safe commits, each offset exactly once.

With the default LAKEHOUSE_S3_COMMIT=conditional-put, delta-rs writes every `_delta_log`
entry with If-None-Match, so two writers can never both write one log version; the loser
re-checks its commit against the winner's and, holding the same Kafka offsets as transaction
ids, fails instead of adding them again. Two ingestion processes of one topic are started
together and race over the whole backlog in small capped batches (each retrying after a lost
commit); at the end raw holds every offset of every partition exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from test_s3_lake import start_moto
from testkit import order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import CHECKPOINT_KEY
from lake.tables import raw_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

# One writer: ingest `orders` in batches of 150 until caught up; a batch whose offsets the
# other writer committed first is dropped and the next one starts from the lake's offsets.
# Prints its commits and its lost races.
WRITER = """
import sys
from ingestion.raw import ingest_batch
from lakehouse.config import Settings
from lakehouse.errors import ConcurrentIngestError

import time
from pathlib import Path

bootstrap, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
won, lost = 0, 0
settings = Settings.from_env()
ready.touch()
while not go.exists():  # both writers start their first batch together
    time.sleep(0.01)
while True:
    try:
        result = ingest_batch(settings, "orders", bootstrap, max_records=150)
    except ConcurrentIngestError:
        lost += 1
        continue
    if not result.records_read:
        break
    won += 1
print(won, lost)
"""


def test_two_concurrent_ingest_processes_write_each_offset_once(
    lakehouse_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with start_moto(monkeypatch) as endpoint:
        settings = Settings.from_env()
        assert settings.storage_options["conditional_put"] == "etag"  # the default
        assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in settings.storage_options
        broker = EmbeddedBroker(settings)
        broker.start()
        broker.ensure_topics()
        try:
            sent = kafka_client.produce(
                broker.bootstrap, "orders", [order_message(i) for i in range(2400)]
            )
            env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
            go = tmp_path / "go"
            ready = [tmp_path / f"ready-{n}" for n in range(2)]
            writers = [
                subprocess.Popen(
                    [sys.executable, "-c", WRITER, broker.bootstrap, str(flag), str(go)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for flag in ready
            ]
            deadline = time.monotonic() + 120
            while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
                time.sleep(0.05)
            go.touch()
            outcomes = []
            for writer in writers:
                out, err = writer.communicate(timeout=600)
                assert writer.returncode == 0, err[-3000:]
                outcomes.append(tuple(int(n) for n in out.split()))
            marks = kafka_client.probe_high_watermarks(broker.bootstrap, "orders")
        finally:
            broker.stop()
        raw = DeltaTable(raw_uri(settings, "orders"), storage_options=settings.storage_options)
        rows = raw.to_pyarrow_table(columns=["partition", "offset"])
        # every offset of every partition, exactly once
        assert rows.num_rows == sent == sum(marks.values())
        for partition, end in marks.items():
            mine = rows.filter(pc.equal(rows["partition"], partition))["offset"]
            assert sorted(mine.to_pylist()) == list(range(end)), partition
        pairs = pc.binary_join_element_wise(
            pc.cast(rows["partition"], pa.string()), pc.cast(rows["offset"], pa.string()), ":"
        )
        assert pc.count_distinct(pairs).as_py() == rows.num_rows
        # they raced (started together on the same offsets: batches lost to the other), and
        # every batch commit in the table is one a writer counted as won
        won = [w for w, _ in outcomes]
        lost = sum(lost for _, lost in outcomes)
        batches = [h for h in raw.history() if CHECKPOINT_KEY in h]  # not the empty first one
        assert sum(won) == len(batches)
        assert lost > 0, outcomes
        # the log has no gap or overwritten version: one object per version
        keys = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").list_objects_v2(
            Bucket="lake-bucket", Prefix="lakehouse/raw/orders/_delta_log/"
        )["Contents"]
        versions = sorted(int(Path(k["Key"]).stem) for k in keys if k["Key"].endswith(".json"))
        assert versions == list(range(raw.version() + 1))
