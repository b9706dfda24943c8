"""Backtest windows never see the future, metrics, champions, intervals, reconciliation, and
the supply generator's contracts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting import backtest as bt
from forecasting.demand import calendar_features, daily_demand, future_frame
from forecasting.models import statsforecast_models
from ingestion.contracts import CONTRACTS
from ingestion.generators.supply import HISTORY_TOPICS, generate_supply_history
from ingestion.validation import validate

START = date(2025, 1, 6)


def _frame(n_days: int = 120, values: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    days = [START + timedelta(days=i) for i in range(n_days)]
    rng = np.random.default_rng(0)
    values = values or {
        "A|s_paris": rng.poisson(5, n_days).astype(float),
        "B|s_lyon": (rng.random(n_days) < 0.2).astype(float) * 3,  # intermittent
    }
    rows = []
    for uid, y in values.items():
        sku, store = uid.split("|")
        rows.append(
            pl.DataFrame(
                {
                    "unique_id": uid,
                    "sku": sku,
                    "store_id": store,
                    "city": "Paris" if store == "s_paris" else "Lyon",
                    "ds": days,
                    "y": y,
                    "price": 10.0,
                }
            )
        )
    return pl.concat(rows)


def test_backtest_windows_never_see_the_future() -> None:
    frame = _frame()
    seen: list[tuple[date, date, bool]] = []

    def spy(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        seen.append((train["ds"].max(), future["ds"].min(), "y" in future.columns))
        return future.select("unique_id", "ds").with_columns(pl.lit(1.0).alias("Spy"))

    preds = bt.backtest(frame, [spy], n_windows=3, horizon=14)
    assert len(seen) == 3
    for train_max, future_min, has_y in seen:
        assert train_max < future_min and not has_y
    cuts = sorted(preds["cutoff"].unique().to_list())
    assert cuts == bt.cutoffs(frame["ds"].max(), 3, 14)
    # every predicted day lies after its own cutoff, within the window
    assert (
        preds.filter(
            (pl.col("ds") <= pl.col("cutoff"))
            | (pl.col("ds") > pl.col("cutoff") + timedelta(days=14))
        ).height
        == 0
    )
    assert preds.height == 2 * 3 * 14


def test_poisoned_future_does_not_change_backtest() -> None:
    frame = _frame()
    cutoff = bt.cutoffs(frame["ds"].max(), 1, 14)[0]
    poisoned = frame.with_columns(
        pl.when(pl.col("ds") > cutoff).then(1e6).otherwise(pl.col("y")).alias("y")
    )
    model = statsforecast_models(("SeasonalNaive", "CrostonOptimized"))
    a = bt.backtest(frame, [model], n_windows=1, horizon=14).drop("y")
    b = bt.backtest(poisoned, [model], n_windows=1, horizon=14).drop("y")
    assert a.sort("unique_id", "ds").equals(b.sort("unique_id", "ds"))


def test_metrics_hand_computed() -> None:
    preds = pl.DataFrame(
        {
            "unique_id": ["a"] * 4,
            "ds": [START + timedelta(days=i) for i in range(10, 14)],
            "cutoff": [START + timedelta(days=9)] * 4,
            "y": [2.0, 0.0, 4.0, 2.0],
            "M": [1.0, 1.0, 4.0, 3.0],
        }
    )
    history = pl.DataFrame(
        {
            "unique_id": ["a"] * 9,
            "ds": [START + timedelta(days=i) for i in range(9)],
            "y": [1.0, 1, 1, 1, 1, 1, 1, 3, 3],
        }
    )
    m = bt.metrics(preds, history).row(0, named=True)
    assert m["mape"] == pytest.approx(100 * (0.5 + 0 + 0.5) / 3)
    assert m["smape"] == pytest.approx(100 * (2 / 3 + 2 + 0 + 0.4) / 4)
    assert m["mae"] == pytest.approx(0.75)
    assert m["mase"] == pytest.approx(0.75 / 2.0)  # naive scale: |3-1| on days 7, 8
    assert m["bias"] == pytest.approx((9 - 8) / 8)


def test_champions_intervals_and_reconciliation() -> None:
    frame = _frame()
    fut = frame.group_by("unique_id", "sku", "store_id", "city").agg(pl.col("ds").max())
    fut = fut.with_columns(
        pl.date_ranges(pl.col("ds") + timedelta(days=1), pl.col("ds") + timedelta(days=28))
    ).explode("ds")
    res = bt.forecast_with_champions(
        frame, fut, [statsforecast_models(("SeasonalNaive", "TSB"))], 3, 14, 28
    )
    assert set(res.champions["champion"]) <= {"SeasonalNaive", "TSB"}
    fc = res.forecast
    assert fc.height == 2 * 28 and fc["yhat"].min() >= 0
    assert (
        fc.filter(
            (pl.col("lo_95") > pl.col("lo_80"))
            | (pl.col("lo_80") > pl.col("yhat"))
            | (pl.col("yhat") > pl.col("hi_80"))
            | (pl.col("hi_80") > pl.col("hi_95"))
        ).height
        == 0
    )
    rec = bt.reconcile(fc)
    day = fc["ds"].min()
    bottom = rec.filter((pl.col("level") == "sku_store") & (pl.col("ds") == day))["yhat"].sum()
    cities = rec.filter((pl.col("level") == "city") & (pl.col("ds") == day))["yhat"].sum()
    total = rec.filter((pl.col("level") == "total") & (pl.col("ds") == day))["yhat"].item()
    assert bottom == pytest.approx(total) and cities == pytest.approx(total)
    # quadrature widths: total half-width ≤ sum of bottom half-widths
    width = rec.filter((pl.col("level") == "total") & (pl.col("ds") == day))
    half = float(width["hi_95"].item() - width["yhat"].item())
    bottom_half = (
        fc.filter(pl.col("ds") == day).select((pl.col("hi_95") - pl.col("yhat")).sum()).item()
    )
    assert half <= bottom_half + 1e-9


def test_reconcile_sums_several_stores_per_city() -> None:
    fc = pl.DataFrame(
        {
            "unique_id": ["a|s1", "a|s2", "b|s3"],
            "sku": ["a", "a", "b"],
            "store_id": ["s1", "s2", "s3"],
            "city": ["X", "X", "Y"],
            "ds": [START] * 3,
            "model": ["m"] * 3,
            "yhat": [1.0, 2.0, 4.0],
            "lo_80": [0.0] * 3,
            "hi_80": [2.0, 3.0, 5.0],
            "lo_95": [0.0] * 3,
            "hi_95": [3.0, 4.0, 6.0],
        }
    )
    rec = bt.reconcile(fc)
    city = dict(rec.filter(pl.col("level") == "city").select("node", "yhat").iter_rows())
    assert city == {"X": 3.0, "Y": 4.0}
    total = rec.filter(pl.col("level") == "total").row(0, named=True)
    assert total["yhat"] == 7.0 and total["hi_80"] == pytest.approx(7.0 + np.sqrt(3.0))


def test_supply_history_events_match_their_contracts() -> None:
    h = generate_supply_history(date(2026, 9, 1), date(2026, 11, 1), seed=3, scale=0.01)
    for topic in HISTORY_TOPICS:
        msgs = h.messages(topic)
        assert msgs, topic
        import pyarrow as pa

        batch = pa.table(
            {
                "key": pa.array([k for k, _ in msgs], pa.binary()),
                "value": pa.array([v for _, v in msgs], pa.binary()),
            }
        )
        reasons = validate(batch, CONTRACTS[topic].schema)
        bad = [r for r in reasons.to_pylist() if r is not None]
        assert not bad, (topic, bad[:3])
    # daily history: demand in orders equals the simulated units
    lines = h.tables["orders"].explode("items").unnest("items")
    assert lines["qty"].sum() == int(h.demand.units.sum())
    # lead times differ by supplier (mean and spread)
    po, rc = h.tables["purchase_orders"], h.tables["receipts"]
    lead = rc.join(po.select("po_id", pl.col("ts").alias("o")), on="po_id").with_columns(
        ((pl.col("ts") - pl.col("o")).dt.total_hours() / 24).alias("lead")
    )
    stats = lead.group_by("supplier_id").agg(pl.col("lead").mean().alias("m"))
    assert stats["m"].max() - stats["m"].min() > 1.0
    # slow movers are intermittent
    zero_share = (h.demand.units[:, -20:] == 0).mean()
    assert zero_share > 0.3


def test_daily_demand_zero_fills_and_maps_web_orders_to_city_store() -> None:
    lines = pl.DataFrame(
        {
            "sku": ["A", "A", "A"],
            "store_id": [None, "s_lyon", None],
            "city": ["Lyon", "Lyon", "Lyon"],
            "order_date": [START, START, START + timedelta(days=2)],
            "qty": [2, 3, 1],
            "price": [10.0, 10.0, 8.0],
        }
    )
    d = daily_demand(lines)
    assert d["y"].to_list() == [5.0, 0.0, 1.0]
    assert d["store_id"].unique().to_list() == ["s_lyon"]
    feats = calendar_features(d)
    fut = future_frame(feats, 3, None)
    assert fut.height == 3 and "y" not in fut.columns
