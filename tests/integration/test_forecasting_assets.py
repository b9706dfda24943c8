"""The supply-chain assets materialize on small generated data: broker → raw → silver →
backtest → forecast → safety stock → ROP → proposals → ETA → KPIs, with their checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml
from openlineage_schema import validate_event

from dagster_project.assets.gold import dbt_resource, gold_dbt
from dagster_project.assets.raw import RAW_ASSETS
from dagster_project.assets.silver import SILVER_ASSETS
from dagster_project.forecasting import SUPPLY_ASSETS, forecast_sane, rop_covers_mean
from dagster_project.resources import LakehouseResource
from forecasting.pipeline import read_gold, read_silver
from ingestion.broker import EmbeddedBroker
from lake import gold
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.generate import backfill_supply

pytestmark = pytest.mark.integration
END = datetime(2026, 11, 2, tzinfo=UTC)


def test_supply_chain_assets_materialize(settings: Settings, broker: EmbeddedBroker) -> None:
    sent = backfill_supply(settings.bootstrap, 130, seed=5, scale=0.01, end=END)
    assert sent["orders"] == 130 * 5 and sent["shipments"] > 0
    config = {"max_series": 6}
    ops = {
        name: {"config": config}
        for name in ("forecast_backtest", "demand_forecast", "safety_stock", "reorder_proposals")
    }
    result = dg.materialize(
        [*RAW_ASSETS, *SILVER_ASSETS, *SUPPLY_ASSETS, gold_dbt, forecast_sane, rop_covers_mean],
        resources={"lakehouse": LakehouseResource(), "dbt": dbt_resource()},
        run_config={"ops": ops},
        # the supply-chain dbt models (group supply_chain) run after the assets they read
        selection=dg.AssetSelection.all()
        - dg.AssetSelection.assets(
            "raw_sessions", "raw_social_raw", "raw_transactions", "silver_sessions"
        )
        - dg.AssetSelection.groups("gold", "gold_staging", "reference"),
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    # every forecasting asset is an OpenLineage job: silver / upstream gold in, its gold out
    events = [json.loads(x) for x in settings.lineage_file.read_text().splitlines()]
    done = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    for asset in ("forecast_backtest", "demand_forecast", "reorder_proposals", "eta_predictions"):
        assert asset in done, sorted(done)
    names = lambda ds: {i["name"] for d in ds for i in d["facets"]["symlinks"]["identifiers"]}  # noqa: E731
    assert names(done["forecast_backtest"]["inputs"]) == {"silver_orders", "silver_weather"}
    assert names(done["forecast_backtest"]["outputs"]) >= {
        "forecast_backtest",
        "forecast_champions",
    }
    assert "demand_forecast" in names(done["safety_stock"]["inputs"])
    # schema facets: the silver contract in, the gold table written earlier in the run
    (forecast_in,) = [
        d for d in done["safety_stock"]["inputs"] if d["name"].endswith("/gold/demand_forecast")
    ]
    assert "yhat" in {f["name"] for f in forecast_in["facets"]["schema"]["fields"]}
    assert all("schema" in d["facets"] for d in done["forecast_backtest"]["inputs"])
    (forecast_out, _) = done["demand_forecast"]["outputs"]
    assert forecast_out["outputFacets"]["outputStatistics"]["rowCount"] == 6 * 28
    for event in events:
        validate_event(event)
    fc = read_gold(settings, "demand_forecast")
    assert fc["unique_id"].n_unique() == 6 and fc.height == 6 * 28
    assert fc["yhat"].min() >= 0
    props = read_gold(settings, "reorder_proposals")
    assert props.height == 6
    assert (props["rop"] >= props["safety_stock"]).all()
    due = props.filter(pl.col("reorder_now"))
    assert (due["proposed_qty"] > 0).all()
    assert (props.filter(~pl.col("reorder_now"))["proposed_qty"] == 0).all()
    kpis = dict(read_gold(settings, "supply_chain_kpis").iter_rows())
    assert {
        "forecast_mape_pct",
        "stockout_rate",
        "inventory_turns",
        "working_capital_eur",
        "otif_rate",
    } <= set(kpis)
    assert 0 <= kpis["otif_rate"] <= 1
    meta = result.asset_materializations_for_node("forecast_backtest")[0].metadata
    assert "champion_counts" in meta and meta["series"].value == 6
    # first night on a fresh registry: both models registered and promoted
    assert meta["registered_model"].value == "supply_demand_lightgbm_global v1"
    eta_meta = result.asset_materializations_for_node("eta_predictions")[0].metadata
    assert eta_meta["registered_model"].value == "supply_eta_transit_median v1"
    assert meta["promoted_to_champion"].value and eta_meta["promoted_to_champion"].value
    # one prediction per shipment still in transit at the end of the generated history
    events = read_silver(settings, "silver_shipments")
    assert events is not None
    in_transit = set(events.filter(pl.col("status") == "departed")["shipment_id"]) - set(
        events.filter(pl.col("status") == "arrived")["shipment_id"]
    )
    eta = read_gold(settings, "eta_predictions")
    assert in_transit and set(eta["shipment_id"]) == in_transit
    assert (eta["eta"] > eta["departed_at"]).all() and eta["p_late"].is_between(0, 1).all()

    # supply actions: transfers (gold + dbt) and the ETA risk of every open shipment
    transfers = read_gold(settings, "transfer_proposals")
    assert set(transfers.columns) >= {"from_store", "to_store", "qty", "transfer_cost_eur"}
    assert (transfers["qty"] >= 1).all() and (
        transfers["from_store"] != transfers["to_store"]
    ).all()
    assert (transfers["stockout_cost_avoided_eur"] > transfers["transfer_cost_eur"]).all()
    risk = read_gold(settings, "eta_risk")
    assert set(risk["shipment_id"]) == in_transit
    risk_meta = result.asset_materializations_for_node("eta_risk")[0].metadata
    assert risk_meta["at_risk"].value == int(risk["alert"].sum())
    assert risk_meta["alerts_raised"].value == int(risk["alert"].sum())  # fresh alerts table
    assert gold.read_gold(
        settings, "select count(*) as n from sc_transfer_proposals"
    ).to_pylist() == [{"n": transfers.height}]

    # dbt published the forecasting Delta tables into the gold DuckDB file, with the column
    # types the delta plugin uses for an empty table before the first nightly run
    assert gold.read_gold(
        settings, "select count(*) as n from sc_reorder_proposals"
    ).to_pylist() == [{"n": 6}]
    assert gold.read_gold(settings, "select count(*) as n from sc_otif_daily")["n"][0].as_py() > 0
    kpi_rows = gold.read_gold(settings, "select kpi, value from sc_supply_chain_kpis").to_pylist()
    assert {r["kpi"]: r["value"] for r in kpi_rows} == pytest.approx(kpis)
    declared = yaml.safe_load(
        (gold.DBT_PROJECT_DIR / "models/gold/supply_chain/_supply_chain.yml").read_text()
    )
    models = {m["name"] for m in declared["models"]}
    for source in declared["sources"][0]["tables"]:
        expected = source["config"]["meta"]["empty_schema"]
        if f"sc_{source['name']}" in models:  # published as is
            types = gold.read_gold(
                settings,
                "select column_name, data_type from information_schema.columns "
                f"where table_name = 'sc_{source['name']}' order by ordinal_position",
            ).to_pylist()
            found = {r["column_name"]: r["data_type"].lower() for r in types}
        else:  # read by other models, which need the declared columns of the Delta table
            delta = read_gold(settings, source["name"]).to_arrow()  # noqa: F841 (DuckDB scan)
            described = duckdb.sql("DESCRIBE SELECT * FROM delta").fetchall()
            types = {name: kind.lower() for name, kind, *_ in described}
            found = {name: types.get(name) for name in expected}
        assert found == expected, source["name"]

    # the replay reads the lake's demand, drives the nightly code path as of a day, and is
    # reproducible: the same command twice gives the same numbers
    from forecasting.pipeline import ForecastOptions
    from forecasting.replay import lake_last_day, replay, replay_report

    options = ForecastOptions(max_series=6)
    last = lake_last_day(settings)
    inputs, first = replay(settings, weeks=2, options=options)
    assert inputs.as_of == last and inputs.first_day == last - timedelta(days=13)
    assert inputs.demand.shape == inputs.mu_d.shape == (14, 6)
    assert inputs.demand.sum() > 0 and (inputs.mu_d > 0).any()
    _, again = replay(settings, weeks=2, options=options)
    assert again == first
    assert 0 <= first.forecast.stockout_rate <= 1 and first.forecast.orders_placed > 0
    earlier = last - timedelta(days=1)
    text = replay_report(settings, weeks=2, as_of=earlier, options=options)
    assert f"replay {earlier - timedelta(days=13)} .. {earlier} (2 weeks), 6 series" in text
    with pytest.raises(LakehouseError, match="after the lake's last day"):
        replay(settings, weeks=2, as_of=last + timedelta(days=1), options=options)
