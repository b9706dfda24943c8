"""Shared fixtures: an isolated LAKEHOUSE_HOME per test and a real embedded broker."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
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


# The demo on small data: seconds of history, twenty accelerated live minutes.
SMALL_DEMO = [
    "--history-days",
    "3",
    "--history-scale",
    "0.005",
    "--live-minutes",
    "20",
    "--live-speed",
    "120",
    "--seed",
    "11",
]


@dataclass(frozen=True)
class DemoLake:
    """A home whose lake the demo built once; `env` runs further commands against it."""

    home: Path
    env: dict[str, str]
    stdout: str

    def copy_to(self, folder: Path) -> DemoLake:
        """A private copy for a test that changes the lake (its own home and broker port)."""
        home = folder / "home"
        shutil.copytree(self.home, home)
        # MLflow keeps each experiment's artifact location as an absolute URI: point the
        # copy's experiments at the copy, or new runs would write into the shared lake.
        with sqlite3.connect(home / "mlflow" / "mlflow.db") as db:
            db.execute(
                "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
                (str(self.home), str(home)),
            )
        # OpenLineage events name the lake's tables by absolute path: the copy's name the copy,
        # so a graph from its events continues into what this lake recorded
        events = home / "openlineage" / "events.jsonl"
        if events.exists():
            events.write_text(events.read_text("utf-8").replace(str(self.home), str(home)))
        env = self.env | {"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_BROKER_PORT": str(free_port())}
        return DemoLake(home=home, env=env, stdout=self.stdout)


def run_demo(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse", "demo", *SMALL_DEMO],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    """One small demo lake per test session, shared read-only by the tests that need a whole
    lake (BI, privacy scans, the e2e test). A test that changes the lake copies it first."""
    home = tmp_path_factory.mktemp("demo") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_BROKER_PORT": str(free_port())}
    env |= DEMO_SECRETS  # distinctive values, so a test can look for them in what the demo wrote
    return DemoLake(home=home, env=env, stdout=run_demo(env))


# The demo's secrets: a PII key and a master key of its own. (The demo serves nothing and uses
# no password; API tokens would make the tests that serve its lake authenticate.)
DEMO_SECRETS = {
    "LAKEHOUSE_PII_KEY": "pii-" + secrets.token_urlsafe(24),
    "LAKEHOUSE_MASTER_KEY": secrets.token_hex(32),
}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL at 127.0.0.1:5432 (trust, user postgres), dropped
    after the test."""
    name = f"lakehouse_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


# `make test` runs the suite on two workers (pytest-xdist, --dist loadscope). A module's tests
# stay on one worker, in order (its module-scoped fixtures, a Spark session or a served lake,
# are built once, and a test may follow from the one before). Each worker builds the session's
# demo lake once, for the first demo-lake module it gets. The longest groups are handed out
# first, so neither worker is left with a long tail.
FIRST_GROUPS = (
    "demo_lake",
    "tests/integration/test_spark_parity.py",
    "tests/integration/test_spark_engine.py",
    "tests/integration/test_spark_forecast.py",
    "tests/integration/test_prod_instance.py",
)


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_demo = {_module(i) for i in items if "demo_lake" in getattr(i, "fixturenames", ())}
    rank = {name: i for i, name in enumerate(FIRST_GROUPS)}

    def order(item: pytest.Item) -> int:
        module = _module(item)
        return rank.get("demo_lake" if module in on_demo else module, len(rank))

    items.sort(key=order)  # stable: the order within a module is kept
