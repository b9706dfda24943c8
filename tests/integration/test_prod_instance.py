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
from testkit import free_port, stop_session

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


# A code location with the project's `orders` sensor over a job of the same name and tags as
# `ingest_orders` whose `raw_orders` step holds until the test lets it finish.
HELD_LOCATION = """
import os, pathlib, time
import dagster as dg
from dagster_project.resources import LakehouseResource
from dagster_project.sensors import INGEST_JOBS, topic_sensor

GATES = pathlib.Path(os.environ["LAKEHOUSE_TEST_GATES"])

@dg.op(name="raw_orders", config_schema={"end_offsets": dg.Permissive()})
def raw_orders(context):
    (GATES / f"{context.run_id}.started").touch()
    while not (GATES / f"{context.run_id}.go").exists():
        time.sleep(0.1)

@dg.job(name="ingest_orders", tags=INGEST_JOBS["orders"].tags)
def ingest_orders():
    raw_orders()

defs = dg.Definitions(
    jobs=[ingest_orders],
    sensors=[topic_sensor("orders", ingest_orders)],
    resources={"lakehouse": LakehouseResource()},
)
"""


def _wait_for(what: str, check, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _sensor_ticks(postgres_url: str) -> list[tuple[str, float]]:
    """(status, timestamp) of the sensor's ticks the daemon stored."""
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, EXTRACT(EPOCH FROM timestamp) FROM job_ticks ORDER BY 2")
        return [(status, float(t)) for status, t in cur.fetchall()]


def test_racing_sensor_ticks_make_one_run_and_a_queued_run_waits_for_the_topic(
    lakehouse_env: dict[str, str],
    postgres_url: str,
    broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    import os
    import threading

    from dagster._core.storage.tags import RUN_KEY_TAG

    from dagster_project.resources import LakehouseResource
    from dagster_project.sensors import SENSORS
    from ingestion import kafka_client

    monkeypatch.setenv("LAKEHOUSE_DAGSTER_POSTGRES_URL", postgres_url)
    settings = Settings.from_env()
    home = ensure_dagster_home(settings)
    orders = [json.dumps({"order_id": f"o{i}"}).encode() for i in range(12)]
    kafka_client.produce(broker.bootstrap, "orders", ((None, v) for v in orders))

    # two ticks of the real sensor evaluated at once from the same cursor: one range, one key
    sensor = next(s for s in SENSORS if s.name == "orders_new_offsets")
    results: list = [None, None]
    start = threading.Barrier(2)

    def tick(i: int) -> None:
        start.wait()
        context = dg.build_sensor_context(resources={"lakehouse": LakehouseResource()})
        results[i] = sensor(context)

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    keys = [[r.run_key for r in result.run_requests] for result in results]
    assert len(keys[0]) == 1 and keys[0] == keys[1]
    assert keys[0][0].startswith("orders@") and keys[0][0].endswith(
        ",".join(f"{p}:0-{n}" for p, n in enumerate(_partition_counts(broker, "orders")))
    )

    # the daemon: its ticks over that range while the run holds make no second run
    gates = tmp_path / "gates"
    gates.mkdir()
    (tmp_path / "held.py").write_text(HELD_LOCATION)
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: held.py\n"
        f"      working_directory: {REPO}\n      location_name: held\n"
    )
    env = dict(os.environ) | {
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "LAKEHOUSE_TEST_GATES": str(gates),
    }
    bin_dir = Path(sys.executable).parent
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with dg.DagsterInstance.get() as instance:
            started = time.monotonic()
            first = _wait_for("the sensor's run to start", lambda: list(gates.glob("*.started")))
            first_id = first[0].stem
            run = instance.get_run_by_id(first_id)
            assert run is not None and run.tags[RUN_KEY_TAG] == keys[0][0]
            requested_at = time.time()
            # two more ticks of the daemon over the same (not yet ingested) range
            _wait_for(
                "two more sensor ticks",
                lambda: (
                    sum(
                        status == "SKIPPED" and t > requested_at
                        for status, t in _sensor_ticks(postgres_url)
                    )
                    >= 2
                ),
            )
            later = [status for status, t in _sensor_ticks(postgres_url) if t > requested_at]
            assert "SUCCESS" not in later  # no tick requested a run: the range is requested
            assert len(instance.get_runs()) == 1

            # a second run of the job (same table, same topic tag) waits in the queue
            launched = subprocess.run(
                [
                    str(bin_dir / "dagster"),
                    "job",
                    "launch",
                    "-w",
                    "workspace.yaml",
                    "-j",
                    "ingest_orders",
                    "-c",
                    str(_end_offsets_config(tmp_path)),
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert launched.returncode == 0, launched.stdout + launched.stderr
            second = next(r for r in instance.get_runs() if r.run_id != first_id)
            time.sleep(4)  # four dequeue intervals of the daemon
            assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.QUEUED
            assert not (gates / f"{second.run_id}.started").exists()

            (gates / f"{first_id}.go").touch()
            _wait_for("the second run to start", (gates / f"{second.run_id}.started").exists)
            (gates / f"{second.run_id}.go").touch()
            for run_id in (first_id, second.run_id):
                _wait_for(
                    "runs to succeed",
                    lambda r=run_id: (
                        instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS
                    ),
                )
            first_stats = instance.get_run_stats(first_id)
            second_stats = instance.get_run_stats(second.run_id)
            assert second_stats.start_time >= first_stats.end_time  # never both at once
            assert len(instance.get_runs()) == 2  # still one run for the sensor's range
            print(f"daemon part: {time.monotonic() - started:.1f} s")
    finally:
        # the daemon, the code server it started and that server's workers: the server
        # and its workers were seen outliving a daemon stopped by SIGTERM alone
        stop_session(daemon)


def _partition_counts(broker, topic: str) -> list[int]:
    from ingestion import kafka_client

    marks = kafka_client.probe_high_watermarks(broker.bootstrap, topic)
    return [marks[p] for p in sorted(marks)]


def _end_offsets_config(folder: Path) -> Path:
    path = folder / "run.yaml"
    path.write_text("ops:\n  raw_orders:\n    config:\n      end_offsets: {}\n")
    return path
