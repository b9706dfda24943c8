"""Delta maintenance on a lake of many small micro-batches: compaction, checkpoints and VACUUM
shrink the file count, while ingestion and silver keep running; the exactly-once offsets,
every row and an older reader's snapshot survive."""

from __future__ import annotations

import threading

import pytest
from deltalake import DeltaTable
from testkit import order_message

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.raw import ingest_batch, lake_offsets
from lake.maintenance import file_stats, lake_tables, maintain_lake
from lake.silver import build_silver
from lake.tables import raw_uri, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

BATCHES, PER_BATCH = 12, 40


def _batch(settings: Settings, bootstrap: str, start: int) -> None:
    messages = [order_message(i) for i in range(start, start + PER_BATCH)]
    kafka_client.produce(bootstrap, "orders", messages)
    ingest_batch(settings, "orders", bootstrap)
    build_silver(settings, "silver_orders")


def test_maintenance_while_ingesting(settings: Settings, broker: EmbeddedBroker) -> None:
    for b in range(BATCHES):
        _batch(settings, broker.bootstrap, b * PER_BATCH)
    raw = DeltaTable(raw_uri(settings, "orders"))
    old_version, old_rows = raw.version(), raw.to_pyarrow_table().num_rows
    files_before = file_stats(raw)[0]
    assert files_before >= BATCHES
    offsets_before = lake_offsets(settings, "orders", range(3)).next_offsets

    # ingestion + silver keep going in another thread while the lake is maintained
    errors: list[BaseException] = []

    def keep_ingesting() -> None:
        try:
            for b in range(BATCHES, BATCHES + 4):
                _batch(settings, broker.bootstrap, b * PER_BATCH)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=keep_ingesting)
    writer.start()
    lines: list[str] = []
    report = maintain_lake(settings, progress=lines.append)
    writer.join(120)
    assert errors == []
    assert {"raw/orders", "silver/orders"} <= set(lake_tables(settings))
    by_table = {t.table: t for t in report.tables}
    assert all(t.error is None for t in report.tables), lines
    assert by_table["raw/orders"].files_before >= BATCHES
    assert by_table["raw/orders"].files_compacted >= BATCHES
    assert by_table["silver/orders"].z_order == ("sku", "city")
    assert any(line.startswith("raw/orders: ") and " -> " in line for line in lines)

    # catch up whatever the concurrent batches left, then check every row exactly once
    ingest_batch(settings, "orders", broker.bootstrap)
    build_silver(settings, "silver_orders")
    total = (BATCHES + 4) * PER_BATCH
    raw = DeltaTable(raw_uri(settings, "orders"))
    rows = raw.to_pyarrow_table()
    assert rows.num_rows == total
    coords = zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(), strict=True)
    assert len(set(coords)) == total
    offsets = lake_offsets(settings, "orders", range(3)).next_offsets
    assert sum(offsets.values()) == total
    assert all(offsets[p] >= offsets_before[p] for p in offsets_before)
    silver = DeltaTable(silver_uri(settings, "silver_orders")).to_pyarrow_table()
    assert len(set(silver["order_id"].to_pylist())) == total
    assert file_stats(raw)[0] < files_before + 4
    # a reader still on the version before maintenance reads all its rows (retention)
    assert (
        DeltaTable(raw_uri(settings, "orders"), version=old_version).to_pyarrow_table().num_rows
        == old_rows
    )


def test_cli_and_dagster_job_maintain_the_lake(settings: Settings, broker: EmbeddedBroker) -> None:
    from typer.testing import CliRunner

    from dagster_project.definitions import defs
    from lakehouse.cli import app

    for b in range(3):
        _batch(settings, broker.bootstrap, b * PER_BATCH)
    out = CliRunner().invoke(app, ["lake", "maintain", "--table", "raw/orders"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("raw/orders: 3 files")
    assert "maintenance done: 1 tables: 3 files" in out.output
    assert file_stats(DeltaTable(raw_uri(settings, "orders")))[0] == 1

    result = defs.resolve_job_def("lake_maintenance").execute_in_process()
    assert result.success
    (observation,) = [
        e.event_specific_data.asset_observation  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.metadata["files_after"].value <= observation.metadata["files_before"].value
    assert observation.metadata["tables"].value >= 2


def test_every_asset_and_ingest_job_carries_owner_tags() -> None:
    import dagster as dg

    from dagster_project.definitions import defs
    from lakehouse.ownership import owner_of

    graph = defs.resolve_asset_graph()
    keys = list(graph.get_all_asset_keys())
    assert len(keys) > 40
    for key in keys:
        tags = graph.get(key).tags
        name = key.path[-1]
        assert {k: tags.get(k) for k in ("domain", "team", "cost_center")} == owner_of(
            name
        ).tags(), name
    assert graph.get(dg.AssetKey("fraud_decisions")).tags["cost_center"] == "CC-2100-RISK"
    assert defs.resolve_job_def("lake_maintenance").tags["domain"] == "platform"
    ingest = [j for j in defs.jobs if getattr(j, "name", "").startswith("ingest_")]
    assert ingest and all(
        j.tags["domain"] == owner_of(j.tags["lakehouse/topic"]).domain for j in ingest
    )  # type: ignore[union-attr]
