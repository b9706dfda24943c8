"""Operational alerts' logic: state transitions (trigger, quiet, resolve, cooldown), payloads,
freshness and null-rate conditions, orphan files of a real Delta table, delivery to a real
local webhook with the `alerts` table."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from sentiment_kit import Receiver

from lakehouse.config import Settings
from monitoring.alerts import (
    NULL_RATE,
    STREAM_FRESHNESS,
    AlertHistory,
    Condition,
    history,
    open_alerts,
    reconcile,
    transitions,
)
from monitoring.delivery import ALERTS_SCHEMA, stored_alerts
from monitoring.freshness import StreamFreshness, gold_condition, stream_condition
from monitoring.null_rates import NullRateReport, null_rate_thresholds, null_rates
from monitoring.orphans import orphan_condition, table_orphans

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EMPTY = AlertHistory({}, {})


def _condition(firing: bool, subject: str = "orders") -> Condition:
    return Condition(STREAM_FRESHNESS, subject, "", firing, 200.0, 120.0, f"{subject} stale")


def test_trigger_then_quiet_then_resolve_then_cooldown() -> None:
    first = transitions([_condition(True), _condition(False, "sessions")], EMPTY, NOW, timedelta(0))
    assert [(t.action, t.condition.subject) for t in first] == [("trigger", "orders")]
    rows = pa.Table.from_pylist(
        [
            {
                "alert_id": first[0].alert_id,
                "kind": STREAM_FRESHNESS,
                "brand": "orders",
                "aspect": "",
                "created_at": NOW,
                "event_action": "trigger",
            }
        ]
    )
    past = history(rows)
    assert set(past.open) == {(STREAM_FRESHNESS, "orders", "")}
    # still firing: one alert, nothing new
    assert transitions([_condition(True)], past, NOW + timedelta(minutes=1), timedelta(0)) == []
    # cleared: a resolve naming the trigger it closes
    (resolve,) = transitions([_condition(False)], past, NOW + timedelta(minutes=2), timedelta(0))
    assert resolve.action == "resolve" and resolve.resolves == first[0].alert_id
    resolved = pa.concat_tables(
        [
            rows,
            pa.Table.from_pylist(
                [
                    {
                        "alert_id": resolve.alert_id,
                        "kind": STREAM_FRESHNESS,
                        "brand": "orders",
                        "aspect": "",
                        "created_at": NOW + timedelta(minutes=2),
                        "event_action": "resolve",
                    }
                ]
            ),
        ]
    )
    past = history(resolved)
    assert past.open == {}
    # firing again within the cooldown of the last trigger: held back; after it: raised
    cooldown = timedelta(minutes=30)
    assert transitions([_condition(True)], past, NOW + timedelta(minutes=10), cooldown) == []
    (again,) = transitions([_condition(True)], past, NOW + timedelta(minutes=31), cooldown)
    assert again.action == "trigger" and again.alert_id != first[0].alert_id
    # business alerts (event_action null) never count as open operational alerts
    sentiment = pa.Table.from_pylist(
        [{**rows.to_pylist()[0], "kind": "sentiment_spike", "event_action": None}]
    )
    assert history(sentiment).open == {}


def test_stream_condition_says_why_and_what_fixes_it() -> None:
    stopped = StreamFreshness("orders", NOW, NOW - timedelta(seconds=150), 0, None)
    c = stream_condition(stopped, 120)
    assert c is not None and c.firing and c.value == 150.0 and c.since == stopped.newest_event_at
    assert "producers stopped" in c.summary and "Kafka lag 0 s" in c.summary
    behind = StreamFreshness(
        "orders", NOW, NOW - timedelta(seconds=300), 42, NOW - timedelta(seconds=290)
    )
    c = stream_condition(behind, 120)
    assert c is not None and c.firing and behind.lag_seconds == 290.0
    assert "42 records wait" in c.summary and c.fix == "lakehouse materialize 'key:raw_orders+'"
    fresh = StreamFreshness("orders", NOW, NOW - timedelta(seconds=30), 0, None)
    assert stream_condition(fresh, 120).firing is False  # type: ignore[union-attr]
    assert stream_condition(StreamFreshness("orders", NOW, None, 0, None), 120) is None
    # nothing in the lake yet but records waiting: the lag alone is the latency
    waiting = StreamFreshness("orders", NOW, None, 5, NOW - timedelta(seconds=400))
    assert stream_condition(waiting, 120).value == 400.0  # type: ignore[union-attr]
    from monitoring.freshness import latency_threshold

    assert latency_threshold("orders", 120) == 120  # the setting
    assert latency_threshold("weather", 120) == 36 * 3600  # a daily feed's contract
    old = gold_condition("daily_sales", NOW - timedelta(minutes=45), NOW, timedelta(minutes=30))
    assert old is not None and old.firing and old.value == 2700.0
    assert gold_condition("daily_sales", None, NOW, timedelta(minutes=30)) is None


def test_null_rates_from_payloads_against_the_contract() -> None:
    assert null_rate_thresholds("transactions") == {
        "device_id": 0.05,
        "ip": 0.05,
        "lat": 0.05,
        "lon": 0.05,
    }
    assert null_rate_thresholds("orders") == {}  # store_id is null for web orders: undeclared
    payloads = pa.array(
        [json.dumps({"device_id": None, "ip": "1.2.3.4"})] * 3
        + [json.dumps({"ip": None})]
        + [json.dumps({"device_id": "d", "ip": "5.6.7.8"})] * 6,
        pa.large_string(),
    )
    rates = null_rates(payloads, ["device_id", "ip"])
    assert rates == {"device_id": 0.4, "ip": 0.1}
    report = NullRateReport("transactions", "b1", 10, rates, {"device_id": 0.05, "ip": 0.2}, True)
    assert report.breaches == {"device_id": 0.4}
    by_column = {c.detail: c for c in report.conditions()}
    assert by_column["device_id"].firing and not by_column["ip"].firing
    assert by_column["device_id"].kind == NULL_RATE and "40.0%" in by_column["device_id"].summary
    small = NullRateReport("transactions", "b1", 10, {}, {"device_id": 0.05}, False)
    assert small.conditions() == []  # below the minimum batch: not judged, state unchanged


def test_orphan_files_are_unreferenced_old_data_files(settings: Settings) -> None:
    uri = settings.table_uri("raw", "orders")
    data = pa.table({"id": list(range(10)), "day": ["2026-12-01"] * 10})
    write_deltalake(uri, data, partition_by=["day"])
    write_deltalake(uri, data, mode="overwrite", partition_by=["day"])  # v0 files now removed
    table = DeltaTable(uri)
    assert table_orphans(settings, "raw/orders").files == []  # removed files are referenced
    # a writer crashed after writing its Parquet file: nothing in the log names it
    some_file = Path(uri) / table.file_uris()[0].split(uri, 1)[-1].lstrip("/")
    planted = some_file.parent / "part-00000-crashed-writer.c000.snappy.parquet"
    shutil.copy(some_file, planted)
    assert table_orphans(settings, "raw/orders").files == []  # younger than the retention
    old = time.time() - (settings.maintenance_retention_hours + 1) * 3600
    os.utime(planted, (old, old))
    found = table_orphans(settings, "raw/orders")
    assert [f.path for f in found.files] == ["day=2026-12-01/" + planted.name]
    condition = orphan_condition(found, settings.maintenance_retention_hours)
    assert condition.firing and condition.value == 1.0
    assert condition.fix == "lakehouse lake maintain --table raw/orders"


def test_reconcile_delivers_trigger_and_resolve_to_the_webhook(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as hook:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", hook.url)
        live = Settings.from_env()
        raised = reconcile(live, [_condition(True)], NOW)
        assert reconcile(live, [_condition(True)], NOW + timedelta(minutes=1)) == []
        assert [r["alert_id"] for r in open_alerts(live)] == [raised[0]["alert_id"]]
        cleared = reconcile(live, [_condition(False)], NOW + timedelta(minutes=2))
    assert [r["event_action"] for r in raised + cleared] == ["trigger", "resolve"]
    assert all(r["delivered"] for r in raised + cleared)
    slack, trigger, slack_ok, resolve = hook.bodies
    assert slack["text"].startswith(":rotating_light:") and "orders stale" in slack["text"]
    assert trigger["event_action"] == "trigger" and trigger["payload"]["class"] == STREAM_FRESHNESS
    assert slack_ok["text"].startswith(":white_check_mark: Resolved")
    assert resolve == {
        "routing_key": "lakehouse-operations",
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    stored = stored_alerts(live)
    assert stored.schema.names == ALERTS_SCHEMA.names and stored.num_rows == 2
    assert open_alerts(live) == []


def test_usage_meter_measures_cpu_bytes_and_memory(settings: Settings, tmp_path: Path) -> None:
    from monitoring.usage import USAGE_SCHEMA, UsageMeter, record_usage, usage_uri

    payload = os.urandom(4_000_000)
    with UsageMeter() as idle:
        time.sleep(0.2)
    with UsageMeter() as busy:
        (tmp_path / "blob").write_bytes(payload)
        assert (tmp_path / "blob").read_bytes() == payload
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # burn 0.3 s of CPU
            pass
    assert idle.wall_seconds >= 0.2 and idle.cpu_seconds < busy.cpu_seconds
    # the meter reads the kernel's CPU clock (10 ms ticks), process_time a finer one
    assert busy.cpu_seconds >= 0.28 and busy.wall_seconds >= 0.28
    assert busy.bytes_written >= len(payload) and busy.bytes_read >= len(payload)
    assert idle.bytes_written < len(payload) / 10
    assert busy.peak_memory_bytes > len(payload)
    row = busy.row("run-1", "ingest_orders", "raw_transactions", rows=42)
    assert (row["domain"], row["team"], row["cost_center"]) == (
        "fraud",
        "fraud-risk",
        "CC-2100-RISK",
    )
    record_usage(settings, [row, idle.row("run-1", "ingest_orders", "gold_dbt", rows=0)])
    stored = DeltaTable(usage_uri(settings)).to_pyarrow_table()
    assert stored.schema.names == USAGE_SCHEMA.names and stored.num_rows == 2
    assert stored.column("domain").to_pylist() == ["fraud", "platform"]


def test_idle_stream_cadence_and_idle_watch() -> None:
    from monitoring.idle import IdleWatch, StreamActivity, after_probe, stream_cadence

    t0 = 1_000_000.0
    fresh = after_probe(StreamActivity(), t0, found_new=False)  # first look starts the clock
    assert fresh.last_new_at == t0
    active = stream_cadence(fresh, t0 + 599, 600, 60)
    assert active.probe and not active.idle
    idle = after_probe(fresh, t0 + 600, found_new=False)
    cadence = stream_cadence(idle, t0 + 630, 600, 60)
    assert cadence.idle and not cadence.probe  # probed 30 s ago: wait for the slow tick
    assert stream_cadence(idle, t0 + 660, 600, 60).probe
    woke = after_probe(idle, t0 + 660, found_new=True)
    assert not stream_cadence(woke, t0 + 665, 600, 60).idle

    clock = [0.0]
    counter = [0]
    watch = IdleWatch(10, lambda: counter[0], sample_every_s=1, clock=lambda: clock[0])
    clock[0] = 100.0  # created long before its first look: not idle yet
    assert not watch.expired() and watch.idle_seconds == 0  # the first look starts the clock
    clock[0] = 109.5
    assert not watch.expired()
    counter[0] += 1  # activity resets the idle clock at its next sample
    clock[0] = 110.5
    assert not watch.expired() and watch.idle_seconds == 0
    clock[0] = 120.4
    assert not watch.expired()
    clock[0] = 120.6
    assert watch.expired() and watch.idle_seconds == pytest.approx(10.1)


def test_dbt_test_results_become_check_conditions(tmp_path: Path) -> None:
    from monitoring.failures import dbt_test_conditions

    def test_node(name: str) -> dict[str, object]:
        return {
            "resource_type": "test",
            "name": name,
            "attached_node": "model.lakehouse.daily_sales",
            "depends_on": {"nodes": ["model.lakehouse.daily_sales"]},
        }

    manifest = {
        "nodes": {
            "test.a": test_node("not_null_daily_sales_d"),
            "test.b": test_node("in_range_daily_sales_units"),
            "test.c": test_node("unique_daily_sales_d"),
            "model.lakehouse.daily_sales": {"resource_type": "model", "name": "daily_sales"},
        }
    }
    results = {
        "results": [
            {"unique_id": "test.a", "status": "pass"},
            {"unique_id": "test.b", "status": "fail", "message": "Got 3 results"},
            {"unique_id": "test.c", "status": "skipped"},
            {"unique_id": "model.lakehouse.daily_sales", "status": "success"},
        ]
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run_results.json").write_text(json.dumps(results))
    found = dbt_test_conditions(tmp_path / "manifest.json", tmp_path / "run_results.json")
    by_test = {c.subject: c for c in found}
    assert set(by_test) == {
        "not_null_daily_sales_d",
        "in_range_daily_sales_units",
    }  # skipped: no news
    failing = by_test["in_range_daily_sales_units"]
    assert failing.firing and failing.detail == "daily_sales" and "Got 3 results" in failing.summary
    assert not by_test["not_null_daily_sales_d"].firing
    assert dbt_test_conditions(tmp_path / "manifest.json", tmp_path / "missing.json") == []


def test_usage_writer_batches_rows_off_the_hot_path(settings: Settings) -> None:
    from monitoring.usage import UsageMeter, UsageWriter, usage_uri

    writer = UsageWriter(linger_s=2.0)
    with UsageMeter() as meter:
        pass
    for asset in ("raw_orders", "silver_orders", "gold_dbt"):
        writer.submit(settings, meter.row("run-2", "ingest_orders", asset, rows=1))
    assert not Path(usage_uri(settings)).exists()  # submit returned before any commit
    assert writer.flush(30)
    table = DeltaTable(usage_uri(settings))
    assert table.version() == 0  # the three steps share one commit
    assert sorted(table.to_pyarrow_table().column("asset").to_pylist()) == [
        "gold_dbt",
        "raw_orders",
        "silver_orders",
    ]


def test_a_run_failure_names_the_work_that_failed() -> None:
    from monitoring.failures import run_condition, run_subject

    assert run_subject("materialize_raw", {}, None) == "materialize_raw"
    automated = {"lakehouse/automation": "gold_refresh", "domain": "analytics"}
    assert run_subject("__ASSET_JOB", automated, ["daily_sales"]) == "automation gold_refresh"
    assert run_subject("__ASSET_JOB_1", {}, ["silver_orders", "raw_orders"]) == (
        "assets raw_orders, silver_orders"
    )
    many = [f"m{i}" for i in range(7)]
    assert run_subject("__ASSET_JOB", {}, many) == "assets m0, m1, m2, m3, m4 (+2 more)"
    assert run_subject("__ephemeral_asset_job__", {}, []) == "__ephemeral_asset_job__"
    fired = run_condition("automation gold_refresh", "0123456789", True, "boom\nstack")
    assert fired.key == ("run_failure", "automation gold_refresh", "")
    assert fired.summary == "Run 01234567 of automation gold_refresh failed: boom"
