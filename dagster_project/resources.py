"""Resources: the lakehouse settings and the Kafka bootstrap servers, built from LAKEHOUSE_*."""

from __future__ import annotations

import dagster as dg

from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings
from lakehouse.errors import BrokerError


class LakehouseResource(dg.ConfigurableResource):
    """Settings come from the environment (one configuration object for CLI and Dagster)."""

    def settings(self) -> Settings:
        return Settings.from_env()

    def bootstrap(self) -> str:
        settings = self.settings()
        if settings.embedded_broker and not EmbeddedBroker(settings).status().running:
            raise BrokerError(
                f"the embedded broker is not running on {settings.bootstrap}: run "
                "`lakehouse broker start` (or set LAKEHOUSE_KAFKA_BOOTSTRAP)"
            )
        return settings.bootstrap
