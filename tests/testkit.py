"""Helpers shared by tests (importable as `testkit`: a dependency ships a `tests` package)."""

from __future__ import annotations

import json
import socket

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def order(i: int, **changes: object) -> dict[str, object]:
    return {**SEED_ORDER, "order_id": f"o_{i}", **changes}


def order_message(i: int, **changes: object) -> tuple[bytes, bytes]:
    event = order(i, **changes)
    return str(event["order_id"]).encode(), json.dumps(event).encode()
