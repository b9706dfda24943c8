"""Topic contracts: which JSON Schema, key and event-time field each Kafka topic carries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lakehouse.errors import ConfigError


@dataclass(frozen=True)
class TopicContract:
    topic: str
    version: int
    key_fields: tuple[str, ...]  # the Kafka key is these fields joined with "|"
    event_time_field: str

    @property
    def schema_file(self) -> str:
        return f"{self.topic}.v{self.version}.json"

    @property
    def schema(self) -> dict[str, Any]:
        return load_schema(self.schema_file)

    def key_of(self, event: dict[str, Any]) -> str:
        return "|".join(str(event[name]) for name in self.key_fields)


CONTRACTS: dict[str, TopicContract] = {
    c.topic: c
    for c in (
        TopicContract("orders", 1, ("order_id",), "ts"),
        TopicContract("sessions", 1, ("session_id",), "ts"),
        TopicContract("inventory", 1, ("sku", "store_id"), "ts"),
        TopicContract("social_raw", 1, ("post_id",), "ts"),
        TopicContract("transactions", 1, ("transaction_id",), "timestamp"),
        # supply chain (forecasting/): suppliers, transport, weather
        TopicContract("purchase_orders", 1, ("po_id",), "ts"),
        TopicContract("receipts", 1, ("receipt_id",), "ts"),
        TopicContract("shipments", 1, ("shipment_id",), "ts"),
        TopicContract("shipment_readings", 1, ("shipment_id",), "ts"),
        TopicContract("weather", 1, ("city", "ts"), "ts"),
        TopicContract("fraud_labels", 1, ("transaction_id",), "reported_at"),
    )
}


@cache
def load_schema(file_name: str) -> dict[str, Any]:
    text = resources.files("ingestion").joinpath("schemas", file_name).read_text("utf-8")
    return json.loads(text)


def contract(topic: str) -> TopicContract:
    try:
        return CONTRACTS[topic]
    except KeyError:
        known = ", ".join(sorted(CONTRACTS))
        raise ConfigError(f"unknown topic {topic!r}: use one of {known}") from None
