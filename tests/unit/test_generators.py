"""Generators: determinism, contracts, rates, seasonality, promos, conversion, stock invariant."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from jsonschema import Draft202012Validator

from ingestion.contracts import contract
from ingestion.generators.catalog import (
    CITIES,
    SKU_CODES,
    SKUS,
    base_prices,
    promo_calendar,
    promo_matrix,
    promo_prices,
    write_seed_csvs,
)
from ingestion.generators.inventory import N_SERIES, generate_inventory
from ingestion.generators.live import paced, timed_messages
from ingestion.generators.orders import (
    CHANNELS,
    OrderStream,
    base_order_rate,
    generate_orders,
    order_rate,
)
from lakehouse.errors import ConfigError

SAT = datetime(2025, 8, 16, 11, 0, tzinfo=UTC)  # Saturday 13:00 Paris
MON = datetime(2025, 8, 18, tzinfo=UTC)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@cache
def _hour_scale1() -> OrderStream:
    return generate_orders(SAT, SAT + timedelta(hours=1), seed=7)


@cache
def _day_orders() -> OrderStream:
    return generate_orders(MON, MON + timedelta(days=1), seed=3, scale=0.05)


@cache
def _fortnight() -> OrderStream:
    return generate_orders(MON, MON + timedelta(days=28), seed=5, scale=0.02, with_sessions=False)


def _validator(topic: str) -> Draft202012Validator:
    schema = contract(topic).schema
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _assert_valid(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    validator, c = _validator(topic), contract(topic)
    assert messages
    for key, value in messages:
        event = json.loads(value)
        errors = list(validator.iter_errors(event))
        assert not errors, (value, errors[0].message)
        assert TS_RE.match(event[c.event_time_field])
        assert key == c.key_of(event).encode()


# ---- catalogue ---------------------------------------------------------------------------
def test_catalogue_has_five_cities_twenty_skus_and_seed_prices(tmp_path: Path) -> None:
    assert [c.name for c in CITIES] == ["Paris", "Lyon", "Marseille", "Lille", "Bordeaux"]
    assert [c.store_id for c in CITIES][3] == "s_lille"
    assert len(SKUS) == len(set(SKU_CODES)) == 20
    prices = {s.sku: s.base_price for s in SKUS}
    assert prices["A123"] == 19.9 and prices["B200"] == 49.0
    assert 3 <= sum(s.slow for s in SKUS) <= 4
    regular = [s.weight for s in SKUS if not s.slow]
    assert regular == sorted(regular, reverse=True)
    assert all(2 <= s.lead_time_days <= 5 for s in SKUS)

    write_seed_csvs(tmp_path / "seeds")
    stores = (tmp_path / "seeds" / "stores.csv").read_text().splitlines()
    skus = (tmp_path / "seeds" / "skus.csv").read_text().splitlines()
    assert stores[0] == "store_id,city,country" and len(stores) == 6
    assert "s_lille,Lille,FR" in stores
    assert skus[0] == "sku,name,category,base_price" and len(skus) == 21
    assert any(line.startswith("A123,") and line.endswith(",19.90") for line in skus)


def test_promo_calendar_is_deterministic_and_spares_slow_movers() -> None:
    cal = promo_calendar(date(2025, 8, 18), date(2025, 9, 14))  # 4 whole weeks
    assert cal.equals(promo_calendar(date(2025, 8, 18), date(2025, 9, 14)))
    assert 4 * 2 * 3 <= cal.height <= 4 * 2 * 4
    slow = {s.sku for s in SKUS if s.slow}
    assert not set(cal["sku"]) & slow
    assert cal["uplift"].min() >= 2.0 and cal["uplift"].max() <= 3.0


# ---- rates and seasonality ---------------------------------------------------------------
def test_rate_function_stays_in_band_and_uses_it() -> None:
    minutes = np.arange(29_000_000, 29_000_000 + 5 * 7 * 1440)  # five weeks
    rate = order_rate(minutes)
    assert rate.min() >= 50.0 and rate.max() <= 200.0
    assert rate.min() < 70.0 and rate.max() > 170.0


def test_realised_counts_follow_the_rate_at_scale_1() -> None:
    stream = generate_orders(SAT, SAT + timedelta(hours=3), seed=11, with_sessions=False)
    minute = stream.event_seconds("orders") // 60
    first = int(SAT.timestamp()) // 60
    counts = np.bincount(minute - first, minlength=180)
    lam = order_rate(np.arange(first, first + 180))
    assert counts.size == 180
    assert np.all(np.abs(counts - lam) <= 5 * np.sqrt(lam))  # Poisson noise only
    assert abs(counts.mean() / lam.mean() - 1) < 0.03
    assert counts.min() >= 50 * 0.6 and counts.max() <= 200 * 1.25


def test_daily_and_weekly_seasonality() -> None:
    week = np.arange(int(MON.timestamp()) // 60, int(MON.timestamp()) // 60 + 7 * 1440)
    base = base_order_rate(week).reshape(7, 1440)
    assert base[5:].mean() > 1.12 * base[:4].mean()  # weekend above Monday-Thursday
    paris = base[0]  # UTC+2 in August: local hour h is UTC minute (h - 2) * 60
    night, lunch, evening = paris[(4 - 2) * 60], paris[(12 - 2) * 60 + 45], paris[(20 - 2) * 60]
    assert night < 0.5 * lunch and lunch < evening

    ts = _fortnight().event_seconds("orders")
    per_day = np.bincount((ts - int(MON.timestamp())) // 86400, minlength=28)
    weekday = (np.arange(28)) % 7
    assert per_day[weekday >= 5].mean() > 1.08 * per_day[weekday < 4].mean()
    local_hour = ((ts + 2 * 3600) // 3600) % 24
    by_hour = np.bincount(local_hour, minlength=24)
    assert by_hour[3] * 2.2 < by_hour[20] and by_hour[3] * 1.8 < by_hour[12]


# ---- orders and sessions -----------------------------------------------------------------
def test_same_arguments_give_byte_identical_messages() -> None:
    a = generate_orders(SAT, SAT + timedelta(minutes=20), seed=7)
    b = generate_orders(SAT, SAT + timedelta(minutes=20), seed=7)
    c = generate_orders(SAT, SAT + timedelta(minutes=20), seed=8)
    for topic in ("orders", "sessions"):
        assert a.messages(topic) == b.messages(topic)
        assert a.messages(topic) != c.messages(topic)
    assert a.messages("orders")[0][0].startswith(b"o_7_")


def test_adjacent_windows_compose_without_id_collisions() -> None:
    cut = SAT + timedelta(minutes=17, seconds=30)  # mid-minute on purpose
    end = SAT + timedelta(minutes=40)
    left, right = generate_orders(SAT, cut, 7), generate_orders(cut, end, 7)
    whole = generate_orders(SAT, end, 7)
    for topic, id_field in (("orders", "order_id"), ("sessions", "session_id")):
        ids_left = set(left.table(topic)[id_field])
        ids_right = set(right.table(topic)[id_field])
        assert not ids_left & ids_right
        assert left.messages(topic) + right.messages(topic) == whole.messages(topic)
        assert whole.table(topic)[id_field].is_unique().all()
        times = whole.event_seconds(topic)
        assert np.all(np.diff(times) >= 0)
        assert times.min() >= SAT.timestamp() and times.max() < end.timestamp()


def test_order_and_session_events_validate_against_the_schemas() -> None:
    stream = generate_orders(SAT, SAT + timedelta(minutes=15), seed=7, scale=0.5)
    _assert_valid("orders", stream.messages("orders"))
    _assert_valid("sessions", stream.messages("sessions"))


def test_order_fields_follow_the_rules() -> None:
    orders = _hour_scale1().orders
    assert set(orders["city"]) == {c.name for c in CITIES}
    assert set(orders["country"]) == {"FR"}
    n_items = orders["items"].list.len()
    assert n_items.min() == 1 and n_items.max() == 5
    lines = _hour_scale1().order_lines()
    assert lines["qty"].min() == 1 and lines["qty"].max() == 3
    assert {s.sku for s in SKUS if not s.slow} <= set(lines["sku"]) <= set(SKU_CODES)
    assert lines.group_by("order_id").agg(pl.col("sku").n_unique() == pl.len()).to_series(1).all()
    shares = orders["channel"].value_counts(normalize=True).sort("channel")
    expected = {"app": 0.3, "store": 0.2, "web": 0.5}
    for channel, share in shares.iter_rows():
        assert abs(share - expected[channel]) < 0.03
    store = orders.filter(pl.col("channel") == "store")
    assert (store["store_id"] == "s_" + store["city"].str.to_lowercase()).all()
    assert (
        orders.filter(pl.col("channel") != "store")["store_id"].null_count()
        == orders.filter(pl.col("channel") != "store").height
    )
    by_city = orders["city"].value_counts(normalize=True)
    weights = {c.name: c.weight for c in CITIES}
    for city, share in by_city.iter_rows():
        assert abs(share - weights[city]) < 0.03


def test_promo_prices_and_uplift() -> None:
    stream = _fortnight()
    lines = stream.order_lines().with_columns(
        (pl.col("ts").dt.epoch("s") // 86400).alias("day"),
        pl.col("sku").replace_strict({s: i for i, s in enumerate(SKU_CODES)}).alias("k"),
    )
    days = lines["day"].to_numpy()
    uniq, inverse = np.unique(days, return_inverse=True)
    on, _ = promo_matrix(uniq)
    k = lines["k"].to_numpy()
    promo = on[inverse, k]
    expected_price = np.where(promo, promo_prices()[k], base_prices()[k])
    assert np.array_equal(lines["price"].to_numpy(), expected_price)
    assert promo.any() and (~promo).any()
    assert promo_prices()[SKU_CODES.index("A123")] == 15.92

    units = np.zeros((uniq.size, len(SKUS)))
    np.add.at(units, (inverse, k), lines["qty"].to_numpy())
    base_units = np.where(on, np.nan, units)
    ratios = units[on] / np.nanmean(base_units, axis=0)[np.nonzero(on)[1]]
    assert 1.7 < ratios.mean() < 3.5


def test_sessions_convert_at_channel_targets() -> None:
    stream = _day_orders()
    sessions, orders = stream.sessions, stream.orders
    conv = (
        sessions.group_by("channel")
        .agg(pl.col("order_id").is_not_null().mean().alias("rate"))
        .sort("channel")
    )
    target = {"web": 0.12, "app": 0.18, "store": 0.60}
    for channel, rate in conv.iter_rows():
        assert abs(rate - target[channel]) < 0.03, (channel, rate)
    converted = sessions.filter(pl.col("order_id").is_not_null())
    assert converted["order_id"].is_unique().all()
    assert set(converted["order_id"]) == set(orders["order_id"])  # whole-minute window
    joined = converted.join(orders, on="order_id", suffix="_order")
    assert (joined["ts"] <= joined["ts_order"]).all()
    assert (joined["ts_order"] - joined["ts"]).max() <= timedelta(seconds=30)
    for col in ("customer_id", "channel", "city"):
        assert (joined[col] == joined[f"{col}_order"]).all()
    assert set(sessions["channel"]) == set(CHANNELS)


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        generate_orders(SAT, SAT + timedelta(hours=1), 1, scale=0)
    with pytest.raises(ConfigError):
        generate_orders(SAT, SAT - timedelta(hours=1), 1)


# ---- inventory ---------------------------------------------------------------------------
@cache
def _inventory():
    return generate_inventory(MON, MON + timedelta(days=6), seed=9, scale=0.02)


def _check_invariant(inv: pl.DataFrame) -> None:
    checked = inv.sort("sku", "store_id", "ts").with_columns(
        pl.col("on_hand").shift(1).over("sku", "store_id").alias("prev")
    )
    follow = checked.filter(pl.col("prev").is_not_null())
    assert follow.height > 0
    assert (follow["on_hand"] == follow["prev"] - follow["sold_qty"] + follow["received_qty"]).all()


def test_inventory_invariant_and_event_kinds() -> None:
    stream = _inventory()
    inv = stream.inventory
    assert inv["on_hand"].min() >= 0 and inv["on_order"].min() >= 0
    assert inv.select("sku", "store_id", "ts").is_unique().all()
    _check_invariant(inv)
    first = inv.group_by("sku", "store_id").agg(pl.all().sort_by("ts").first())
    assert first.height == N_SERIES
    assert set(first["update_type"]) == {"initial"} and (first["ts"] == MON).all()
    updates = inv.filter(pl.col("update_type") == "update")
    assert ((updates["sold_qty"] > 0) | (updates["received_qty"] > 0)).all()
    assert (updates["ts"].dt.second() == 59).all() and (updates["ts"].dt.minute() % 5 == 4).all()
    snaps = inv.filter(pl.col("update_type") == "snapshot")
    assert snaps.height == 5 * N_SERIES  # midnights strictly inside the 6 days
    assert (snaps["ts"].dt.hour() == 0).all() and (snaps["ts"].dt.minute() == 0).all()
    assert updates["received_qty"].sum() > 0 and inv["on_order"].max() > 0  # reorders arrive
    assert np.all(np.diff(stream.event_seconds()) >= 0)


def test_inventory_sales_match_the_orders_of_the_same_window() -> None:
    stream = _inventory()
    lines = generate_orders(MON, MON + timedelta(days=6), 9, 0.02, with_sessions=False)
    demand = (
        lines.order_lines()
        .with_columns(("s_" + pl.col("city").str.to_lowercase()).alias("store_id"))
        .group_by("sku", "store_id")
        .agg(pl.col("qty").sum().alias("demand"))
    )
    sold = stream.inventory.group_by("sku", "store_id").agg(pl.col("sold_qty").sum())
    merged = stream.lost_sales.join(demand, on=["sku", "store_id"], how="left").join(
        sold, on=["sku", "store_id"], suffix="_events"
    )
    assert (merged["demand_qty"] == merged["demand"].fill_null(0)).all()
    assert (merged["sold_qty"] == merged["sold_qty_events"]).all()
    assert (merged["lost_qty"] >= 0).all()
    fill_rate = merged["sold_qty"].sum() / merged["demand_qty"].sum()
    assert 0.9 < fill_rate <= 1.0


def test_inventory_events_validate_and_are_deterministic() -> None:
    stream = _inventory()
    messages = stream.messages()
    _assert_valid("inventory", messages[:3000] + messages[-3000:])
    again = generate_inventory(MON, MON + timedelta(days=6), seed=9, scale=0.02)
    assert again.messages() == messages
    assert messages[0][0] == b"A123|s_paris"


@pytest.mark.parametrize("cut", [timedelta(days=2), timedelta(days=2, hours=7, minutes=30)])
def test_inventory_warm_up_continues_the_stock(cut: timedelta) -> None:
    full, start = _inventory().inventory, MON + cut
    warm = generate_inventory(start, MON + timedelta(days=6), 9, 0.02, initial_at=MON).inventory
    first = warm.filter(pl.col("ts") == start)
    assert first.height == N_SERIES and set(first["update_type"]) == {"snapshot"}
    assert warm.filter(pl.col("ts") > start).equals(full.filter(pl.col("ts") > start))
    carried = (
        full.filter(pl.col("ts") <= start)
        .group_by("sku", "store_id")
        .agg(pl.col("on_hand", "on_order").sort_by("ts").last())
    )
    joined = first.join(carried, on=["sku", "store_id"], suffix="_full")
    assert (joined["on_hand"] == joined["on_hand_full"]).all()
    assert (joined["on_order"] == joined["on_order_full"]).all()
    _check_invariant(warm)


def test_inventory_rejects_initial_after_start() -> None:
    with pytest.raises(ConfigError):
        generate_inventory(MON, MON + timedelta(hours=1), 1, initial_at=MON + timedelta(hours=1))


# ---- live pacing -------------------------------------------------------------------------
def test_paced_releases_events_at_speed() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    start = datetime(2025, 1, 1, tzinfo=UTC)
    items = [(start + timedelta(seconds=s), s) for s in (0, 30, 60, 60, 600)]
    out = list(paced(items, start, speed=10, clock=lambda: now[0], sleep=sleep))
    assert out == [0, 30, 60, 60, 600]
    assert slept == pytest.approx([3.0, 3.0, 54.0])
    assert now[0] == pytest.approx(160.0)  # 10 minutes of events in 1 minute
    with pytest.raises(ConfigError):
        list(paced(items, start, speed=0))


def test_timed_messages_merges_topics_in_event_time_order() -> None:
    stream = generate_orders(SAT, SAT + timedelta(minutes=3), seed=1, scale=0.2)
    merged = list(timed_messages({"orders": stream, "sessions": stream}))
    assert len(merged) == stream.orders.height + stream.sessions.height
    times = [t for t, _ in merged]
    assert times == sorted(times)
    assert {topic for _, (topic, _, _) in merged} == {"orders", "sessions"}
