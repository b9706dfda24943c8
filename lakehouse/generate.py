"""Generate realistic traffic and send it to Kafka: history (backfill) or paced live traffic.

Orders and their sessions come from one stream; inventory is simulated from the same orders
(same seed and scale), so stock moves with sales and replenishment receipts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ingestion import kafka_client
from ingestion.generators.inventory import generate_inventory
from ingestion.generators.live import paced, timed_messages, until
from ingestion.generators.orders import generate_orders
from lakehouse.errors import ConfigError

log = logging.getLogger(__name__)

GENERATED_TOPICS = ("orders", "sessions", "inventory", "transactions", "fraud_labels")
RETAIL_TOPICS = ("orders", "sessions", "inventory")  # the default: the retail demo


def _check_topics(topics: tuple[str, ...]) -> None:
    unknown = set(topics) - set(GENERATED_TOPICS)
    if unknown or not topics:
        raise ConfigError(
            f"cannot generate {sorted(unknown) or 'nothing'}: choose from {', '.join(GENERATED_TOPICS)}"
        )


def _sources(
    start: datetime,
    end: datetime,
    seed: int,
    scale: float,
    topics: tuple[str, ...],
    inventory_from: datetime | None,
    fraud_rate: float = 0.01,
) -> dict[str, object]:
    warmup = inventory_from if inventory_from and inventory_from < start else start
    sources: dict[str, object] = {}
    window = None
    if "orders" in topics or "sessions" in topics:
        window = generate_orders(start, end, seed, scale)
        sources.update({t: window for t in ("orders", "sessions") if t in topics})
    if "inventory" in topics:
        # the stock simulation needs the orders since `warmup`, not their sessions
        sold = (
            window
            if warmup == start and window is not None
            else generate_orders(warmup, end, seed, scale, with_sessions=False)
        )
        sources["inventory"] = generate_inventory(
            start, end, seed, scale, initial_at=warmup, orders=sold
        )
    if "transactions" in topics or "fraud_labels" in topics:
        from fraud.simulator import generate_transactions

        stream = generate_transactions(start, end, seed, scale, fraud_rate)
        sources.update({t: stream for t in ("transactions", "fraud_labels") if t in topics})
    return sources


def backfill(
    bootstrap: str,
    days: float,
    seed: int,
    scale: float,
    topics: tuple[str, ...] = RETAIL_TOPICS,
    end: datetime | None = None,
    fraud_rate: float = 0.01,
) -> dict[str, int]:
    """Send `days` of history ending at `end` (default now) as fast as the broker takes it."""
    _check_topics(topics)
    if days <= 0:
        raise ConfigError(f"--backfill-days {days} is invalid: use a positive number of days")
    end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(days=days)
    sources = _sources(start, end, seed, scale, topics, None, fraud_rate)
    # history needs no cross-topic event-time order: send topic by topic (cheaper than a merge)
    records = (
        (topic, key, value)
        for topic, source in sources.items()
        for key, value in source.messages(topic)  # type: ignore[attr-defined]
    )
    return kafka_client.produce_records(bootstrap, records, progress_every=100_000)


def backfill_supply(
    bootstrap: str, days: float, seed: int, scale: float, end: datetime | None = None
) -> dict[str, int]:
    """Daily-aggregate supply history (ingestion/generators/supply.py): `days` whole days ending
    at today's midnight UTC — one order per store and day, daily stock snapshots (last 28 days),
    purchase orders, receipts, shipments (+ readings of the last 14 days) and weather."""
    from ingestion.generators.supply import HISTORY_TOPICS, generate_supply_history, history_window

    if days < 1:
        raise ConfigError(f"--backfill-days {days} is invalid: supply history needs >= 1 day")
    first, last = history_window(int(days), end)
    history = generate_supply_history(first, last, seed, scale)
    records = (
        (topic, key, value) for topic in HISTORY_TOPICS for key, value in history.messages(topic)
    )
    return kafka_client.produce_records(bootstrap, records, progress_every=100_000)


def live(
    bootstrap: str,
    minutes: float,
    speed: float,
    seed: int,
    scale: float,
    topics: tuple[str, ...] = RETAIL_TOPICS,
    start: datetime | None = None,
    inventory_from: datetime | None = None,
    fraud_rate: float = 0.01,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Send `minutes` of traffic starting at `start` (default now), paced so that simulated
    time runs `speed` times faster than the wall clock. `inventory_from` continues the stock
    simulated since then (e.g. the start of a backfill) instead of a fresh initial stock.
    `stop_when` ends the traffic early when it returns True (e.g. an idle timeout)."""
    _check_topics(topics)
    if minutes <= 0:
        raise ConfigError(f"--minutes {minutes} is invalid: use a positive number of minutes")
    start = (start or datetime.now(UTC)).replace(microsecond=0)
    end = start + timedelta(minutes=minutes)
    sources = _sources(start, end, seed, scale, topics, inventory_from, fraud_rate)
    return kafka_client.produce_records(
        bootstrap,
        until(paced(timed_messages(sources), start, speed), stop_when),  # type: ignore[arg-type], progress_every=10_000
    )
