"""LAKEHOUSE_ENGINE=spark gives the lake LAKEHOUSE_ENGINE=duckdb gives: every silver table row
for row and column for column (types, rounding, UTC, HMAC pseudonyms of decrypted raw PII,
erased subjects left out, late counts), and the dbt gold built on top.

One raw lake is written the way ingestion writes it (generators' events of every topic,
contract-validated, direct identifiers AES-GCM encrypted per subject), plus a second
micro-batch of re-deliveries and edge cases (DuckDB-vs-Spark rounding, `2.0` integers, UTC
offsets, late events, newer and tied stock updates, transactions v2, a subject whose key was
destroyed). It is copied twice; each copy is materialized through Dagster — the silver assets
of one engine with their Great Expectations checks, twice (one run per raw micro-batch), then
the real dbt project — and the two lakes are compared.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from spark_kit import (
    append_raw,
    assert_same_rows,
    event,
    generated_messages,
    module_spark,
    raw_batch,
)

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from dagster_project.assets.gold import dbt_resource, gold_dbt
from dagster_project.assets.silver import pyspark_resource, silver_assets
from dagster_project.checks import QUALITY_CHECKS
from dagster_project.resources import LakehouseResource
from governance.crypto import key_id
from governance.keystore import open_key_store
from governance.pii import pseudonym
from lake.silver import SPECS
from lake.tables import SILVER_TABLES, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

ERASED = "c_erased_1"
EDGE_CUSTOMER = "c_edge_1"


spark = module_spark("test-spark-engine")


def _edge_cases(
    first: dict[str, list[tuple[bytes, bytes]]],
) -> dict[str, list[tuple[bytes, bytes]]]:
    """The second micro-batch: re-deliveries of the first one and hand-made edge cases."""
    batch = {topic: list(messages[:40]) for topic, messages in first.items()}  # re-delivered
    edge_order = {
        "order_id": "o_edge_1",
        "ts": "2025-08-16T13:30:00.123456+02:00",  # 11:30:00.123456 UTC
        "customer_id": EDGE_CUSTOMER,
        "items": [
            {"sku": "A123", "qty": 1, "price": 1.005},  # DuckDB 1.0, Spark's round 1.01
            {"sku": "B200", "qty": 3, "price": 0.335},
            {"sku": "H820", "qty": 7, "price": 2.675},
            {"sku": "A123", "qty": 2.0, "price": 49},  # 2.0 is a JSON Schema integer
        ],
        "channel": "store",
        "store_id": "s_paris",
        "city": "Paris",
        "country": "FR",
    }
    late_order = {**edge_order, "order_id": "o_late_1", "ts": "2025-08-16T04:00:00Z"}
    late_order["items"] = [{"sku": "A123", "qty": 1, "price": 19.9}]
    erased_order = {**late_order, "order_id": "o_erased_1", "customer_id": ERASED}
    erased_order["ts"] = "2025-08-16T11:00:00Z"
    batch["orders"] += [
        event("o_edge_1", edge_order),
        event("o_late_1", late_order),
        event("o_erased_1", erased_order),
    ]
    # stock: a newer update of a stored SKU × store, and one tied with the stored latest
    latest: dict[tuple[str, str], dict[str, object]] = {}
    for _, value in first["inventory"]:
        update = json.loads(value)
        key = (update["sku"], update["store_id"])
        if key not in latest or update["ts"] >= latest[key]["ts"]:  # type: ignore[operator]
            latest[key] = update
    (k1, one), (k2, two) = sorted(latest.items())[:2]
    newer = {**one, "ts": "2025-08-16T12:30:00Z", "update_type": "update", "on_hand": 3.0}
    tied = {**two, "update_type": "snapshot" if two["update_type"] != "snapshot" else "update"}
    tied["on_hand"] = 999
    batch["inventory"] += [event("|".join(k1), newer), event("|".join(k2), tied)]
    payment = json.loads(first["transactions"][0][1])
    v2 = {
        **payment,
        "transaction_id": "tx_edge_v2",
        "timestamp": "2025-08-16T09:15:00-03:00",
        "three_ds_status": "Y",
        "lat": 48,
        "lon": -2.355,
        "amount": 1005,
    }
    batch["transactions"].append(event("tx_edge_v2", v2))
    return batch


@pytest.fixture(scope="module")
def raw_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pa.Table]]:
    """A home whose raw tables hold the first micro-batch of every topic; the second batch's
    raw rows, already encrypted, are returned to be appended to each copy."""
    home = tmp_path_factory.mktemp("raw") / "home"
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    first = generated_messages()
    offsets: dict[str, dict[int, int]] = {topic: {} for topic in first}
    for topic, messages in first.items():
        append_raw(settings, topic, raw_batch(settings, topic, messages, offsets[topic]))
    second = {
        topic: raw_batch(settings, topic, messages, offsets[topic])
        for topic, messages in _edge_cases(first).items()
    }
    store = open_key_store(settings)  # erasure: the subject's key destroyed
    try:
        assert store.destroy([key_id("customer_id", ERASED, settings.pii_hash_key)]) == 1
    finally:
        store.close()
    return home, second


COUNTED = (
    "rows_inserted",
    "rows_in_batch",
    "duplicates_skipped",
    "late_events",
    "source_rows_read",
)


def _materialize(engine: str, *, with_gold: bool) -> dict[str, dict[str, object]]:
    """One run of the silver assets of `engine` (+ their checks, + dbt gold); returns each
    silver asset's counts from its materialization metadata."""
    settings = Settings.from_env()
    silver = silver_assets(engine)
    names = {a.key.path[-1] for a in silver}
    checks = [c for c in QUALITY_CHECKS if next(iter(c.check_keys)).asset_key.path[-1] in names]
    resources: dict[str, object] = {"lakehouse": LakehouseResource(), "dbt": dbt_resource()}
    if engine == "spark":
        resources["pyspark"] = pyspark_resource(settings)
    defs = dg.Definitions(
        assets=[*silver, *([gold_dbt] if with_gold else [])],
        asset_checks=checks,
        resources=resources,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]  # type: ignore[union-attr]
    assert result.success, failures
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed = [c.asset_check_key.name for c in evaluations if not c.passed]  # type: ignore[union-attr]
    silver_checks = [c for c in evaluations if c.asset_check_key.asset_key.path[-1] in names]  # type: ignore[union-attr]
    assert len(silver_checks) == len(checks)
    assert not [n for n in failed if n.endswith("_expectations")], failed
    return {
        e.asset_key.path[-1]: {k: e.materialization.metadata[k].value for k in COUNTED}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] in names
    }


