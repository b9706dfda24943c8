"""LAKEHOUSE_KAFKA_SECURITY_PROTOCOL=SSL against a real TLS endpoint: every client the project
creates (admin, producer, consumer, the sensors' high-water-mark probe, raw ingestion) talks
TLS, verifies the broker's certificate against LAKEHOUSE_KAFKA_SSL_CAFILE, and fails with the
broker error line when it cannot.

The embedded tansu 0.6.0 accepts `--cert` but never answers a TLS handshake (checked: the
handshake times out on tcp:// and tls:// listeners), so the endpoint is a TLS terminator —
Python's `ssl` with a certificate signed by a CA made for the test — in front of a real tansu
broker that advertises the terminator's address, as a TLS load balancer in front of Kafka
does. Every byte the clients exchange with the broker crosses TLS 1.2+.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from testkit import free_port, order_message

from ingestion import kafka_client
from ingestion.broker import tansu_binary
from ingestion.raw import ingest_batch
from lake.tables import open_table, raw_uri
from lakehouse.config import Settings
from lakehouse.errors import BrokerError

pytestmark = pytest.mark.integration


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class TlsEndpoint:
    bootstrap: str
    cafile: Path
    handshakes: int = 0  # TLS sessions established (the callback runs after the handshake)


def _serve_tls(endpoint: TlsEndpoint, port: int, broker_port: int, context: ssl.SSLContext) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        endpoint.handshakes += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", broker_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", port, ssl=context)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsEndpoint]:
    """A real tansu broker reachable only through TLS on 127.0.0.1:<tls port>."""
    cafile, certfile, keyfile = _certificates(tmp_path)
    broker_port, tls_port = free_port(), free_port()
    broker = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{broker_port}",
            "--advertised-listener-url",  # clients reconnect to the TLS port only
            f"tcp://127.0.0.1:{tls_port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    endpoint = TlsEndpoint(f"127.0.0.1:{tls_port}", cafile)
    threading.Thread(
        target=_serve_tls, args=(endpoint, tls_port, broker_port, context), daemon=True
    ).start()
    try:
        yield endpoint
    finally:
        broker.terminate()
        broker.wait(timeout=30)


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_every_client_talks_tls_to_the_external_broker(
    tls_broker: TlsEndpoint, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _use(
        monkeypatch,
        {
            "LAKEHOUSE_KAFKA_BOOTSTRAP": tls_broker.bootstrap,
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "LAKEHOUSE_KAFKA_SSL_CAFILE": str(tls_broker.cafile),
        },
    )
    bootstrap = settings.bootstrap
    # admin: topic creation
    assert kafka_client.ensure_topics(bootstrap, ["orders"], 3) == ["orders"]
    admin = kafka_client.admin(bootstrap)
    assert admin.config["security_protocol"] == "SSL"
    admin.close()
    # producer
    producer = kafka_client.producer(bootstrap)
    assert producer.config["security_protocol"] == "SSL"
    producer.close()
    assert kafka_client.produce(bootstrap, "orders", [order_message(i) for i in range(30)]) == 30
    # the sensors' probe and raw ingestion (consumer)
    marks = kafka_client.probe_high_watermarks(bootstrap, "orders")
    assert sum(marks.values()) == 30
    result = ingest_batch(settings, "orders", bootstrap)
    assert result.rows_written == 30
    table = open_table(raw_uri(settings, "orders"), settings)
    assert table is not None and table.to_pyarrow_dataset().count_rows() == 30
    assert tls_broker.handshakes >= 4  # sessions established (counted after the handshake)


def test_an_unverified_broker_certificate_is_refused(
    tls_broker: TlsEndpoint, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the CA that signed the broker's certificate the client refuses the broker:
    the options verify, they do not merely encrypt."""
    settings = _use(
        monkeypatch,
        {
            "LAKEHOUSE_KAFKA_BOOTSTRAP": tls_broker.bootstrap,
            "LAKEHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL",
        },
    )
    with pytest.raises(BrokerError) as info:
        kafka_client.ensure_topics(settings.bootstrap, ["orders"], 3)
    assert tls_broker.bootstrap in str(info.value)
    assert tls_broker.handshakes == 0  # no TLS session was ever established
