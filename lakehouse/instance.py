"""Dagster instance files under `LAKEHOUSE_HOME/dagster`: written from the settings, so the
storage (SQLite by default, PostgreSQL in production) is configured in one place."""

from __future__ import annotations

import os
from pathlib import Path

from lakehouse.config import Settings


def dagster_yaml(settings: Settings) -> str:
    lines = [
        "# written by lakehouse from LAKEHOUSE_* settings; edits are overwritten",
        "telemetry:",
        "  enabled: false",
        "run_coordinator:",
        "  module: dagster._core.run_coordinator",
        "  class: QueuedRunCoordinator",
        "  config:",
        "    dequeue_interval_seconds: 1",
        "concurrency:",
        "  runs:",
        "    max_concurrent_runs: 4",
        "    tag_concurrency_limits:  # one queued run per topic at a time (raw + its silver)",
        "      - key: lakehouse/topic",
        "        value:",
        "          applyLimitPerUniqueValue: true",
        "        limit: 1",
        "  pools:",
        "    default_limit: 1  # one writer per table / per gold DuckDB file",
        "run_monitoring:",
        "  enabled: true",
        "  poll_interval_seconds: 30",
    ]
    if settings.dagster_postgres_url:
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the pinned driver is psycopg2
        url = settings.dagster_postgres_url.split("://", 1)[1]
        lines += ["storage:", "  postgres:", f"    postgres_url: postgresql+psycopg2://{url}"]
    return "\n".join(lines) + "\n"


def ensure_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME with a dagster.yaml matching the settings; export DAGSTER_HOME."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = dagster_yaml(settings)
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return home
