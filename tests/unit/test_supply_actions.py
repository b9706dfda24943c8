"""Supply actions: store-to-store transfers, causal shipment readings, cold-chain excursions,
ETA risk with re-routing, and store alerts on a real webhook with the `alerts` table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sentiment_kit import Receiver

from forecasting.actions import (
    EtaRiskInputs,
    cold_chain_excursions,
    eta_risk,
    store_distances_km,
    transfer_proposals,
)
from forecasting.eta import eta_features, eta_predictions, shipment_table, train_eta
from forecasting.store_alerts import raise_store_alerts
from ingestion.generators.catalog import SKUS
from ingestion.generators.supply import CITY_LATLON, SUPPLIERS, generate_supply_history
from lakehouse.config import Settings
from sentiment.alerts import stored_alerts

DAY = date(2026, 11, 2)


def _proposal(store: str, on_hand: int, on_order: int, stockout: date | None) -> dict:
    return {
        "sku": "A123",
        "store_id": store,
        "on_hand": on_hand,
        "on_order": on_order,
        "mu_l": 3.0,
        "safety_stock": 5,
        "rop": 8,
        "reorder_now": on_order == 0 and on_hand < 20,
        "predicted_stockout_date": stockout,
    }


def _forecast(per_day: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"unique_id": f"A123|{s}", "ds": DAY + timedelta(days=d), "yhat": v}
            for s, v in per_day.items()
            for d in range(28)
        ]
    )


def test_transfer_from_a_nearby_store_with_spare_cover() -> None:
    """Paris runs out tomorrow, its order lands in 3 days: Lille (204 km) holds 100 units for a
    need of 3 + 5; Bordeaux (500 km, beyond 450) and Lyon (no spare) give nothing."""
    props = pl.DataFrame(
        [
            _proposal("s_paris", 4, 30, DAY + timedelta(days=1)),
            _proposal("s_lille", 100, 0, None),
            _proposal("s_bordeaux", 200, 0, None),
            _proposal("s_lyon", 9, 0, None),
        ]
    )
    fc = _forecast({"s_paris": 5.0, "s_lille": 1.0, "s_bordeaux": 1.0, "s_lyon": 3.0})
    [t] = transfer_proposals(props, fc, max_km=450.0).to_dicts()
    # Paris needs 15 units over the 3 days to its receipt, holds 4: shortfall 11
    assert (t["from_store"], t["to_store"], t["qty"]) == ("s_lille", "s_paris", 11)
    assert t["distance_km"] == pytest.approx(204, abs=3) and t["stockout_in_days"] == 2
    price = next(s.base_price for s in SKUS if s.sku == "A123")
    assert t["stockout_cost_avoided_eur"] == pytest.approx(11 * price * 0.55, abs=0.01)
    assert t["transfer_cost_eur"] == pytest.approx(25 + 0.4 * 11)
    # no store within reach: nothing proposed
    assert transfer_proposals(props, fc, max_km=100.0).height == 0
    # Paris' open order is on a truck predicted to arrive tomorrow (eta_risk): its stock-out
    # (day 2) no longer comes before its receipt, nothing is moved
    soon = props.with_columns(
        pl.when(pl.col("store_id") == "s_paris").then(1).alias("next_receipt_in_days")
    )
    assert transfer_proposals(soon, fc, max_km=450.0).height == 0
    # ... while a truck predicted in 5 days makes Paris short of 5 × 5 − 4 = 21 units
    late = props.with_columns(
        pl.when(pl.col("store_id") == "s_paris").then(5).alias("next_receipt_in_days")
    )
    [t_late] = transfer_proposals(late, fc, max_km=450.0).to_dicts()
    assert (t_late["from_store"], t_late["qty"]) == ("s_lille", 21)
    km = store_distances_km()
    assert km.filter(pl.col("from_store") == "s_paris")["km"].min() == pytest.approx(204, abs=3)


@pytest.fixture(scope="module")
def history():  # type: ignore[no-untyped-def]
    return generate_supply_history(
        date(2026, 7, 1), date(2026, 11, 1), seed=3, scale=0.02, readings_days=60
    )


def test_readings_are_causal_and_some_loads_warm_up(history) -> None:  # type: ignore[no-untyped-def]
    ships = shipment_table(history.table("shipments")).join(
        history.table("purchase_orders").select("po_id", "sku"), on="po_id"
    )
    reads = history.table("shipment_readings").join(ships, on="shipment_id")
    late = reads.filter(pl.col("arrived_at") > pl.col("promised_at"))
    assert late.height > 100
    # progress along the lane (by latitude, lanes spanning ≥ 1°): a late truck's early
    # readings move at the planned pace, whatever its arrival (no leak of the delay)
    sup_lat = {s.supplier_id: s.lat for s in SUPPLIERS.values()}
    store_lat = {f"s_{c.lower()}": v[0] for c, v in CITY_LATLON.items()}
    early = late.with_columns(
        pl.col("supplier_id").replace_strict(sup_lat).alias("a"),
        pl.col("destination").replace_strict(store_lat).alias("b"),
        ((pl.col("ts") - pl.col("departed_at")).dt.total_seconds()).alias("dt"),
        ((pl.col("promised_at") - pl.col("departed_at")).dt.total_seconds()).alias("plan"),
    ).filter(((pl.col("b") - pl.col("a")).abs() >= 1) & (pl.col("dt") < 0.15 * pl.col("plan")))
    progress = (early["lat"] - early["a"]) / (early["b"] - early["a"])
    planned = early["dt"] / early["plan"]
    assert early.height > 20 and np.allclose(progress, planned, atol=2e-3)
    # refrigeration failures: a few loads leave the beauty range; cold-chain scan finds them
    found = cold_chain_excursions(history.table("shipment_readings"), ships)
    assert found.height >= 1
    assert set(found["sku"]) <= {s.sku for s in SKUS if s.category == "beauty"}
    assert (found["max_c"] > 15.0).all()


def test_eta_risk_alerts_the_store_once_through_the_webhook(
    history, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ships = shipment_table(history.table("shipments")).join(
        history.table("purchase_orders").select("po_id", "sku"), on="po_id"
    )
    weather = history.table("weather").with_columns(pl.col("ts").dt.date().alias("weather_date"))
    feats = eta_features(ships, weather)
    models = train_eta(feats.filter(pl.col("arrived_at").is_not_null()), rounds=60)
    open_rows = feats.filter(pl.col("arrived_at").is_null())
    assert open_rows.height >= 3
    soon = date(2026, 10, 1)  # before any open shipment departed
    props = open_rows.select(
        "sku",
        pl.col("destination").alias("store_id"),
        pl.lit(soon).alias("predicted_stockout_date"),
    ).unique(["sku", "store_id"])
    excursions = cold_chain_excursions(history.table("shipment_readings"), ships)
    inputs = EtaRiskInputs(open_rows, eta_predictions(models, feats), props, excursions)
    risk = eta_risk(models, inputs, p_late_threshold=0.3)
    assert set(risk["shipment_id"]) == set(open_rows["shipment_id"])
    assert risk["lands_after_stockout"].all()  # every stock-out predicted before today
    expected = (risk["p_late"] >= 0.3) | risk["cold_chain_breach"]
    assert (risk["alert"] == expected).all()
    # re-routing: a suggested carrier is another one, predicted faster on the same lane
    rerouted = risk.filter(pl.col("reroute_carrier").is_not_null())
    assert (rerouted["reroute_carrier"] != rerouted["carrier"]).all()
    assert (rerouted["reroute_saves_h"] > 0.5).all()
    # force one alert at least, then deliver: webhook (Slack + PagerDuty) + alerts table
    risk = risk.with_columns(pl.col("alert") | (pl.col("shipment_id") == risk["shipment_id"][0]))
    run_at = datetime(2026, 11, 1, 23, tzinfo=UTC)
    with Receiver() as hook:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", hook.url)
        live = Settings.from_env()
        first = raise_store_alerts(live, risk, run_at, 0.3)
        again = raise_store_alerts(live, risk, run_at + timedelta(hours=6), 0.3)
    n = int(risk["alert"].sum())
    assert len(first) == n and all(r["delivered"] for r in first)
    assert again == []  # the same shipments within the 24 h cooldown
    assert len(hook.bodies) == 2 * n and hook.bodies[1]["payload"]["severity"] == "critical"
    stored = pl.from_arrow(stored_alerts(live))
    assert isinstance(stored, pl.DataFrame)
    assert stored.height == n and set(stored["kind"]) <= {"eta_risk", "cold_chain"}
    assert set(stored["brand"]) <= set(risk["destination"])
    assert "predicted stock-out" in first[0]["summary"] or first[0]["kind"] == "cold_chain"


def _replay_inputs(days: int = 14):  # type: ignore[no-untyped-def]
    """Two stores of one SKU 204 km apart: Paris sells 6 a day, Lille 1 a day; the forecast
    is right; lead time 3 days."""
    from forecasting.replay import ReplayInputs

    demand = np.tile(np.array([6.0, 1.0]), (days, 1))
    weeks = days // 7
    return ReplayInputs(
        series=["A123|s_paris", "A123|s_lille"],
        first_day=DAY,
        as_of=DAY + timedelta(days=days - 1),
        demand=demand,
        mu_d=demand.copy(),
        sigma_d=np.full_like(demand, 1.0),
        lead_days=np.array([3.0, 3.0]),
        sigma_l=np.zeros(2),
        unit_cost=np.array([10.0, 10.0]),
        trailing_mean=np.array([6.0, 1.0]),
        champions={},
        holdout_mase=float("nan"),
        forecasts=np.tile(np.array([6.0, 1.0])[:, None], (weeks, 1, 28)),
        skus=["A123", "A123"],
        stores=["s_paris", "s_lille"],
    )


def test_replayed_actions_transfers_cover_a_late_order_and_rerouting_restores_otif() -> None:
    """Same demand, stock and carrier delays for every scenario: every order from the booked
    carrier lands 4 days late, on the fastest carrier on time. Transfers from Lille's spare
    stock cut Paris' stock-outs; re-routing the alerted orders makes them all on time."""
    from forecasting.inventory import reorder_point
    from forecasting.replay_actions import transfer_rule
    from forecasting.simulate import Shipping, simulate_actions

    inputs = _replay_inputs()
    shape = inputs.demand.shape
    shipping = Shipping(
        late_days=np.full(shape, 4),
        late=np.ones(shape, dtype=bool),
        late_days_rerouted=np.zeros(shape, dtype=np.int64),
        late_rerouted=np.zeros(shape, dtype=bool),
        flagged=np.ones(shape, dtype=bool),
    )
    rp = reorder_point(inputs.mu_d, inputs.sigma_d, 3.0, 0.0, 1.65)
    rule = transfer_rule(inputs, rp.safety_stock, rp.rop, np.array([3, 3]), 450.0)
    common = {
        "demand": inputs.demand,
        "rop": rp.rop,
        "order_up_to": rp.rop + inputs.mu_d * 7,
        "lead_days": np.array([3, 3]),
        "unit_cost": inputs.unit_cost,
        "initial_on_hand": np.array([20, 45]),  # Lille: more than it needs for 28 days
        "shipping": shipping,
    }
    nothing = simulate_actions("no action", reorder=False, **common)
    reorder = simulate_actions("reorder only", **common)
    transfers = simulate_actions("reorder + transfers", transfers=rule, **common)
    eta = simulate_actions("+ ETA alerts", transfers=rule, reroute=True, **common)
    # no action: 20 + 14 units sold of 14 days of 6 and 1: Paris runs out on day 4
    assert nothing.orders_placed == 0 and np.isnan(nothing.otif)
    assert nothing.fill_rate == pytest.approx((20 + 14) / (14 * 7))
    # every booked order is late: OTIF 0, and Paris waits 7 days for its first receipt
    assert reorder.orders_placed > 0 and reorder.otif == 0.0 and reorder.rerouted == 0
    assert reorder.stockout_rate > 0
    # Lille's spare covers part of Paris' wait; units leave Lille, the cost is counted
    assert transfers.transfers > 0 and transfers.transfer_units > 0
    assert transfers.transfer_cost_eur == pytest.approx(
        25.0 * transfers.transfers + 0.4 * transfers.transfer_units
    )
    assert transfers.stockout_rate < reorder.stockout_rate
    assert transfers.fill_rate > reorder.fill_rate
    lost_units = (1 - transfers.fill_rate) * inputs.demand.sum()
    assert transfers.lost_sales_value == pytest.approx(10.0 * lost_units)  # at 10 € cost
    assert transfers.lost_sales_value < reorder.lost_sales_value
    # re-routed orders land on their promised day: all on time, fewer stock-outs again
    assert eta.rerouted == eta.orders_placed and eta.otif == 1.0
    assert eta.stockout_rate < transfers.stockout_rate
    # the same inputs give the same figures
    assert simulate_actions("reorder + transfers", transfers=rule, **common) == transfers
