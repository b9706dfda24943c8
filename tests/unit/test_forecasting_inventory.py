"""Safety stock / ROP formulas (seed §3 worked example), proposals, stock-out dates, simulation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from forecasting.inventory import (
    order_up_to_quantity,
    reorder_point,
    stockout_day,
    z_from_service_level,
)
from forecasting.simulate import naive_matching_service, simulate
from lakehouse.errors import ConfigError


def test_seed_worked_example() -> None:
    r = reorder_point(100, 20, 5, 1, 1.65)
    assert float(r.mu) == 500
    assert float(r.sigma) == pytest.approx(math.sqrt(12000)) and round(float(r.sigma), 2) == 109.54
    assert float(r.safety_stock_exact) == pytest.approx(180.75, abs=0.01)
    assert int(r.safety_stock) == 181
    assert int(r.rop) == 681


def test_rop_command_prints_the_worked_example() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse",
            "rop",
            "--mu-d",
            "100",
            "--sigma-d",
            "20",
            "--mu-l",
            "5",
            "--sigma-l",
            "1",
            "--z",
            "1.65",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "μ = μ_d · μ_L = 500" in out
    assert "109.54" in out and "180.75 → 181" in out and "= 681 units" in out


def test_zero_lead_time_spread_is_the_classic_formula() -> None:
    # σ_L = 0: σ = σ_d·sqrt(μ_L) = 10·2 = 20; SS = 2·20 = 40; ROP = 12·4 + 40 = 88
    r = reorder_point(12, 10, 4, 0, 2.0)
    assert float(r.sigma) == pytest.approx(20.0)
    assert int(r.safety_stock) == 40 and int(r.rop) == 88


def test_intermittent_demand_rounds_up_to_whole_units() -> None:
    # μ_d = 0.2/day, σ_d = 0.6, μ_L = 6, σ_L = 2: μ = 1.2, σ = sqrt(6·0.36 + 0.04·4) = sqrt(2.32)
    r = reorder_point(0.2, 0.6, 6, 2, 1.65)
    assert float(r.mu) == pytest.approx(1.2)
    assert float(r.sigma) == pytest.approx(math.sqrt(2.32))
    assert int(r.safety_stock) == math.ceil(1.65 * math.sqrt(2.32))  # 2.513 → 3
    assert int(r.rop) == 2 + 3  # ⌈1.2⌉ + 3


def test_vectorised_and_zero_demand() -> None:
    r = reorder_point(np.array([0.0, 100.0]), np.array([0.0, 20.0]), 5, np.array([0.0, 1.0]), 1.65)
    assert r.rop.tolist() == [0, 681]
    assert np.all(r.rop >= r.mu)


def test_service_level_to_z_and_bad_inputs() -> None:
    assert z_from_service_level(0.95) == pytest.approx(1.6449, abs=1e-4)
    with pytest.raises(ConfigError):
        z_from_service_level(1.0)
    with pytest.raises(ConfigError):
        reorder_point(-1, 1, 1, 1, 1.65)


def test_order_up_to_proposals() -> None:
    # position 50 ≤ ROP 681 → S = 681 + 100·7 = 1381 → order 1331; position 700 > ROP → 0
    qty = order_up_to_quantity([40, 700], [10, 0], [681, 681], [100, 100], review_days=7)
    assert qty.tolist() == [1331, 0]
    # pack size rounds up
    assert order_up_to_quantity([0], [0], [5], [1], 2, pack_size=6).tolist() == [12]


def test_stockout_day() -> None:
    fc = np.array([[3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert stockout_day([7, 10, 0], fc).tolist() == [3, -1, -1]


def test_simulation_small_case_with_known_answer() -> None:
    # one series, lead 1 day, ROP 0, order up to 10, 10 units on hand
    res = simulate(
        np.array([[5], [5], [8], [5]]),
        np.array([0]),
        np.array([10]),
        np.array([1]),
        np.array([2.0]),
        np.array([10]),
        "t",
    )
    # day0 sell 5 (5 left); day1 sell 5 (0) → order 10; day2 +10, sell 8 (2); day3 sell 2 of 5
    assert res.stockout_rate == pytest.approx(1 / 4)
    assert res.fill_rate == pytest.approx(20 / 23)
    assert res.mean_stock_units == pytest.approx((5 + 0 + 2 + 0) / 4)
    assert res.mean_stock_value == pytest.approx(3.5)
    # order on day1 (position 0) and day3 (position 0)
    assert res.orders_placed == 2


def test_naive_policy_tuned_to_equal_service_uses_the_smallest_buffer() -> None:
    rng = np.random.default_rng(4)
    demand = rng.poisson(10, (84, 30)).astype(float)
    lead, cost = np.full(30, 3), np.full(30, 2.0)
    trailing = np.full(30, 10.0)
    start = np.full(30, 60)
    untuned, _, _ = naive_matching_service(demand, lead, cost, start, trailing, 1.0)
    target = 0.01
    assert untuned.stockout_rate > target  # no buffer: ROP = lead-time mean, frequent misses
    tuned, buffer, matched = naive_matching_service(demand, lead, cost, start, trailing, target)
    assert matched and 0 < buffer < 8
    assert tuned.stockout_rate <= target
    # the bisection's answer is (nearly) the smallest buffer that reaches the target
    below, _, _ = naive_matching_service(
        demand, lead, cost, start, trailing, target, max_buffer=buffer * 0.9
    )
    assert below.stockout_rate > target
    assert tuned.working_capital > untuned.working_capital  # service costs stock


def test_proposals_on_a_lake_without_purchase_orders_use_nominal_lead_times(settings) -> None:  # type: ignore[no-untyped-def]
    """A lake with demand but no purchase order yet: nominal lead times, no supplier, and
    the safety stock → ROP → proposals steps still run (they failed on the missing column)."""
    from datetime import date, timedelta

    import polars as pl

    from forecasting.pipeline import (
        ForecastOptions,
        lead_time_stats,
        run_reorder_point,
        run_reorder_proposals,
        run_safety_stock,
        write_gold,
    )
    from ingestion.generators.catalog import SKUS

    lead = lead_time_stats(settings)
    assert lead["supplier_id"].null_count() == lead.height == len(SKUS)
    sku = SKUS[0]
    uid = f"{sku.sku}|s_paris"
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(28)]
    write_gold(
        settings,
        "demand_forecast",
        pl.DataFrame(
            {"unique_id": uid, "sku": sku.sku, "store_id": "s_paris", "ds": days, "yhat": 4.0}
        ),
    )
    write_gold(
        settings,
        "forecast_champions",
        pl.DataFrame({"unique_id": [uid], "sigma_d": [2.0], "champion": ["TSB"]}),
    )
    options = ForecastOptions()
    run_safety_stock(settings, options)
    rop = run_reorder_point(settings)
    proposals = run_reorder_proposals(settings, options)
    assert rop["mu_l"].to_list() == [float(sku.lead_time_days)]
    row = proposals.row(0, named=True)
    assert row["supplier_id"] is None
    assert row["reorder_now"] is True  # nothing on hand, nothing on order
    assert row["proposed_qty"] >= row["rop"]
    assert row["predicted_stockout_date"] == days[0]
