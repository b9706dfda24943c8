"""Fraud features: window boundaries, the seed's z-score example, haversine, no label
leakage, and batch/online parity (in-process store and real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraud.features import (
    CONTEXT_US,
    FEATURES,
    RISK_PRIOR_RATE,
    RISK_PRIOR_WEIGHT,
    batch_features,
    haversine_km,
    online_features,
    prior_history,
    zscore,
)
from fraud.replay import replay
from fraud.simulator import generate_transactions
from fraud.store import InMemoryStore, RedisStore, state_from_history
from fraud.training import silver_from_events

T0 = datetime(2025, 8, 16, 12, 0, 5, tzinfo=UTC)


def tx(i: int, seconds: float, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transaction_id": f"tx_{i:04d}",
        "ts": T0 + timedelta(seconds=seconds),
        "account_hash": "acc_a",
        "card_hash": "card_a",
        "amount": 10.0,
        "currency": "EUR",
        "merchant_id": "m_1",
        "merchant_category": "grocery",
        "channel": "pos",
        "country": "FR",
        "device_id": "dvc_1",
        "ip_hash": "ip_1",
        "lat": 48.85,
        "lon": 2.35,
    }
    row.update(changes)
    return row


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def labels_frame(rows: list[tuple[str, bool, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "transaction_id": pl.String,
            "is_fraud": pl.Boolean,
            "reported_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def test_seed_zscore_example() -> None:
    # seed: mean_7d = 60 €, std_7d = 40 €, new transaction 249.90 € → z = 4.75
    assert zscore(249.90, 60.0, 40.0) == pytest.approx(4.7475)
    assert round(float(zscore(249.90, 60.0, 40.0)), 2) == 4.75
    # through the feature: previous amounts 20 and 100 (mean 60, population std 40)
    rows = [tx(1, 0, amount=20.0), tx(2, 3600, amount=100.0), tx(3, 7200, amount=249.90)]
    out = batch_features(frame(rows))
    assert out["amount_zscore_7d"].to_list()[:2] == [None, None]  # fewer than 2 previous
    assert out["amount_zscore_7d"][2] == pytest.approx((249.90 - 60) / 40)


def test_zscore_window_is_seven_days() -> None:
    rows = [
        tx(1, 0, amount=1000.0),
        tx(2, 86400, amount=20.0),
        tx(3, 2 * 86400, amount=100.0),
        tx(4, 7 * 86400 + 1, amount=249.90),
    ]
    out = batch_features(frame(rows))
    # the 1000 € transaction is 7 days + 1 s old: outside the window
    assert out["card_tx_7d"][3] == 2
    assert out["amount_zscore_7d"][3] == pytest.approx(4.7475)


def test_haversine_paris_london() -> None:
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)
    assert haversine_km(48.8566, 2.3522, 48.8566, 2.3522) == 0.0


def test_distance_and_speed_since_previous_card_transaction() -> None:
    rows = [tx(1, 0), tx(2, 600, lat=51.5074, lon=-0.1278, country="GB")]
    out = batch_features(frame(rows))
    assert out["dist_prev_km"][0] is None
    dist = out["dist_prev_km"][1]
    assert dist == pytest.approx(haversine_km(48.85, 2.35, 51.5074, -0.1278))
    assert out["km_per_min"][1] == pytest.approx(dist / 10)
    assert out["country_changed"].to_list() == [None, 1.0]


def test_velocity_windows_at_their_boundaries() -> None:
    # 0 s, 59 s, 60 s, 299 s, 300 s, 3600 s: windows are (t - w, t], this transaction included
    seconds = [0, 59, 60, 299, 300, 3600]
    rows = [tx(i, s, amount=float(i + 1), merchant_id=f"m_{i % 3}") for i, s in enumerate(seconds)]
    out = batch_features(frame(rows))
    assert out["count_tx_1m_card"].to_list() == [1, 2, 2, 1, 2, 1]
    assert out["count_tx_5m_card"].to_list() == [1, 2, 3, 4, 4, 1]
    assert out["count_tx_1h_card"].to_list() == [1, 2, 3, 4, 5, 5]
    # sum over (t-5m, t]: at 300 s the 0 s transaction (amount 1) has left the window
    assert out["sum_amount_5m_card"].to_list() == [1, 3, 6, 10, 14, 6]
    assert out["uniq_merchant_1h_card"].to_list() == [1, 2, 3, 3, 3, 3]
    # another card is not counted; the shared device and IP are
    other = batch_features(frame([*rows[:2], tx(9, 30, card_hash="card_b", account_hash="acc_b")]))
    by_id = dict(zip(other["transaction_id"], other["count_tx_1m_card"], strict=True))
    assert by_id["tx_0009"] == 1
    by_id = dict(zip(other["transaction_id"], other["count_tx_1m_device"], strict=True))
    assert by_id["tx_0001"] == 3


def test_graph_features_count_distinct_neighbours_so_far() -> None:
    rows = [
        tx(1, 0),
        tx(2, 10, account_hash="acc_b", card_hash="card_b"),
        tx(3, 20, account_hash="acc_c", card_hash="card_c", ip_hash="ip_2"),
        tx(4, 30),
    ]
    out = batch_features(frame(rows))
    assert out["accounts_per_device"].to_list() == [1, 2, 3, 3]
    assert out["accounts_per_ip"].to_list() == [1, 2, 1, 2]
    assert out["new_device_for_account"].to_list() == [1, 1, 1, 0]


def test_component_size_grows_as_transactions_link_accounts() -> None:
    rows = [
        tx(1, 0),  # acc_a, dvc_1, ip_1
        tx(2, 10, account_hash="acc_b", card_hash="card_b", device_id="dvc_2", ip_hash="ip_2"),
        tx(3, 20),  # nothing new
        # acc_c uses acc_a's device and acc_b's IP: both components and acc_c become one
        tx(4, 30, account_hash="acc_c", card_hash="card_c", ip_hash="ip_2"),
        tx(5, 40, account_hash="acc_d", card_hash="card_d", device_id=None, ip_hash=None),
        tx(6, 50, account_hash="acc_b", card_hash="card_b", device_id="dvc_2", ip_hash="ip_2"),
    ]
    out = batch_features(frame(rows))
    assert out["component_size"].to_list() == [3, 3, 3, 7, 1, 7]
    # the same through the online store, transaction by transaction
    store = InMemoryStore()
    online = []
    for row in rows:
        ts_us = int(row["ts"].timestamp() * 1e6)  # type: ignore[attr-defined]
        online.append(online_features(row, ts_us, store.snapshot(row, ts_us))["component_size"])
        store.record(row, ts_us)
    assert online == [3, 3, 3, 7, 1, 7]


def test_merchant_risk_uses_only_labels_reported_before_the_transaction() -> None:
    day = 86400
    rows = [
        tx(1, 0),
        tx(2, 1 * day, card_hash="c2"),
        tx(3, 3 * day, card_hash="c3"),
        tx(4, 5 * day, card_hash="c4"),
    ]
    reported = T0 + timedelta(seconds=3 * day)  # exactly the third transaction's time
    labels = labels_frame([("tx_0001", True, reported)])
    out = batch_features(frame(rows), labels)
    prior = lambda k, n: (k + RISK_PRIOR_WEIGHT * RISK_PRIOR_RATE) / (n + RISK_PRIOR_WEIGHT)  # noqa: E731
    # tx 2 and tx 3 (reported at the same instant: not before) do not see the label; tx 4 does
    assert out["merchant_risk"].to_list() == pytest.approx(
        [prior(0, 0), prior(0, 1), prior(0, 2), prior(1, 3)]
    )
    assert out["mcc_risk"][3] == pytest.approx(prior(1, 3))


def test_no_leakage_future_labels_do_not_change_past_features() -> None:
    stream = generate_transactions(T0, T0 + timedelta(days=6), seed=3, scale=0.02, fraud_rate=0.02)
    silver = silver_from_events(stream.transactions.drop("is_fraud", "scenario"), "k")
    cutoff = T0 + timedelta(days=3)
    known = stream.labels.filter(pl.col("reported_at") <= cutoff)
    # every fraud labelled immediately after the cutoff: must not change features before it
    future = stream.transactions.filter(pl.col("is_fraud")).select(
        "transaction_id",
        "is_fraud",
        pl.lit(cutoff + timedelta(seconds=1)).cast(pl.Datetime("us", "UTC")).alias("reported_at"),
    )
    before = batch_features(silver, known).filter(pl.col("ts") <= cutoff)
    after = batch_features(silver, pl.concat([known, future])).filter(pl.col("ts") <= cutoff)
    assert before.equals(after)
    later = batch_features(silver, pl.concat([known, future])).filter(
        pl.col("ts") > cutoff + timedelta(seconds=1)
    )
    assert later["merchant_risk"].max() > before["merchant_risk"].max()


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    store = RedisStore("redis://127.0.0.1:6379/13", prefix=f"test:fraud:{uuid.uuid4().hex}:")
    try:
        yield store
    finally:
        store.clear()
        store.close()


def _stream(days: int, scale: float = 0.02) -> tuple[pl.DataFrame, pl.DataFrame]:
    stream = generate_transactions(
        T0, T0 + timedelta(days=days), seed=9, scale=scale, fraud_rate=0.02
    )
    return silver_from_events(stream.transactions.drop("is_fraud", "scenario"), "k"), stream.labels


def _online(store: object, rows: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """FEATURES of `rows` replayed through `store`."""
    return pl.DataFrame(
        [{"transaction_id": row["transaction_id"], **f} for row, f in replay(store, rows, labels)],  # type: ignore[arg-type]
        schema={"transaction_id": pl.String, **dict.fromkeys(FEATURES, pl.Float64)},
    )


def _assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a["transaction_id"].to_list() == b["transaction_id"].to_list()
    for name in FEATURES:
        x = a[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        y = b[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        # sums and variances: cumulative sums (batch) vs direct sums (online) differ in rounding
        assert np.allclose(x, y, rtol=1e-7, atol=1e-7, equal_nan=True), name


def _parity(store: object) -> None:
    silver, labels = _stream(8, scale=0.015)
    assert labels["is_fraud"].sum() > 5  # the merchant risk path is exercised
    batch = batch_features(silver, labels)
    assert batch["component_size"].max() > 3  # accounts linked through devices or IPs
    _assert_same(batch, _online(store, silver, labels))


def test_online_equals_batch_in_process() -> None:
    _parity(InMemoryStore())


def test_online_equals_batch_through_redis(redis_store: RedisStore) -> None:
    _parity(redis_store)


def test_batch_over_the_last_days_plus_a_summary_equals_the_whole_history() -> None:
    silver, labels = _stream(36, scale=0.01)
    cut = T0 + timedelta(days=3)
    exact_from = cut + timedelta(microseconds=CONTEXT_US)  # the longest window: 30 days
    silver = _with_dormant_cards(silver, cut, exact_from)
    prior = prior_history(silver.filter(pl.col("ts") < cut), labels)
    assert prior.fraud_labels.height > 0 and prior.card_last.height > 0
    incremental = batch_features(silver.filter(pl.col("ts") >= cut), labels, prior)
    whole = batch_features(silver, labels).filter(pl.col("ts") >= exact_from)
    _assert_same(whole, incremental.filter(pl.col("ts") >= exact_from))
    woken = whole.filter(pl.col("transaction_id").str.starts_with("woken_"))
    assert woken.height == 5 and (woken["dist_prev_km"] > 400).all()
    assert woken["country_changed"].to_list() == [1.0] * 5


def _with_dormant_cards(silver: pl.DataFrame, cut: datetime, wake: datetime) -> pl.DataFrame:
    """Five cards used before `cut` fall silent until after `wake`, then pay in Lisbon: their
    previous payment lies in the summarised history."""
    before = silver.filter(pl.col("ts") < cut, pl.col("country") != "PT")
    cards = before["card_hash"].unique().sort().head(5)
    mine = pl.col("card_hash").is_in(cards.implode())
    last = before.filter(mine).sort("ts").group_by("card_hash").agg(pl.all().last())
    woken = last.sort("card_hash").with_columns(
        ("woken_" + pl.col("transaction_id")).alias("transaction_id"),
        (pl.lit(wake) + pl.duration(hours=pl.int_range(1, 6))).alias("ts"),
        pl.lit("PT").alias("country"),
        pl.lit(38.7223).alias("lat"),
        pl.lit(-9.1393).alias("lon"),
    )
    kept = silver.filter(~(mine & (pl.col("ts") >= cut)))
    return pl.concat([kept, woken.select(silver.columns).cast(silver.schema)])


def _warm_parity(store: object) -> None:
    silver, labels = _stream(9)
    split = T0 + timedelta(days=8)
    history = silver.filter(pl.col("ts") < split)
    state = state_from_history(history, labels.filter(pl.col("reported_at") < split))
    assert state.components.height > 0 and all(f.height for f in state.events.values())
    store.load(state)  # type: ignore[attr-defined]
    rest = silver.filter(pl.col("ts") >= split)
    expected = batch_features(silver, labels).filter(pl.col("ts") >= split)
    _assert_same(expected, _online(store, rest, labels))


def test_a_loaded_store_continues_like_a_replayed_one_in_process() -> None:
    _warm_parity(InMemoryStore())


def test_a_loaded_store_continues_like_a_replayed_one_in_redis(redis_store: RedisStore) -> None:
    _warm_parity(redis_store)


def test_redis_store_survives_a_lost_script_cache(redis_store: RedisStore) -> None:
    first, second = tx(1, 0), tx(2, 10, account_hash="acc_b", card_hash="card_b")
    redis_store.record(first, 0)
    redis_store.client.script_flush()  # as after a Redis restart
    history = redis_store.snapshot(second, 10_000_000)  # EVALSHA fails, EVAL reloads
    assert online_features(second, 10_000_000, history)["component_size"] == 4
    redis_store.client.script_flush()
    redis_store.record(second, 10_000_000)
    assert redis_store.snapshot(first, 20_000_000).components == [("a:acc_a", 4)] * 3


PARIS, MADRID = (48.85, 2.35), (40.42, -3.70)  # the seed's Paris; Madrid


def test_a_dormant_card_gets_its_previous_payment_from_the_summary() -> None:
    # Paris, then Madrid ten days later: the previous payment lies in the summarised history
    rows = [
        tx(1, 0, lat=PARIS[0], lon=PARIS[1], country="FR"),
        tx(2, 10 * 86400, lat=MADRID[0], lon=MADRID[1], country="ES"),
    ]
    silver = frame(rows)
    whole = batch_features(silver)
    cut = T0 + timedelta(days=5)
    prior = prior_history(silver.filter(pl.col("ts") < cut), None)
    incremental = batch_features(silver.filter(pl.col("ts") >= cut), None, prior)
    for out in (whole.filter(pl.col("transaction_id") == "tx_0002"), incremental):
        assert out["dist_prev_km"][0] == pytest.approx(1051.7, abs=0.1)
        assert out["km_per_min"][0] == pytest.approx(1051.7 / (10 * 1440), rel=1e-3)
        assert out["country_changed"][0] == 1.0
