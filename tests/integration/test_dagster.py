"""The Dagster code location: definitions, sensors deciding ranges, a small graph materialized
(with checks and lineage), and the production profile's PostgreSQL run storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg2
import pytest
from deltalake import DeltaTable
from testkit import check_counts

from ingestion import kafka_client
from ingestion.broker import TOPICS, EmbeddedBroker
from lake.gold import GOLD_TABLES, read_gold
from lake.tables import raw_uri
from lakehouse.config import Settings
from lakehouse.generate import backfill
from lakehouse.instance import ensure_dagster_home
from lakehouse.runner import materialize_selection
from monitoring.usage import usage_uri

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_definitions_cover_the_whole_graph() -> None:
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {f"raw_{t}" for t in TOPICS} <= keys
    assert {
        "silver_orders",
        "silver_sessions",
        "silver_inventory",
        "silver_inventory_current",
    } <= keys
    assert set(GOLD_TABLES) <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
        assert node.group_name in {
            "raw",
            "silver",
            "gold",
            "gold_staging",
            "reference",
            "fraud",
            "supply_chain",
            "platform",  # FinOps `_usage`, the platform snapshot and the tables its models read
        }
    # gold depends on silver through the dbt sources
    assert dg.AssetKey("silver_orders") in graph.get(dg.AssetKey("daily_sales")).parent_keys or any(
        dg.AssetKey("silver_orders") in graph.get(p).parent_keys
        for p in graph.get(dg.AssetKey("daily_sales")).parent_keys
    )
    # the supply-chain dbt models read the Delta tables of the forecasting assets
    for model, source in {
        "sc_reorder_proposals": "reorder_proposals",
        "sc_otif_daily": "eta_predictions",
        "sc_supply_chain_kpis": "supply_chain_kpis",
    }.items():
        assert graph.get(dg.AssetKey(model)).parent_keys == {dg.AssetKey(source)}
    # ... and are rebuilt by the nightly job, not by the gold_refresh automation
    refresh = defs.resolve_job_def("refresh_gold").asset_layer.selected_asset_keys
    nightly = defs.resolve_job_def("nightly_supply_chain").asset_layer.selected_asset_keys
    assert dg.AssetKey("daily_sales") in refresh
    assert dg.AssetKey("sc_reorder_proposals") not in refresh
    assert dg.AssetKey("sc_reorder_proposals") in nightly
    checks = {c.name for c in graph.asset_check_keys}
    assert {"silver_orders_expectations", "daily_sales_expectations"} <= checks
    assert {s.name for s in defs.sensors} == {f"{t}_new_offsets" for t in TOPICS} | {
        "gold_automation",
        "stream_freshness",
        "orphan_files",
        "run_failure_alerts",
        "run_success_resolves",
    }
    assert {"raw_transactions_null_rates", "raw_social_raw_null_rates"} <= checks
    # what refresh_gold selects is exactly what the gold_refresh condition keeps fresh, with
    # its native freshness policy; the sensor evaluating it runs by default
    automated = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert automated == set(refresh)
    assert {graph.get(k).automation_condition.get_label() for k in automated} == {"gold_refresh"}
    assert graph.get(dg.AssetKey("daily_sales")).freshness_policy is not None
    sensor = defs.get_sensor_def("gold_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {s.name for s in defs.schedules} >= {
        "nightly_supply_chain_at_2am",
        "fraud_nightly_retraining",
    }


def test_sensor_requests_the_new_range_once_and_never_consumes(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    from dagster_project.definitions import defs
    from dagster_project.resources import LakehouseResource

    kafka_client.produce(broker.bootstrap, "orders", [(b"k%d" % i, b"{}") for i in range(50)])
    sensor = defs.get_sensor_def("orders_new_offsets")
    context = dg.build_sensor_context(resources={"lakehouse": LakehouseResource()})
    result = sensor(context)
    [request] = result.run_requests
    ends = request.run_config["ops"]["raw_orders"]["config"]["end_offsets"]
    assert sum(ends.values()) == 50
    assert request.run_key.startswith("orders@0:")
    # nothing was ingested by the sensor
    with pytest.raises(Exception):  # noqa: B017 - no table yet
        DeltaTable(raw_uri(settings, "orders"))
    # with the cursor at the requested end, the same range is not requested again
    again = sensor(
        dg.build_sensor_context(cursor=result.cursor, resources={"lakehouse": LakehouseResource()})
    )
    assert isinstance(again, dg.SkipReason)


def test_sensor_after_broker_restart_asks_for_a_new_epoch_then_restarts_at_zero(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    from dagster_project.definitions import defs
    from dagster_project.resources import LakehouseResource
    from ingestion.raw import ingest_batch, start_new_epoch

    kafka_client.produce(broker.bootstrap, "orders", [(b"k%d" % i, b"{}") for i in range(60)])
    ingest_batch(settings, "orders", broker.bootstrap)
    sensor = defs.get_sensor_def("orders_new_offsets")
    resources = {"lakehouse": LakehouseResource()}
    caught_up = sensor(dg.build_sensor_context(resources=resources))
    assert isinstance(caught_up, dg.SkipReason)
    old_cursor = json.dumps({"epoch": 0, "offsets": {"0": 20, "1": 20, "2": 20}})

    broker.stop()  # memory storage: the log is gone
    broker.start()
    broker.ensure_topics()
    kafka_client.produce(broker.bootstrap, "orders", [(b"n%d" % i, b"{}") for i in range(6)])
    behind = sensor(dg.build_sensor_context(cursor=old_cursor, resources=resources))
    assert isinstance(behind, dg.SkipReason)
    assert "--new-epoch" in (behind.skip_message or "")

    start_new_epoch(settings, "orders", broker.bootstrap, "test restart")
    result = sensor(dg.build_sensor_context(cursor=old_cursor, resources=resources))
    [request] = result.run_requests
    assert request.run_key.startswith("orders@1:")
    ends = request.run_config["ops"]["raw_orders"]["config"]["end_offsets"]
    assert sum(ends.values()) == 6


def test_gold_refresh_requests_the_dbt_build_once_per_quarter_hour_after_new_silver_data(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    """Declarative automation on the lakehouse's own instance: silver micro-batches alone
    request nothing; the next quarter-hour tick requests the dbt gold build, once."""
    from dagster_project.definitions import defs

    backfill(broker.bootstrap, 1, seed=5, scale=0.005, end=END)
    materialize_selection(settings, "group:raw or group:silver")
    refresh = defs.resolve_job_def("refresh_gold").asset_layer.selected_asset_keys
    base = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=1, second=0, microsecond=0)
    with dg.DagsterInstance.get() as instance:

        def evaluate_at(
            minute: int, cursor: object = None
        ) -> dg.EvaluateAutomationConditionsResult:
            return dg.evaluate_automation_conditions(
                defs, instance, evaluation_time=base + timedelta(minutes=minute), cursor=cursor
            )

        first = evaluate_at(0)  # the sensor's first tick only starts the clock
        assert first.total_requested == 0
        # a new silver micro-batch between two ticks of the same quarter hour: no rebuild
        silver = dg.AssetKey("silver_orders")
        before = instance.get_latest_materialization_event(silver)
        backfill(broker.bootstrap, 0.2, seed=6, scale=0.005, end=END + timedelta(hours=1))
        materialize_selection(settings, "key:raw_orders or key:silver_orders")
        after = instance.get_latest_materialization_event(silver)
        assert before is not None and after is not None and after.timestamp > before.timestamp
        same_quarter = evaluate_at(9, first.cursor)
        assert same_quarter.total_requested == 0
        # the HH:15 tick: every gold model, the platform snapshot, nothing nightly
        tick = evaluate_at(16, same_quarter.cursor)
        requested = {k for k in refresh if tick.get_requested_partitions(k)}
        assert requested == set(refresh)
        assert dg.AssetKey("daily_sales") in requested
        assert dg.AssetKey("sc_reorder_proposals") not in requested
        # requested once per tick: another silver micro-batch in the same quarter, nothing ...
        materialize_selection(settings, "key:raw_orders or key:silver_orders")
        later = evaluate_at(22, tick.cursor)
        assert later.total_requested == 0
        # ... and the next tick requests the build again
        assert evaluate_at(31, later.cursor).total_requested == len(refresh)


def test_small_graph_materializes_with_checks_and_lineage(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    backfill(broker.bootstrap, 2, seed=3, scale=0.005, end=END)
    summary = materialize_selection(settings, None)
    checks, failed, _ = check_counts(summary)
    assert checks > 50 and failed == 0, summary
    daily = read_gold(settings, "SELECT sum(units) AS units FROM daily_sales")
    assert daily.column("units")[0].as_py() > 0
    cover = read_gold(settings, "SELECT count(*) AS n FROM stock_cover_days")
    assert cover.column("n")[0].as_py() == 100  # 20 SKUs × 5 stores
    events = [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]
    silver = [e for e in events if e["job"]["name"] == "silver_orders"]
    assert [e["eventType"] for e in silver] == ["START", "COMPLETE"]
    assert silver[1]["inputs"][0]["name"].endswith("/raw/orders")
    assert silver[1]["outputs"][0]["facets"]["schema"]["fields"]
    # a second run with nothing new adds no silver rows
    again = materialize_selection(settings, "group:raw or group:silver")
    assert check_counts(again)[1] == 0, again

    # FinOps: every asset step of both runs left a `_usage` row, owner-tagged ...
    usage = DeltaTable(usage_uri(settings)).to_pyarrow_table().to_pylist()
    by_asset = {(r["asset"], r["run_id"]): r for r in usage}
    raw_orders = [r for (a, _), r in by_asset.items() if a == "raw_orders"]
    assert len(raw_orders) == 2 and {r["domain"] for r in raw_orders} == {"retail"}
    first = max(raw_orders, key=lambda r: r["rows"])
    raw_rows = DeltaTable(raw_uri(settings, "orders")).to_pyarrow_table().num_rows
    assert first["rows"] == raw_rows and min(r["rows"] for r in raw_orders) == 0
    assert first["cpu_seconds"] > 0 and first["wall_seconds"] >= first["cpu_seconds"] * 0.1
    assert first["bytes_read"] > 0 and first["bytes_written"] > 0  # Kafka in, Parquet out
    assert first["peak_memory_bytes"] > 50e6  # a Python process with Arrow and Dagster loaded
    gold_step = next(r for (a, _), r in by_asset.items() if a == "gold_dbt")
    assert gold_step["domain"] == "platform" and gold_step["cpu_seconds"] > 0  # dbt child CPU
    # ... and the gold model rolls them up per day and owner (what the model saw: the rows
    # written before this build, its own step is written after it)
    before = len(usage)
    materialize_selection(settings, "key:finops_usage_daily")
    daily = read_gold(settings, "SELECT * FROM finops_usage_daily")
    assert daily.column("steps").to_pylist() and sum(daily.column("steps").to_pylist()) == before
    assert set(daily.column("domain").to_pylist()) >= {"retail", "platform"}
    cpu = sum(r["cpu_seconds"] for r in usage)
    assert abs(sum(daily.column("cpu_seconds").to_pylist()) - cpu) < 1e-6


def test_production_profile_stores_dagster_runs_in_postgres(
    lakehouse_env: dict[str, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_DAGSTER_POSTGRES_URL", postgres_url)
    settings = Settings.from_env()
    broker = EmbeddedBroker(settings)
    broker.start()
    broker.ensure_topics()
    try:
        kafka_client.produce(
            broker.bootstrap, "orders", [(b"o1", json.dumps({"not": "an order"}).encode())]
        )
        home = ensure_dagster_home(settings)
        assert "postgres_url" in (home / "dagster.yaml").read_text()
        summary = materialize_selection(settings, "key:raw_orders")
    finally:
        broker.stop()
    run_id = summary.split()[1].rstrip(":")
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
