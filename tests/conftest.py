"""Shared fixtures: an isolated LAKEHOUSE_HOME per test and a real embedded broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Offline and quiet, whatever the caller's environment says.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from testkit import free_port

from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings


@pytest.fixture
def lakehouse_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """LAKEHOUSE_* variables for an isolated home and broker port, also set in os.environ."""
    env = {
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        "LAKEHOUSE_BROKER_PORT": str(free_port()),
        "LAKEHOUSE_TOPIC_PARTITIONS": "3",
    }
    for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def settings(lakehouse_env: dict[str, str]) -> Settings:
    return Settings.from_env()


@pytest.fixture
def broker(settings: Settings) -> Iterator[EmbeddedBroker]:
    """A real tansu broker on a free port with the project's topics; stopped afterwards."""
    embedded = EmbeddedBroker(settings)
    embedded.start()
    embedded.ensure_topics()
    try:
        yield embedded
    finally:
        embedded.stop()
