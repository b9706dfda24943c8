"""Topic contracts: which JSON Schema versions, compatibility mode, key and event-time field
each Kafka topic carries.

A topic's schema versions are the files `schemas/<topic>.v<N>.json`; the newest is the one
producers should write, every registered version is accepted on the way in (a producer may
send either during a transition), and `ingestion.registry` checks that each version keeps the
topic's compatibility mode (Confluent Schema Registry semantics)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lakehouse.errors import ConfigError

# Confluent Schema Registry modes; *_TRANSITIVE checks against every earlier version, the
# others against the previous one only.
COMPATIBILITY_MODES = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)


@dataclass(frozen=True)
class TopicContract:
    topic: str
    key_fields: tuple[str, ...]  # the Kafka key is these fields joined with "|"
    event_time_field: str
    compatibility: str = "BACKWARD"  # how a new schema version may differ from the last

    @property
    def versions(self) -> tuple[int, ...]:
        """Registered schema versions, oldest first."""
        return schema_versions(self.topic)

    @property
    def version(self) -> int:
        """The newest version: what producers should write."""
        return self.versions[-1]

    @property
    def schema_file(self) -> str:
        return f"{self.topic}.v{self.version}.json"

    @property
    def schema(self) -> dict[str, Any]:
        return load_schema(self.schema_file)

    def schema_for(self, version: int) -> dict[str, Any]:
        if version not in self.versions:
            raise ConfigError(
                f"{self.topic} has no schema version {version}: registered versions are "
                + ", ".join(f"v{v}" for v in self.versions)
            )
        return load_schema(f"{self.topic}.v{version}.json")

    def key_of(self, event: dict[str, Any]) -> str:
        return "|".join(str(event[name]) for name in self.key_fields)


CONTRACTS: dict[str, TopicContract] = {
    c.topic: c
    for c in (
        TopicContract("orders", ("order_id",), "ts"),
        TopicContract("sessions", ("session_id",), "ts"),
        TopicContract("inventory", ("sku", "store_id"), "ts"),
        TopicContract("social_raw", ("post_id",), "ts"),
        # v2 adds the optional 3-D Secure result (three_ds_status): readers of v2 read v1 events
        TopicContract("transactions", ("transaction_id",), "timestamp", "BACKWARD"),
        # supply chain (forecasting/): suppliers, transport, weather
        TopicContract("purchase_orders", ("po_id",), "ts"),
        TopicContract("receipts", ("receipt_id",), "ts"),
        TopicContract("shipments", ("shipment_id",), "ts"),
        TopicContract("shipment_readings", ("shipment_id",), "ts"),
        TopicContract("weather", ("city", "ts"), "ts"),
        TopicContract("fraud_labels", ("transaction_id",), "reported_at"),
    )
}

_VERSION_FILE = re.compile(r"^(?P<topic>[a-z0-9_]+)\.v(?P<version>\d+)\.json$")


@cache
def schema_versions(topic: str) -> tuple[int, ...]:
    folder = resources.files("ingestion").joinpath("schemas")
    found = sorted(
        int(m["version"])
        for entry in folder.iterdir()
        if (m := _VERSION_FILE.match(entry.name)) and m["topic"] == topic
    )
    if not found:
        raise ConfigError(
            f"topic {topic!r} has no schema file: add ingestion/schemas/{topic}.v1.json"
        )
    return tuple(found)


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
