"""Backtest windows never see the future, metrics, champions, intervals, reconciliation, and
the supply generator's contracts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting import backtest as bt
from forecasting.demand import calendar_features, daily_demand, forecast_inputs, future_frame
from forecasting.models import lightgbm_global, statsforecast_models
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


def _weather(frame: pl.DataFrame) -> pl.DataFrame:
    days = frame["ds"].unique().sort()
    rng = np.random.default_rng(1)
    return pl.concat(
        pl.DataFrame(
            {
                "city": city,
                "weather_date": days,
                "temp_c": rng.normal(12, 5, days.len()),
                "precip_mm": rng.gamma(1.0, 2.0, days.len()),
            }
        )
        for city in ("Paris", "Lyon")
    )


def test_backtest_windows_are_built_as_production_builds_a_forecast() -> None:
    frame = _frame()
    weather = _weather(frame)
    seen: list[tuple[pl.DataFrame, pl.DataFrame]] = []

    def spy(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        seen.append((train, future))
        return future.select("unique_id", "ds").with_columns(pl.lit(1.0).alias("Spy"))

    preds = bt.backtest(frame, [spy], n_windows=3, horizon=28, step=14, weather=weather)
    cuts = bt.cutoffs(frame["ds"].max(), 3, 28, 14)
    assert sorted(preds["cutoff"].unique().to_list()) == cuts and len(seen) == 3
    for (train, future), cutoff in zip(seen, cuts, strict=True):
        # exactly the inputs of a nightly forecast made at the end of the cutoff day
        expected = forecast_inputs(frame, weather, 28, cutoff)
        assert train.equals(expected[0]) and future.equals(expected[1])
        assert train["ds"].max() == cutoff and "y" not in future.columns
    # every predicted day lies after its own cutoff, within the window, h = days after it
    assert preds["h"].min() == 1 and preds["h"].max() == 28
    assert preds.filter(pl.col("ds") != pl.col("cutoff") + pl.duration(days="h")).height == 0
    assert preds.height == 2 * 3 * 28


def test_poisoned_future_does_not_change_backtest() -> None:
    """Demand, prices, promotions and weather after the cutoff are replaced by absurd values:
    no candidate's backtest forecast (LightGBM included) may move."""
    frame = calendar_features(_frame(150))
    weather = _weather(frame)
    cutoff = bt.cutoffs(frame["ds"].max(), 1, 28)[0]
    after = pl.col("ds") > cutoff
    poisoned = frame.with_columns(
        pl.when(after).then(1e6).otherwise(pl.col("y")).alias("y"),
        pl.when(after).then(1e4).otherwise(pl.col("price")).alias("price"),
        pl.when(after).then(1.0).otherwise(pl.col("promo")).alias("promo"),
        pl.when(after).then(60.0).otherwise(pl.col("temp_c")).alias("temp_c"),
    )
    poisoned_weather = weather.with_columns(
        pl.when(pl.col("weather_date") > cutoff)
        .then(500.0)
        .otherwise(pl.col("precip_mm"))
        .alias("precip_mm"),
        pl.when(pl.col("weather_date") > cutoff)
        .then(-40.0)
        .otherwise(pl.col("temp_c"))
        .alias("temp_c"),
    )
    models = [
        statsforecast_models(("SeasonalNaive", "AutoETS", "CrostonOptimized")),
        lightgbm_global(40),
    ]
    a = bt.backtest(frame, models, n_windows=1, horizon=28, weather=weather).drop("y")
    b = bt.backtest(poisoned, models, n_windows=1, horizon=28, weather=poisoned_weather).drop("y")
    assert set(bt.model_columns(a)) == {"SeasonalNaive", "AutoETS", "CrostonOptimized", "LightGBM"}
    assert a.sort("unique_id", "ds").equals(b.sort("unique_id", "ds"))