@pytest.fixture(scope="module")
def runs(
    raw_home: tuple[Path, dict[str, pa.Table]],
    spark: SparkSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, list[dict[str, dict[str, object]]]]]:
    """engine → (its home, the silver counts of its two runs)."""
    source, second = raw_home
    homes: dict[str, tuple[Path, list[dict[str, dict[str, object]]]]] = {}
    saved = {k: v for k, v in os.environ.items() if k.startswith("LAKEHOUSE_")}
    try:
        for engine in ("duckdb", "spark"):
            home = tmp_path_factory.mktemp(engine) / "home"
            shutil.copytree(source, home)
            for name in saved:
                del os.environ[name]
            os.environ |= {"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_ENGINE": engine}
            counts = [_materialize(engine, with_gold=False)]  # first micro-batch
            settings = Settings.from_env()
            for topic, rows in second.items():
                append_raw(settings, topic, rows)
            counts.append(_materialize(engine, with_gold=True))  # second one, then dbt gold
            homes[engine] = (home, counts)
    finally:
        for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
            del os.environ[name]
        os.environ |= saved
    return homes


@pytest.fixture(scope="module")
def lakes(runs: dict[str, tuple[Path, list[dict[str, dict[str, object]]]]]) -> dict[str, Path]:
    return {engine: home for engine, (home, _) in runs.items()}


def _silver(home: Path, name: str) -> pa.Table:
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    return DeltaTable(silver_uri(settings, name)).to_pyarrow_table()


@pytest.mark.parametrize("name", [*SPECS, "silver_inventory_current"])
def test_every_silver_table_is_identical_on_both_engines(lakes: dict[str, Path], name: str) -> None:
    expected, actual = _silver(lakes["duckdb"], name), _silver(lakes["spark"], name)
    assert expected.num_rows > 0, f"{name} is empty: the comparison would prove nothing"
    assert expected.schema.names == SILVER_TABLES[name][1].names
    assert_same_rows(expected, actual, name)


