"""Helpers shared by tests (importable as `testkit`: a dependency ships a `tests` package)."""

from __future__ import annotations

import json
import re
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
