"""Helpers shared by tests (importable as `testkit`: a dependency ships a `tests` package)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from collections import defaultdict
from typing import Any

SEED_ORDER = {
    "order_id": "o_1001",
    "ts": "2025-08-16T12:10:00Z",
    "customer_id": "c_77",
    "items": [{"sku": "A123", "qty": 2, "price": 19.9}, {"sku": "B200", "qty": 1, "price": 49}],
    "channel": "web",
    "store_id": None,
    "city": "Lille",
    "country": "FR",
}


# The seed's `transactions` example (section 1), exactly as written there.
SEED_TRANSACTION = {
    "transaction_id": "tx_987654",
    "timestamp": "2025-08-16T12:00:05Z",
    "account_id": "acc_123",
    "card_hash": "4a1f...ed",
    "amount": 249.90,
    "currency": "EUR",
    "merchant_id": "m_445",
    "merchant_category": "electronics",
    "channel": "ecom",
    "country": "FR",
    "device_id": "dvc_771",
    "ip": "83.12.45.21",
    "lat": 48.85,
    "lon": 2.35,
}


# One valid event per contract (examples of the seed and of the generators).
SEED_EVENTS = {
    "orders": SEED_ORDER,
    "fraud_labels": {
        "transaction_id": "tx_987654",
        "is_fraud": True,
        "reported_at": "2025-08-21T09:30:00Z",
    },
    "transactions": SEED_TRANSACTION,
    "social_raw": {
        "post_id": "p_889",
        "ts": "2025-08-16T10:04:00Z",
        "source": "twitter",
        "lang": "fr",
        "text": "Livraison en retard, très déçu !",
        "engagement": {"likes": 2, "replies": 1},
    },
    "inventory": {
        "sku": "A123",
        "store_id": "s_lille",
        "ts": "2025-08-16T12:05:00Z",
        "update_type": "update",
        "on_hand": 41,
        "on_order": 60,
        "sold_qty": 3,
        "received_qty": 0,
    },
    "sessions": {
        "session_id": "sess_1",
        "ts": "2025-08-16T12:09:00Z",
        "customer_id": "c_77",
        "channel": "web",
        "city": "Lille",
        "order_id": "o_1001",
    },
    # supply chain (forecasting/): examples from ingestion/generators/supply.py
    "purchase_orders": {
        "po_id": "po_1",
        "ts": "2026-11-02T18:10:00Z",
        "supplier_id": "sup_a",
        "sku": "A123",
        "store_id": "s_lille",
        "qty": 120,
        "unit_cost": 8.96,
        "expected_at": "2026-11-04T09:00:00Z",
    },
    "receipts": {
        "receipt_id": "rc_1",
        "po_id": "po_1",
        "ts": "2026-11-04T10:00:00Z",
        "supplier_id": "sup_a",
        "sku": "A123",
        "store_id": "s_lille",
        "qty_ordered": 120,
        "qty_received": 120,
    },
    "shipments": {
        "shipment_id": "sh_1",
        "ts": "2026-11-04T10:00:00Z",
        "status": "arrived",
        "po_id": "po_1",
        "supplier_id": "sup_a",
        "carrier": "dhl",
        "route": "Roubaix->Lille",
        "origin": "Roubaix",
        "destination": "s_lille",
        "distance_km": 12.5,
        "departed_at": "2026-11-04T06:00:00Z",
        "promised_at": "2026-11-04T09:00:00Z",
        "arrived_at": "2026-11-04T10:00:00Z",
        "dock_saturation": 0.7,
        "qty": 120,
    },
    "shipment_readings": {
        "shipment_id": "sh_1",
        "ts": "2026-11-04T07:00:00Z",
        "temperature_c": 4.2,
        "lat": 50.6,
        "lon": 3.1,
    },
    "weather": {
        "city": "Lille",
        "ts": "2026-11-04T00:00:00Z",
        "temp_c": 9.5,
        "precip_mm": 2.1,
        "wind_kmh": 14.0,
    },
}


def check_counts(summary: str) -> tuple[int, int, int]:
    """(checks, failed, warnings) from `lakehouse materialize`'s summary line."""
    match = re.search(r"(\d+) checks \((\d+) failed, (\d+) warnings\)", summary)
    assert match, f"no check counts in {summary!r}"
    checks, failed, warned = (int(g) for g in match.groups())
    return checks, failed, warned


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def order(i: int, **changes: object) -> dict[str, object]:
    return {**SEED_ORDER, "order_id": f"o_{i}", **changes}


def order_message(i: int, **changes: object) -> tuple[bytes, bytes]:
    event = order(i, **changes)
    return str(event["order_id"]).encode(), json.dumps(event).encode()


LineageNode = tuple[str, str]  # (namespace, name) of an OpenLineage dataset


def lineage_upstream(events: list[dict[str, Any]], start: LineageNode) -> set[LineageNode]:
    """Every dataset `start` was derived from, following the COMPLETE events' input → output
    edges backwards."""
    parents: dict[LineageNode, set[LineageNode]] = defaultdict(set)
    for event in events:
        if event["eventType"] != "COMPLETE":
            continue
        for out in event["outputs"]:
            for inp in event["inputs"]:
                parents[(out["namespace"], out["name"])].add((inp["namespace"], inp["name"]))
    seen: set[LineageNode] = set()
    todo = [start]
    while todo:
        for parent in parents[todo.pop()] - seen:
            seen.add(parent)
            todo.append(parent)
    return seen


def stop_session(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started with `start_new_session=True` and everything in its session:
    SIGTERM to the group, then SIGKILL to whatever is left of it (children that outlived
    their parent, such as a Dagster daemon's code server and its workers)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