def test_holdout_champion_score_is_picked_on_earlier_windows() -> None:
    """Model Early wins the first two windows and loses the last; Late the reverse. The
    hindsight champion is Late on all windows' MASE only if it wins overall; the held-out score
    of the rule is Early's error on the last window (picked on the windows before it)."""
    frame = _frame(120, {"A|s_paris": np.full(120, 4.0)})
    cuts = bt.cutoffs(frame["ds"].max(), 3, 28, 14)

    def two_models(train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        last_window = train["ds"].max() == cuts[-1]
        return future.select("unique_id", "ds").with_columns(
            pl.lit(4.0 + (6.0 if last_window else 1.0)).alias("Early"),
            pl.lit(4.0 + (0.0 if last_window else 2.0)).alias("Late"),
        )

    frame = frame.with_columns(pl.col("y") + (pl.col("ds").dt.weekday() == 1).cast(pl.Float64))
    _, _, champ, cal = bt.select_champions(frame, [two_models], 3, 14, 28)
    row = champ.row(0, named=True)
    # all windows: Early |e| ≈ 1,1,6 → worse than Late ≈ 2,2,0: Late wins in hindsight ...
    assert row["champion"] == "Late"
    # ... but the rule, run on windows 1-2 only, picks Early, which then misses by ≈ 6 units
    assert row["holdout_model"] == "Early"
    assert cal.holdout_mase == pytest.approx(row["holdout_mase"])
    assert cal.holdout_mase > 3 * cal.hindsight_mase


def test_conformal_quantile_is_finite_sample_corrected() -> None:
    values = np.arange(1.0, 11.0)  # 10 scores
    assert bt.conformal_quantile(values, 0.80) == 9.0  # ⌈11 × 0.8⌉ = 9th smallest
    assert bt.conformal_quantile(values, 0.95) == float("inf")  # ⌈10.45⌉ = 11 > 10
    assert bt.conformal_quantile(np.arange(1.0, 101.0), 0.95) == 96.0


def test_isotonic_steps_do_not_let_one_noisy_step_raise_the_rest() -> None:
    """A high first step (as the held-out quantiles show right after a cutoff) is pooled with
    its neighbours instead of lifting every later step to its level (a running maximum)."""
    noisy = np.array([1.4, 1.3, 1.2, 1.2, 1.25, 1.3, 1.35])
    fit = bt.isotonic(noisy)
    assert (np.diff(fit) >= 0).all()
    assert fit[0] < 1.4 and fit[-1] == pytest.approx(1.35)
    assert fit.sum() == pytest.approx(noisy.sum())  # least squares keeps the mean
    already = np.array([1.0, 1.0, 2.0, 3.5])
    assert bt.isotonic(already).tolist() == already.tolist()


def test_intervals_cover_their_level_on_generated_demand() -> None:
    """Stationary Poisson demand with a weekly season, 120 series × 260 days (exchangeable
    windows, the conformal premise): quantiles calibrated on the held-out errors of the
    earlier windows cover the last window's days at their level (targets 78-82 % and
    93-97 %), and widen with the horizon."""
    rng = np.random.default_rng(42)
    n_days, n_series = 260, 120
    t = np.arange(n_days)
    values = {}
    for i in range(n_series):
        level = rng.uniform(0.5, 30.0)
        week = 1 + 0.3 * np.sin(2 * np.pi * (t + i) / 7)
        values[f"S{i:03d}|s_paris"] = rng.poisson(level * week)
    frame = _frame(n_days, {k: v.astype(float) for k, v in values.items()})
    _, _, _, cal = bt.select_champions(
        frame, [statsforecast_models(("SeasonalNaive", "AutoETS"))], 4, 14, 28
    )
    assert 0.78 <= cal.coverage["coverage_80"] <= 0.82, cal.coverage
    assert 0.93 <= cal.coverage["coverage_95"] <= 0.97, cal.coverage
    steps = cal.steps
    assert steps.height == 28 and (steps["q95"] >= steps["q80"]).all()
    assert steps["q80"][-1] >= steps["q80"][0]


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
    res = bt.forecast_with_champions(
        frame, [statsforecast_models(("SeasonalNaive", "TSB"))], 3, 14, 28
    )
    assert set(res.champions["champion"]) <= {"SeasonalNaive", "TSB"}
    assert (res.champions["sigma_d"] > 0).all()
    fc = res.forecast
    assert fc.height == 2 * 28 and fc["yhat"].min() >= 0
    assert fc["ds"].min() == frame["ds"].max() + timedelta(days=1)
    assert (
        fc.filter(
            (pl.col("lo_95") > pl.col("lo_80"))
            | (pl.col("lo_80") > pl.col("yhat"))
            | (pl.col("yhat") > pl.col("hi_80"))
            | (pl.col("hi_80") > pl.col("hi_95"))
        ).height
        == 0
    )
    # widths grow with the horizon step (the calibration is non-decreasing in h)
    width = fc.with_columns((pl.col("hi_80") - pl.col("yhat")).alias("w")).group_by("unique_id")
    assert width.agg((pl.col("w").last() >= pl.col("w").first()).alias("ok"))["ok"].all()
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


def test_prophet_candidate_forecasts_a_small_series_set() -> None:
    """The optional Prophet candidate (`with_prophet`) on two series: one forecast per series
    and day, near the Poisson(5) series' mean, nothing for series beyond `max_series`."""
    from forecasting.models import prophet_model

    frame = calendar_features(_frame(120))
    history, future = forecast_inputs(frame, None, 14)
    out = prophet_model()(history, future, 14)
    assert out.height == 2 * 14 and out["Prophet"].min() >= 0
    poisson = out.filter(pl.col("unique_id") == "A|s_paris")["Prophet"]
    assert 3.5 <= poisson.mean() <= 6.5, poisson.to_list()  # type: ignore[operator]
    assert prophet_model(max_series=1)(history, future, 14)["unique_id"].unique().to_list() == [
        "A|s_paris"
    ]


def test_candidate_groups_in_threads_give_what_each_gives_alone() -> None:
    """run_candidates runs the groups at the same time: each column is exactly what that
    group forecasts on its own (LightGBM with one thread is deterministic)."""
    frame = _frame(n_days=150)
    train, future = forecast_inputs(frame, None, 28, frame["ds"].max() - timedelta(days=28))
    groups = [statsforecast_models(("SeasonalNaive", "TSB")), lightgbm_global(num_boost_round=20)]
    together = bt.run_candidates(groups, train, future, 28).sort("unique_id", "ds")
    alone = (
        groups[0](train, future, 28)
        .join(groups[1](train, future, 28), on=["unique_id", "ds"])
        .sort("unique_id", "ds")
    )
    assert together.columns == ["unique_id", "ds", "SeasonalNaive", "TSB", "LightGBM"]
    assert together.height == 2 * 28
    assert together.equals(alone.select(together.columns))


def test_statsforecast_worker_processes_forecast_what_one_process_does() -> None:
    """From PARALLEL_MIN_SERIES series up, statsforecast runs in worker processes; the
    forecasts are the same numbers as in one process."""
    from forecasting.models import PARALLEL_MIN_SERIES

    rng = np.random.default_rng(3)
    values = {
        f"S{i:03d}|s_paris": rng.poisson(1 + i % 7, 90).astype(float)
        for i in range(PARALLEL_MIN_SERIES)
    }
    frame = _frame(n_days=90, values=values)
    train, future = forecast_inputs(frame, None, 14, frame["ds"].max() - timedelta(days=14))
    names = ("SeasonalNaive", "TSB")
    parallel = statsforecast_models(names)(train, future, 14).sort("unique_id", "ds")
    single = statsforecast_models(names, n_jobs=1)(train, future, 14).sort("unique_id", "ds")
    assert parallel.height == PARALLEL_MIN_SERIES * 14
    assert parallel.equals(single)


class _AllWindowsAtOnce:
    """A WindowedCandidate computing every window in one call, from the frame it holds (as
    the Spark engine's statsforecast group does from its Spark frame)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.group = statsforecast_models(("SeasonalNaive", "TSB"), n_jobs=1)
        self.calls: list[int] = []

    def forecast_windows(self, cutoffs: list[date], horizon: int) -> pl.DataFrame:
        self.calls.append(len(cutoffs))
        outs = []
        for cutoff in cutoffs:
            train, future = forecast_inputs(self.frame, None, horizon, cutoff)
            out = self.group(train, future, horizon)
            outs.append(out.with_columns(pl.lit(cutoff).alias("cutoff")))
        return pl.concat(outs).select("unique_id", "ds", "cutoff", "SeasonalNaive", "TSB")

    def __call__(self, train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        return self.forecast_windows([train["ds"].max()], horizon).drop("cutoff")


def test_a_group_forecasting_all_windows_at_once_gives_the_window_by_window_backtest() -> None:
    """backtest() hands a WindowedCandidate every cutoff in one call and joins its output by
    (series, day, cutoff): the predictions, their column order (the champion tie-break) and
    the champions are those of the same models run window by window. A series that starts
    after the first cutoff has no forecast on that window either way."""
    late = np.zeros(150)
    late[110:] = np.random.default_rng(5).poisson(2, 40)
    late[110] = 1.0
    frame = _frame(150, {"A|s_paris": np.random.default_rng(4).poisson(5, 150).astype(float)})
    frame = pl.concat(
        [frame, _frame(150, {"C|s_lyon": late}).filter(pl.col("ds") >= START + timedelta(days=110))]
    )
    windowed = _AllWindowsAtOnce(frame)
    per_window = statsforecast_models(("SeasonalNaive", "TSB"), n_jobs=1)
    lgbm = lightgbm_global(num_boost_round=20)
    expected = bt.backtest(frame, [per_window, lgbm], 3, 28, 14)
    actual = bt.backtest(frame, [windowed, lgbm], 3, 28, 14)
    assert windowed.calls == [3]
    assert actual.columns == [
        "unique_id",
        "ds",
        "y",
        "SeasonalNaive",
        "TSB",
        "LightGBM",
        "cutoff",
        "h",
    ]
    keys = ["unique_id", "cutoff", "ds"]
    assert actual.sort(keys).equals(expected.sort(keys))
    first = actual.filter(
        (pl.col("unique_id") == "C|s_lyon") & (pl.col("cutoff") == actual["cutoff"].min())
    )
    assert first.height > 0 and first["TSB"].null_count() == first.height
    assert bt.champions(bt.metrics(actual, frame)).equals(bt.champions(bt.metrics(expected, frame)))
