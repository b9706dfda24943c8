"""The lake on S3: raw + silver against moto's server mode (a real HTTP S3 endpoint)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from deltalake import DeltaTable
from testkit import free_port, order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake.silver import build_silver
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration


@contextmanager
def start_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free port, the lake root on its bucket; yields the endpoint."""
    # moto in its own process: deltalake holds the GIL during some calls, which would starve
    # an in-process (threaded) server
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "LAKEHOUSE_LAKE_ROOT": "s3://lake-bucket/lakehouse",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="lake-bucket"
    )
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_env(lakehouse_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with start_moto(monkeypatch) as endpoint:
        yield endpoint


def test_raw_and_silver_on_s3(s3_env: str) -> None:
    settings = Settings.from_env()
    assert not settings.is_local_lake
    broker = EmbeddedBroker(settings)
    broker.start()
    broker.ensure_topics()
    try:
        kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(500)])
        kafka_client.produce(broker.bootstrap, "orders", [(b"bad", b"{oops")])
        result = ingest_batch(settings, "orders", broker.bootstrap)
        assert (result.rows_written, result.dead_letters) == (500, 1)
        assert ingest_batch(settings, "orders", broker.bootstrap).records_read == 0
    finally:
        broker.stop()
    assert build_silver(settings, "silver_orders").rows_inserted == 1000
    assert build_silver(settings, "silver_orders").rows_inserted == 0
    options = settings.storage_options
    assert raw_uri(settings, "orders").startswith("s3://lake-bucket/")
    raw = DeltaTable(raw_uri(settings, "orders"), storage_options=options)
    assert raw.to_pyarrow_table().num_rows == 500  # the malformed event went to the dead letters
    assert raw.version() == result.table_version  # the empty second batch committed nothing
    silver = DeltaTable(silver_uri(settings, "silver_orders"), storage_options=options)
    assert silver.to_pyarrow_table().num_rows == 1000
    objects = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").list_objects_v2(
        Bucket="lake-bucket", Prefix="lakehouse/silver/orders/_delta_log/"
    )
    assert objects["KeyCount"] >= 1
