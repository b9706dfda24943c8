"""Alert latency: from the moment a stream stops to the webhook delivery of its freshness alert.

    .venv/bin/python bench/alerts.py                 # default threshold (120 s), ≈ 2.5 min
    .venv/bin/python bench/alerts.py --threshold 20  # smoke

A real embedded broker and a real local HTTP webhook. Orders are produced and ingested
(`ingest_batch`, as `raw_orders` does) once a second for `--live-seconds`, then production
stops: the stop is the Kafka timestamp of the last record sent. The shipped `stream_freshness`
sensor is evaluated at its own cadence (every FRESHNESS_INTERVAL_SECONDS, as the Dagster
daemon ticks it) with the default settings, until the webhook receives the PagerDuty trigger
for `orders`. Reported beside the peer figure that bounds it, the threshold itself: latency =
threshold + wait for the next tick + evaluation + delivery. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _common import load, machine, print_table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _order(i: int) -> tuple[bytes, bytes]:
    event = {
        "order_id": f"o_{i}",
        "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "customer_id": f"c_{i % 97}",
        "items": [{"sku": "A123", "qty": 1 + i % 3, "price": 19.9}],
        "channel": "web",
        "store_id": None,
        "city": "Lille",
        "country": "FR",
    }
    return event["order_id"].encode(), json.dumps(event).encode()


def _receiver() -> tuple[ThreadingHTTPServer, list[tuple[float, dict]]]:
    received: list[tuple[float, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            received.append((time.time(), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=None, help="seconds (default: settings)")
    parser.add_argument("--live-seconds", type=int, default=20)
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="bench-alerts-")
    server, received = _receiver()
    os.environ.update(
        {
            "LAKEHOUSE_HOME": home,
            "LAKEHOUSE_BROKER_PORT": str(_free_port()),
            "LAKEHOUSE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook",
        }
    )
    if args.threshold:
        os.environ["LAKEHOUSE_STREAM_LATENCY_SECONDS"] = str(args.threshold)

    import dagster as dg

    from dagster_project.definitions import defs
    from dagster_project.monitoring import FRESHNESS_INTERVAL_SECONDS, stream_freshness_sensor
    from dagster_project.resources import LakehouseResource
    from ingestion import kafka_client
    from ingestion.broker import EmbeddedBroker
    from ingestion.raw import ingest_batch
    from lakehouse.config import Settings

    settings = Settings.from_env()
    print(f"{machine()}; {load()}", flush=True)
    broker = EmbeddedBroker(settings)
    broker.start()
    broker.ensure_topics()
    ticks: list[float] = []
    try:
        sent = 0
        for second in range(args.live_seconds):
            kafka_client.produce(
                settings.bootstrap, "orders", [_order(sent + i) for i in range(20)]
            )
            sent += 20
            ingest_batch(settings, "orders", settings.bootstrap)
            time.sleep(max(0.0, 1.0 - (time.time() % 1.0)) if second else 0.0)
        stopped_at = time.time()  # the last record's Kafka timestamp is just before this
        print(f"stream stopped after {sent} orders; waiting for the alert", flush=True)
        repository = defs.get_repository_def()
        trigger_at: float | None = None
        with dg.DagsterInstance.ephemeral() as instance:
            while (
                trigger_at is None
                and time.time() - stopped_at < 3 * settings.stream_latency_seconds + 60
            ):
                started = time.time()
                context = dg.build_sensor_context(
                    instance=instance,
                    resources={"lakehouse": LakehouseResource()},
                    repository_def=repository,
                )
                stream_freshness_sensor(context)
                ticks.append(time.time() - started)
                trigger = [
                    t
                    for t, b in received
                    if b.get("event_action") == "trigger"
                    and b.get("dedup_key") == "stream_freshness:orders"
                ]
                if trigger:
                    trigger_at = trigger[0]
                    break
                time.sleep(max(0.0, FRESHNESS_INTERVAL_SECONDS - (time.time() - started)))
        if trigger_at is None:
            print("no alert received")
            return 1
        latency = trigger_at - stopped_at
        threshold = settings.stream_latency_seconds
        print(f"\nthreshold {threshold} s, sensor every {FRESHNESS_INTERVAL_SECONDS} s; {load()}")
        print_table(
            ["figure", "seconds"],
            [
                ["stream stop -> webhook trigger (latency)", latency],
                ["threshold (LAKEHOUSE_STREAM_LATENCY_SECONDS)", float(threshold)],
                ["latency - threshold (tick wait + evaluation + delivery)", latency - threshold],
                [
                    "sensor evaluation, median of " + str(len(ticks)) + " ticks",
                    sorted(ticks)[len(ticks) // 2],
                ],
                ["target", 150.0],
            ],
        )
    finally:
        broker.stop()
        server.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
