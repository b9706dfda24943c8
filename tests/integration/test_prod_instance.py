"""`lakehouse prod up|down`: the webserver and the daemon on the PostgreSQL instance at
127.0.0.1:5432, with the queued run coordinator and its per-topic limit."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from testkit import free_port

from lakehouse import prod
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.instance import ensure_dagster_home

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_the_queued_coordinator_limits_one_run_per_topic(
    lakehouse_env: dict[str, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_DAGSTER_POSTGRES_URL", postgres_url)
    ensure_dagster_home(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [
            {"key": "lakehouse/topic", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


def test_prod_up_needs_postgres(lakehouse_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        prod.up(Settings.from_env())
    assert "LAKEHOUSE_DAGSTER_POSTGRES_URL" in str(info.value)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", "prod", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_prod_up_starts_webserver_and_daemon_and_down_stops_them(
    lakehouse_env: dict[str, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("LAKEHOUSE_DAGSTER_POSTGRES_URL", postgres_url)
    port = free_port()
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    started = _cli("up", "--port", str(port), env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as r:
            assert r.status == 200
        assert _cli("status", env=env).returncode == 0
        # the daemon is alive: it heartbeats into the PostgreSQL instance
        deadline, beats = time.monotonic() + 180, 0
        while time.monotonic() < deadline and not beats:
            with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM daemon_heartbeats")
                beats = cur.fetchone()[0]  # type: ignore[index]
            time.sleep(2)
        assert beats > 0
        again = _cli("up", "--port", str(free_port()), env=env)
        assert again.returncode != 0 and "already up" in again.stderr
    finally:
        stopped = _cli("down", env=env)
        # `prod up` started the embedded broker (no LAKEHOUSE_KAFKA_BOOTSTRAP here)
        subprocess.run(
            [sys.executable, "-m", "lakehouse", "broker", "stop"], env=env, cwd=REPO, timeout=60
        )
    assert stopped.returncode == 0 and "webserver" in stopped.stdout and "daemon" in stopped.stdout
    assert _cli("status", env=env).returncode == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=3)
