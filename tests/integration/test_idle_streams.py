"""Idle streams stop costing: a topic sensor moves to the slow cadence after the idle time and
says so, wakes on new data; the live generator and the fraud decision service exit after the
idle timeout when started with --exit-when-idle (real broker, real processes, real HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from testkit import free_port, order_message

from dagster_project.definitions import defs
from dagster_project.resources import LakehouseResource
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings

pytestmark = pytest.mark.integration
RESOURCES = {"lakehouse": LakehouseResource()}
LAKEHOUSE = [sys.executable, "-m", "lakehouse"]


def _tick(cursor: str | None) -> tuple[dg.SensorResult | dg.SkipReason, str | None]:
    sensor = defs.get_sensor_def("orders_new_offsets")
    context = dg.build_sensor_context(cursor=cursor, resources=RESOURCES)
    result = sensor(context)
    if isinstance(result, dg.SensorResult) and result.cursor is not None:
        return result, result.cursor
    return result, context.cursor


def test_idle_topic_sensor_slows_down_and_wakes_on_new_data(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(10)])
    first, cursor = _tick(None)
    assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
    state = json.loads(cursor or "{}")
    assert abs(state["last_new_at"] - time.time()) < 30  # the idle clock starts now

    quiet, cursor = _tick(cursor)  # nothing new, but not idle yet: probed, plain message
    assert isinstance(quiet, dg.SkipReason) and "no new offsets" in (quiet.skip_message or "")
    assert json.loads(cursor or "{}")["offsets"] == state["offsets"]  # the requested range kept

    # no new offsets for longer than LAKEHOUSE_IDLE_STREAM_MINUTES (10), probed 5 s ago
    now = time.time()
    idle = {**state, "last_new_at": now - 2 * 3600, "last_probe_at": now - 5}
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(10, 15)])
    slow, _ = _tick(json.dumps(idle))
    assert isinstance(slow, dg.SkipReason), slow  # new data waits for the slow cadence ...
    message = slow.skip_message or ""
    assert (
        "idle" in message and "every 60 s instead of every tick" in message and "120 min" in message
    )

    # ... whose probe (last one 61 s ago) finds it and wakes the sensor
    due = {**idle, "last_probe_at": now - 61}
    woke, cursor = _tick(json.dumps(due))
    assert isinstance(woke, dg.SensorResult) and len(woke.run_requests) == 1
    ends = woke.run_requests[0].run_config["ops"]["raw_orders"]["config"]["end_offsets"]
    assert sum(ends.values()) == 15
    assert time.time() - json.loads(cursor or "{}")["last_new_at"] < 30  # active again
    again, _ = _tick(cursor)
    assert "no new offsets" in (again.skip_message or "")  # type: ignore[union-attr]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return dict(os.environ) | {"PYTHONPATH": str(Path.cwd())} | extra


def test_live_generator_exits_when_nothing_consumes_it(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [*LAKEHOUSE, "generate", "all", "--minutes", "60", "--speed", "1", "--exit-when-idle"],
        env=_env(settings, LAKEHOUSE_IDLE_EXIT_SECONDS="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped: the lake consumed nothing of orders, sessions, inventory" in done.stdout
    assert elapsed < 120  # an hour of traffic was asked for
    sent = kafka_client.probe_high_watermarks(broker.bootstrap, "orders")
    assert 0 < sum(sent.values()) < 50 * 60  # Annex B: ≥ 50 orders a minute for the hour

    # without the setting, the flag is refused in one line
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse",
            "generate",
            "all",
            "--minutes",
            "1",
            "--exit-when-idle",
        ],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        refused.returncode != 0 and "LAKEHOUSE_IDLE_EXIT_SECONDS" in refused.stdout + refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_decision_service_exits_after_idle_timeout(settings: Settings) -> None:
    port = free_port()
    service = subprocess.Popen(
        [*LAKEHOUSE, "fraud", "serve", "--port", str(port), "--exit-when-idle"],
        env=_env(settings, LAKEHOUSE_IDLE_EXIT_SECONDS="6"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        served = 0
        while time.monotonic() < deadline and service.poll() is None and served < 8:
            try:  # requests keep it alive: eight of them, 1 s apart (longer than the timeout)
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
                served += 1
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert served == 8 and service.poll() is None  # busy for 8 s > 6 s: still up
        last_request = time.monotonic()
        rc = service.wait(timeout=60)
        idle_for = time.monotonic() - last_request
        output = service.stdout.read() if service.stdout else ""
    finally:
        if service.poll() is None:
            service.kill()
    assert rc == 0, output
    assert "no request for 6 s (LAKEHOUSE_IDLE_EXIT_SECONDS): exiting" in output
    assert idle_for >= 5.5
