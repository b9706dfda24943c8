"""Annex A alerts end to end, on a real embedded broker and a real local webhook: a stream
that stops alerts and resolves when it resumes; a null-heavy micro-batch alerts from its
check; a planted orphan file alerts until maintenance removes it; a failed run alerts and the
job's next success resolves it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from deltalake import DeltaTable
from sentiment_kit import Receiver
from testkit import SEED_TRANSACTION, order_message

from dagster_project.definitions import defs
from dagster_project.monitoring import (
    orphan_files_sensor,
    run_failure_alerts,
    run_success_resolves,
    stream_freshness_sensor,
)
from dagster_project.resources import LakehouseResource
from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch
from lake.maintenance import maintain_lake
from lake.tables import raw_uri
from lakehouse.config import Settings
from lakehouse.runner import materialize_selection
from monitoring.alerts import open_alerts
from monitoring.delivery import stored_alerts

pytestmark = pytest.mark.integration
RESOURCES = {"lakehouse": LakehouseResource()}


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, lakehouse_env: dict[str, str]) -> Any:
    with Receiver() as receiver:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("LAKEHOUSE_ALERT_COOLDOWN_MINUTES", "0")
        yield receiver


def _pagerduty(hook: Receiver) -> list[dict[str, Any]]:
    return [b for b in hook.bodies if "event_action" in b]


def _tick(sensor: dg.SensorDefinition) -> str:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources=RESOURCES, repository_def=defs.get_repository_def()
        )
        result = sensor(context)
    return str(result.skip_message)


def test_stopped_stream_alerts_then_resolves(
    hook: Receiver, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_STREAM_LATENCY_SECONDS", "10")
    settings = Settings.from_env()
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(20)])
    ingest_batch(settings, "orders", broker.bootstrap)
    fresh = _tick(stream_freshness_sensor)
    assert "0 stale" in fresh and _pagerduty(hook) == [], fresh  # topics without data: not judged

    time.sleep(11)  # the stream stops for longer than the threshold
    stale = _tick(stream_freshness_sensor)
    assert "1 stale (orders)" in stale and "1 alert events sent" in stale, stale
    (trigger,) = _pagerduty(hook)
    assert (
        trigger["event_action"] == "trigger" and trigger["dedup_key"] == "stream_freshness:orders"
    )
    assert "producers stopped" in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]["value"] > 10
    assert _tick(stream_freshness_sensor).endswith(
        "0 alert events sent"
    )  # one alert, not one a tick

    # records produced but not ingested yet: still stale, and the summary says the lag in time
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(20, 30)])
    assert "1 stale (orders)" in _tick(stream_freshness_sensor)
    ingest_batch(settings, "orders", broker.bootstrap)  # the stream resumes
    resumed = _tick(stream_freshness_sensor)
    assert "0 stale" in resumed, resumed
    resolve = _pagerduty(hook)[-1]
    assert resolve == {
        "routing_key": "lakehouse-operations",
        "event_action": "resolve",
        "dedup_key": "stream_freshness:orders",
    }
    assert hook.bodies[-2]["text"].startswith(":white_check_mark: Resolved")
    actions = [r["event_action"] for r in stored_alerts(settings).to_pylist()]
    assert sorted(actions) == ["resolve", "trigger"] and open_alerts(settings) == []


def _transactions(start: int, n: int, **changes: object) -> list[tuple[bytes, bytes]]:
    events = [
        {**SEED_TRANSACTION, "transaction_id": f"tx_{i}", **changes}
        for i in range(start, start + n)
    ]
    return [(str(e["transaction_id"]).encode(), json.dumps(e).encode()) for e in events]


def test_null_heavy_batch_alerts_from_its_check(hook: Receiver, broker: EmbeddedBroker) -> None:
    settings = Settings.from_env()
    kafka_client.produce(
        broker.bootstrap, "transactions", _transactions(0, 60, device_id=None, ip=None)
    )
    summary = materialize_selection(settings, "key:raw_transactions")
    assert "raw_transactions_null_rates" in summary, summary  # a warning, not a failure
    triggers = {b["dedup_key"]: b for b in _pagerduty(hook)}
    assert set(triggers) == {"null_rate:transactions:device_id", "null_rate:transactions:ip"}
    assert "100.0% of the 60 events" in triggers["null_rate:transactions:ip"]["payload"]["summary"]

    kafka_client.produce(broker.bootstrap, "transactions", _transactions(60, 60))
    materialize_selection(settings, "key:raw_transactions")
    resolves = [b for b in _pagerduty(hook) if b["event_action"] == "resolve"]
    assert {b["dedup_key"] for b in resolves} == set(triggers)
    assert open_alerts(settings) == []


def test_planted_orphan_file_alerts_until_maintenance(
    hook: Receiver, broker: EmbeddedBroker
) -> None:
    settings = Settings.from_env()
    kafka_client.produce(broker.bootstrap, "orders", [order_message(i) for i in range(20)])
    ingest_batch(settings, "orders", broker.bootstrap)
    assert "0 with orphan files" in _tick(orphan_files_sensor)
    uri = raw_uri(settings, "orders")
    data_file = Path(DeltaTable(uri).file_uris()[0].removeprefix("file://"))
    planted = data_file.parent / "part-00001-never-committed.c000.snappy.parquet"
    shutil.copy(data_file, planted)
    old = time.time() - (settings.maintenance_retention_hours + 2) * 3600
    os.utime(planted, (old, old))

    found = _tick(orphan_files_sensor)
    assert "1 with orphan files (raw/orders)" in found, found
    (trigger,) = _pagerduty(hook)
    assert trigger["dedup_key"] == "orphan_files:raw/orders"
    assert (
        trigger["payload"]["custom_details"]["fix"] == "lakehouse lake maintain --table raw/orders"
    )

    listed = subprocess.run(
        [sys.executable, "-m", "lakehouse", "alerts"],
        env=dict(os.environ) | {"PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "orphan_files: Table raw/orders: 1 data files" in listed.stdout, listed.stdout
    assert "1 open (orphan_files)" in listed.stdout

    maintain_lake(settings, ["raw/orders"])  # the documented fix: VACUUM deletes it
    assert not planted.exists()
    assert "0 with orphan files" in _tick(orphan_files_sensor)
    assert _pagerduty(hook)[-1]["event_action"] == "resolve"


@dg.op
def _flaky() -> None:
    if os.environ.get("FLAKY_FAILS") == "1":
        raise RuntimeError("upstream API returned 503")


@dg.job
def flaky_job() -> None:
    _flaky()


def test_failed_run_alerts_and_next_success_resolves(
    hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env()
    with dg.instance_for_test() as instance:
        monkeypatch.setenv("FLAKY_FAILS", "1")
        failed = flaky_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alerts",
            dagster_event=failed.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
            resources=RESOURCES,
        ).for_run_failure()
        run_failure_alerts(context)
        (trigger,) = _pagerduty(hook)
        assert trigger["dedup_key"] == "run_failure:flaky_job"
        assert "failed" in trigger["payload"]["summary"]

        monkeypatch.setenv("FLAKY_FAILS", "0")
        ok = flaky_job.execute_in_process(instance=instance)
        success_event = next(e for e in ok.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_success_resolves",
            dagster_event=success_event,
            dagster_instance=instance,
            dagster_run=ok.dagster_run,
            resources=RESOURCES,
        )
        run_success_resolves(context)
    assert _pagerduty(hook)[-1] == {
        "routing_key": "lakehouse-operations",
        "event_action": "resolve",
        "dedup_key": "run_failure:flaky_job",
    }
    assert open_alerts(settings) == []


@dg.asset
def _flaky_gold() -> None:
    if os.environ.get("FLAKY_FAILS") == "1":
        raise RuntimeError("dbt build failed: model daily_sales")


@dg.asset
def _other_asset() -> None:
    pass


def test_automated_run_failure_is_resolved_only_by_the_same_automation(
    hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs the daemon starts for asset selections all carry the job name `__ASSET_JOB`: the
    alert names the automation (or the assets), and another selection's success leaves it open."""
    settings = Settings.from_env()

    def run(asset: dg.AssetsDefinition, tags: dict[str, str], fails: bool) -> dg.DagsterRun:
        monkeypatch.setenv("FLAKY_FAILS", "1" if fails else "0")
        result = dg.materialize([asset], instance=instance, tags=tags, raise_on_error=False)
        assert result.success is not fails
        # as the daemon names it: the implicit asset job, the selection it was asked for
        return result.dagster_run._replace(
            job_name="__ASSET_JOB", asset_selection=frozenset({asset.key})
        )

    def event(run: dg.DagsterRun, kind: str) -> dg.DagsterEvent:
        return next(
            e.dagster_event
            for e in instance.all_logs(run.run_id)
            if e.dagster_event is not None and e.dagster_event.event_type_value == kind
        )

    def resolve(run: dg.DagsterRun) -> None:
        context = dg.build_run_status_sensor_context(
            sensor_name="run_success_resolves",
            dagster_event=event(run, "PIPELINE_SUCCESS"),
            dagster_instance=instance,
            dagster_run=run,
            resources=RESOURCES,
        )
        run_success_resolves(context)

    automation = {"lakehouse/automation": "gold_refresh"}
    with dg.instance_for_test() as instance:
        failed = run(_flaky_gold, automation, fails=True)
        run_failure_alerts(
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=event(failed, "PIPELINE_FAILURE"),
                dagster_instance=instance,
                dagster_run=failed,
                resources=RESOURCES,
            ).for_run_failure()
        )
        (trigger,) = _pagerduty(hook)
        assert trigger["dedup_key"] == "run_failure:automation gold_refresh"
        assert "of automation gold_refresh failed: " in trigger["payload"]["summary"]

        resolve(run(_other_asset, {}, fails=False))  # another selection succeeds: still open
        assert [a["brand"] for a in open_alerts(settings)] == ["automation gold_refresh"]
        assert len(_pagerduty(hook)) == 1

        resolve(run(_flaky_gold, automation, fails=False))  # the automation's next run
    assert _pagerduty(hook)[-1]["event_action"] == "resolve"
    assert _pagerduty(hook)[-1]["dedup_key"] == "run_failure:automation gold_refresh"
    assert open_alerts(settings) == []