def test_the_edge_cases_reached_silver(lakes: dict[str, Path]) -> None:
    """What the comparison covered: not vacuous, and right on both engines."""
    key = Settings.from_env({"LAKEHOUSE_HOME": str(lakes["spark"])}).pii_hash_key
    for engine, home in lakes.items():
        orders = _silver(home, "silver_orders")
        edge = sorted(
            (r for r in orders.to_pylist() if r["order_id"] == "o_edge_1"), key=lambda r: r["line"]
        )
        assert [r["line_amount"] for r in edge] == [1.0, 1.01, 18.72, 98.0], engine
        assert [r["qty"] for r in edge] == [1, 3, 7, 2], engine
        assert edge[0]["ts"].isoformat() == "2025-08-16T11:30:00.123456+00:00", engine
        # the pseudonym is the HMAC of the decrypted identifier, not of its raw token
        assert edge[0]["customer_id_hash"] == pseudonym(EDGE_CUSTOMER, key), engine
        ids = set(orders["order_id"].to_pylist())
        assert "o_late_1" in ids and "o_erased_1" not in ids, engine
        current = _silver(home, "silver_inventory_current").to_pylist()
        assert any(r["on_hand"] == 3 for r in current), engine  # the newer update won
        assert not any(r["on_hand"] == 999 for r in current), engine  # the tie kept the stored
        payments = _silver(home, "silver_transactions").to_pylist()
        v2 = next(r for r in payments if r["transaction_id"] == "tx_edge_v2")
        assert (v2["three_ds_status"], v2["lat"], v2["lon"]) == ("Y", 48.0, -2.36), engine
        assert v2["tx_date"].isoformat() == "2025-08-16", engine


def test_late_events_and_duplicates_are_counted_alike(
    runs: dict[str, tuple[Path, list[dict[str, dict[str, object]]]]],
) -> None:
    duck, spark = runs["duckdb"][1], runs["spark"][1]
    assert spark == duck
    second = duck[1]
    # o_late_1 and the re-delivered lines of the first batch (two days old) are late
    assert second["silver_orders"]["late_events"] > 1
    assert second["silver_sessions"]["duplicates_skipped"] == 40  # the re-deliveries
    assert second["silver_sessions"]["rows_inserted"] == 0
    assert second["silver_inventory_current"]["rows_inserted"] == 0


def _gold_tables(home: Path) -> dict[str, pa.Table]:
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(home)})
    with duckdb.connect(str(settings.gold_db_path), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "ORDER BY 1"
            ).fetchall()
        ]
        return {n: con.sql(f'SELECT * FROM "{n}"').to_arrow_table() for n in names}


# Gold models that measure the platform's own runs (CPU seconds, snapshot times, file counts),
# not the data: they differ between any two runs, whatever the engine.
RUN_MEASURES = {
    "finops_usage_daily",
    "platform_table_rows",
    "platform_freshness",
    "platform_kafka_lag",
    "platform_quality_results",
}


def test_dbt_gold_is_identical_on_both_engines(lakes: dict[str, Path]) -> None:
    expected, actual = _gold_tables(lakes["duckdb"]), _gold_tables(lakes["spark"])
    assert sorted(actual) == sorted(expected)
    assert {"daily_sales", "top_sku_7d", "stock_cover_days"} <= set(expected)
    assert expected["daily_sales"].num_rows > 0
    for name in set(expected) - RUN_MEASURES:
        assert_same_rows(expected[name], actual[name], f"gold.{name}")


def test_same_asset_graph_with_the_engine_as_kind() -> None:
    """Same keys, deps and checks on both engines; the engine is the asset's kind (the tag the
    Dagster UI shows); only the Spark assets need dagster-pyspark's resource."""
    by_engine = {engine: silver_assets(engine) for engine in ("duckdb", "spark")}
    specs = {
        engine: {spec.key: spec for a in assets for spec in a.specs}
        for engine, assets in by_engine.items()
    }
    assert specs["duckdb"].keys() == specs["spark"].keys()
    for key, spec in specs["spark"].items():
        twin = specs["duckdb"][key]
        assert [d.asset_key for d in spec.deps] == [d.asset_key for d in twin.deps]
        assert spec.kinds == {"spark", "delta"} and twin.kinds == {"duckdb", "delta"}
    for engine, assets in by_engine.items():
        for a in assets:
            assert ("pyspark" in a.required_resource_keys) == (engine == "spark")
    resource = pyspark_resource(
        Settings.from_env({"LAKEHOUSE_SPARK_MASTER": "spark://master:7077"})
    )
    assert resource.spark_config["spark.master"] == "spark://master:7077"
    assert resource.spark_config["spark.sql.session.timeZone"] == "UTC"
