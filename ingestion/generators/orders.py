"""Deterministic, vectorised `orders` and `sessions` events (seed Annex B: 5 cities, 20 SKUs,
50-200 orders/min).

Randomness is a counter-based hash of (seed, stream, minute, index, ...) instead of a sequential
RNG: every minute's events depend on (seed, scale, minute) alone, so generating [a, b) then
[b, c) gives exactly the events of [a, c) and ids never collide across windows. Everything is
numpy/polars over whole columns; JSON is written by polars.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa

from ingestion.contracts import contract
from ingestion.generators.catalog import (
    CITIES,
    COUNTRY,
    SKU_CODES,
    SKUS,
    STORE_IDS,
    base_prices,
    city_weights,
    promo_matrix,
    promo_prices,
    sku_weights,
)
from lakehouse.errors import ConfigError

RATE_MIN = 50.0  # orders/min at scale 1 (seed Annex B)
RATE_MAX = 200.0
CHANNELS = ("web", "app", "store")
CHANNEL_WEIGHTS = np.array([0.5, 0.3, 0.2])
CONVERSION = np.array([0.12, 0.18, 0.60])  # sessions -> order, per channel (same order)
ITEMS_P = np.array([0.42, 0.26, 0.16, 0.10, 0.06])  # 1..5 items per order
QTY_P = np.array([0.70, 0.20, 0.10])  # 1..3 units per item
CUSTOMER_POOL = 50_000
MAX_ITEMS = ITEMS_P.size
# Local (Europe/Paris) shape of the day and of the week: night low, lunch and evening peaks,
# weekend higher. Monday..Sunday.
WEEKDAY_FACTOR = np.array([1.00, 0.95, 1.00, 1.05, 1.15, 1.45, 1.35])
_PARIS = ZoneInfo("Europe/Paris")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Independent random streams (any distinct integers).
_S_COUNT, _S_COUNT_Z, _S_SECOND, _S_CUSTOMER, _S_HOME_CITY = 1, 2, 3, 4, 5
_S_CHANNEL, _S_ITEMS, _S_SKU, _S_QTY = 6, 7, 8, 9
_S_BROWSERS, _S_SESSION_SECOND, _S_SESSION_CUSTOMER, _S_SESSION_LAG = 10, 11, 12, 13

# ---- counter-based randomness --------------------------------------------------------------
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix_int(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (array integer overflow wraps silently)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniforms in (0, 1), one per broadcast element of `keys`, a pure function of its inputs."""
    base = _mix_int(((seed & _MASK) * _GOLDEN + stream * 0xD1B54A32D192ED03 + 1) & _MASK)
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(k, dtype=np.int64)) for k in keys))
    h = np.full(arrays[0].shape, base, dtype=np.uint64)
    golden = np.uint64(_GOLDEN)
    for k in arrays:
        h = _mix(h ^ (k.astype(np.uint64) * golden))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def choice(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF categorical draw: index into `p` for each uniform."""
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), p.size - 1)


def poisson(u: np.ndarray, lam: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Inverse-CDF Poisson draws (exact up to lam=500, normal approximation above)."""
    k = np.zeros(u.shape, dtype=np.int64)
    small = np.flatnonzero(lam <= 500)
    uu, ll = u[small], lam[small]
    p = np.exp(-ll)
    cdf = p.copy()
    kk = np.zeros(small.size, dtype=np.int64)
    active = np.flatnonzero(uu > cdf)
    while active.size:
        kk[active] += 1
        p[active] *= ll[active] / kk[active]
        cdf[active] += p[active]
        active = active[(uu[active] > cdf[active]) & (p[active] > 0)]
    k[small] = kk
    big = np.flatnonzero(lam > 500)
    if big.size:
        z = np.sqrt(-2 * np.log(u[big])) * np.cos(2 * np.pi * u2[big])
        k[big] = np.maximum(np.rint(lam[big] + np.sqrt(lam[big]) * z), 0).astype(np.int64)
    return k


# ---- time helpers --------------------------------------------------------------------------
def epoch_seconds(moment: datetime) -> int:
    """Whole UTC seconds, rounded up (event times are whole seconds; naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1_000_000)


def _utc_offset_minutes(epoch_days: np.ndarray) -> np.ndarray:
    """Europe/Paris UTC offset (minutes) at noon of each UTC day: the shoppers' local clock."""
    uniq, inverse = np.unique(epoch_days, return_inverse=True)
    offsets = np.array(
        [
            (_EPOCH + timedelta(days=int(d), hours=12)).astimezone(_PARIS).utcoffset()
            // timedelta(minutes=1)
            for d in uniq
        ],
        dtype=np.int64,
    )
    return offsets[inverse]


@cache
def _day_shape() -> np.ndarray:
    h = (np.arange(1440) + 0.5) / 60.0
    plateau = 1.0 / (1.0 + np.exp(-(h - 8.5) * 1.6)) / (1.0 + np.exp((h - 22.5) * 1.6))
    lunch = np.exp(-0.5 * ((h - 12.75) / 1.1) ** 2)
    evening = np.exp(-0.5 * ((h - 20.5) / 1.5) ** 2)
    shape = 0.06 + 0.34 * plateau + 0.32 * lunch + 0.55 * evening
    return shape / shape.max()


def base_order_rate(epoch_minutes: np.ndarray) -> np.ndarray:
    """Orders/min at scale 1 from the daily and weekly curves only (no promotions)."""
    minutes = np.asarray(epoch_minutes, dtype=np.int64)
    local = minutes + _utc_offset_minutes(minutes // 1440)
    weekday = (local // 1440 + 3) % 7  # 1970-01-01 was a Thursday
    season = _day_shape()[local % 1440] * WEEKDAY_FACTOR[weekday] / WEEKDAY_FACTOR.max()
    return RATE_MIN + (RATE_MAX - RATE_MIN - 20.0) * season


def promo_boost(epoch_days: np.ndarray) -> np.ndarray:
    """Traffic multiplier of each UTC day: a SKU on promo sells uplift x more, others unchanged."""
    on, uplift = promo_matrix(epoch_days)
    return 1.0 + ((uplift - 1.0) * on) @ sku_weights()


def order_rate(epoch_minutes: np.ndarray) -> np.ndarray:
    """Expected orders/min at scale 1: seasonality x promotions, clipped to [50, 200]."""
    minutes = np.asarray(epoch_minutes, dtype=np.int64)
    days, inverse = np.unique(minutes // 1440, return_inverse=True)
    rate = base_order_rate(minutes) * promo_boost(days)[inverse]
    return np.clip(rate, RATE_MIN, RATE_MAX)


@cache
def expected_orders_per_day() -> float:
    """Mean daily orders at scale 1 without promotions (a reference week), to size stock."""
    week = np.arange(20_000 * 1440, 20_007 * 1440)  # any 7 whole days
    return float(base_order_rate(week).mean() * 1440)


@cache
def expected_sku_lines_per_order() -> np.ndarray:
    """Mean lines of each SKU per order (no promotion), by a fixed Monte-Carlo of the same
    sampling without replacement: w * E[items] overstates top sellers and understates the
    middle of the range."""
    n = 50_000
    order_ids = np.arange(n)
    n_items = 1 + choice(ITEMS_P, hash_uniform(0, _S_ITEMS, order_ids))
    u = hash_uniform(0, _S_SKU, order_ids[:, None], np.arange(len(SKUS))[None, :])
    keys = np.log(u) / sku_weights()[None, :]
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return (ranks < n_items[:, None]).mean(axis=0)


# ---- serialisation -------------------------------------------------------------------------
def encode_messages(table: pl.DataFrame, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs for Kafka: value = one JSON object per row with the schema's fields
    in schema order (timestamps as YYYY-MM-DDTHH:MM:SSZ), key = the contract's key fields
    joined with "|". Polars writes the JSON in one pass; no per-event json.dumps."""
    if table.height == 0:
        return []
    c = contract(topic)
    # the newest version's fields the table has: a generator that leaves out an optional field
    # a later version added (transactions' three_ds_status) writes events every version accepts
    fields = [name for name in c.schema["properties"] if name in table.columns]
    out = table.select(fields).with_columns(pl.col(c.event_time_field).dt.strftime(_TS_FORMAT))
    buf = io.BytesIO()
    out.write_ndjson(buf)
    values = buf.getvalue().split(b"\n")
    values.pop()  # trailing newline
    key_col = out.select(pl.concat_str(list(c.key_fields), separator="|")).to_series()
    keys = "\n".join(key_col.to_list()).encode().split(b"\n")
    return list(zip(keys, values, strict=True))


def _utc(col: str) -> pl.Expr:
    return pl.from_epoch(col, time_unit="s").dt.replace_time_zone("UTC")


def _lookup(values: tuple[str, ...], idx: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(idx)


# ---- the stream ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderStream:
    """Orders and the sessions they came from for one window, both sorted by event time.

    `orders`: order_id, ts (datetime UTC), customer_id, items (list of {sku, qty, price}),
    channel, store_id (null unless channel == "store"), city, country.
    `sessions`: session_id, ts, customer_id, channel, city, order_id (null = no conversion).
    """

    start: datetime
    end: datetime
    seed: int
    scale: float
    orders: pl.DataFrame
    sessions: pl.DataFrame

    topics = ("orders", "sessions")

    def table(self, topic: str) -> pl.DataFrame:
        if topic not in self.topics:
            raise ConfigError(f"OrderStream has no topic {topic!r}: use orders or sessions")
        return self.orders if topic == "orders" else self.sessions

    def messages(self, topic: str) -> list[tuple[bytes, bytes]]:
        """Kafka (key, value) pairs of `topic`, in event-time order."""
        return encode_messages(self.table(topic), topic)

    def event_seconds(self, topic: str) -> np.ndarray:
        """Event time of each message of `topic` (UTC epoch seconds), aligned with messages()."""
        return self.table(topic)["ts"].dt.epoch("s").to_numpy()

    def order_lines(self) -> pl.DataFrame:
        """One row per item: order_id, line (0-based), ts, channel, store_id, city, sku, qty,
        price."""
        return (
            self.orders.select("order_id", "ts", "channel", "store_id", "city", "items")
            .with_columns(pl.int_ranges(pl.col("items").list.len()).alias("line"))
            .explode("items", "line")
            .unnest("items")
            .select("order_id", "line", "ts", "channel", "store_id", "city", "sku", "qty", "price")
        )


def generate_orders(
    start: datetime,
    end: datetime,
    seed: int,
    scale: float = 1.0,
    *,
    with_sessions: bool = True,
) -> OrderStream:
    """Orders (and sessions) with event time in [start, end).

    Per minute: count ~ Poisson(order_rate(minute) * scale), i.e. 50-200 orders/min at scale 1
    (`scale` thins history: the 60-day backfill runs at ~0.01). Each order: a customer of a
    50 000 pool (skewed to regulars) whose home city sets `city`; 1-5 distinct SKUs by
    popularity (x2-3 on promo days, price -20 %), qty 1-3; channel web/app/store 50/30/20 %
    and store_id = the city's store for store orders. Each order has one converting session
    just before it plus geometric non-converting ones, so sessions convert at 12 % (web),
    18 % (app), 60 % (store). Same arguments => byte-identical messages.
    """
    if not scale > 0:
        raise ConfigError(f"scale={scale} is invalid: use a positive number (1.0 = 50-200/min)")
    s0, s1 = epoch_seconds(start), epoch_seconds(end)
    if s1 < s0:
        raise ConfigError(f"window end {end} is before start {start}: swap them")
    minutes = np.arange(s0 // 60, -(-s1 // 60), dtype=np.int64)
    counts = poisson(
        hash_uniform(seed, _S_COUNT, minutes),
        order_rate(minutes) * scale,
        hash_uniform(seed, _S_COUNT_Z, minutes),
    )
    minute = np.repeat(minutes, counts)
    idx = np.arange(minute.size) - np.repeat(np.cumsum(counts) - counts, counts)
    ts = minute * 60 + (hash_uniform(seed, _S_SECOND, minute, idx) * 60).astype(np.int64)
    order = np.lexsort((idx, ts))
    minute, idx, ts = minute[order], idx[order], ts[order]
    customer = _customers(seed, _S_CUSTOMER, minute, idx)
    city = _home_city(seed, customer)
    channel = choice(CHANNEL_WEIGHTS, hash_uniform(seed, _S_CHANNEL, minute, idx))

    keep = (ts >= s0) & (ts < s1)
    orders = _orders_table(
        seed, minute[keep], idx[keep], ts[keep], customer[keep], city[keep], channel[keep]
    )
    if with_sessions:
        sessions = _sessions_table(seed, s0, s1, minute, idx, ts, customer, city, channel)
    else:
        sessions = pl.DataFrame(schema=_SESSIONS_SCHEMA)
    return OrderStream(start, end, seed, scale, orders, sessions)


def _customers(seed: int, stream: int, *keys: np.ndarray) -> np.ndarray:
    """Customer index in the pool; u**1.3 makes low indices regulars."""
    u = hash_uniform(seed, stream, *keys)
    return np.minimum((CUSTOMER_POOL * u**1.3).astype(np.int64), CUSTOMER_POOL - 1)


def _home_city(seed: int, customer: np.ndarray) -> np.ndarray:
    return choice(city_weights(), hash_uniform(seed, _S_HOME_CITY, customer))


def _order_ids(seed: int) -> pl.Expr:
    return pl.concat_str(
        [
            pl.lit(f"o_{seed}_"),
            pl.col("minute").cast(pl.String),
            pl.lit("_"),
            pl.col("idx").cast(pl.String),
        ]
    )


_ORDERS_SCHEMA = {
    "order_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "customer_id": pl.String,
    "items": pl.List(pl.Struct({"sku": pl.String, "qty": pl.Int64, "price": pl.Float64})),
    "channel": pl.String,
    "store_id": pl.String,
    "city": pl.String,
    "country": pl.String,
}
_SESSIONS_SCHEMA = {
    "session_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "customer_id": pl.String,
    "channel": pl.String,
    "city": pl.String,
    "order_id": pl.String,
}


def _orders_table(
    seed: int,
    minute: np.ndarray,
    idx: np.ndarray,
    ts: np.ndarray,
    customer: np.ndarray,
    city: np.ndarray,
    channel: np.ndarray,
) -> pl.DataFrame:
    n = minute.size
    if n == 0:
        return pl.DataFrame(schema=_ORDERS_SCHEMA)
    n_items = 1 + choice(ITEMS_P, hash_uniform(seed, _S_ITEMS, minute, idx))
    days, day_of = np.unique(ts // 86400, return_inverse=True)
    on, uplift = promo_matrix(days)
    # Weighted sampling without replacement (Efraimidis-Spirakis): top keys log(u)/w.
    sku_ids = np.arange(len(SKUS))
    u = hash_uniform(seed, _S_SKU, minute[:, None], idx[:, None], sku_ids[None, :])
    keys = np.log(u) / (sku_weights()[None, :] * uplift[day_of])
    top = np.argsort(-keys, axis=1)[:, :MAX_ITEMS]
    slots = np.broadcast_to(np.arange(MAX_ITEMS), top.shape)
    mask = slots < n_items[:, None]
    sku, line = top[mask], slots[mask]
    owner = np.repeat(np.arange(n), n_items)
    qty = 1 + choice(QTY_P, hash_uniform(seed, _S_QTY, minute[owner], idx[owner], line))
    promo = on[day_of[owner], sku]
    price = np.where(promo, promo_prices()[sku], base_prices()[sku])

    struct = pa.StructArray.from_arrays(
        [_lookup(SKU_CODES, sku).to_arrow(), pa.array(qty), pa.array(price)],
        names=["sku", "qty", "price"],
    )
    offsets = pa.array(np.concatenate([[0], np.cumsum(n_items)]).astype(np.int32))
    items = pl.from_arrow(pa.ListArray.from_arrays(offsets, struct))
    channel_name = _lookup(CHANNELS, channel)
    return pl.DataFrame(
        {
            "minute": minute,
            "idx": idx,
            "ts": ts,
            "customer": customer + 1,
            "items": items,
            "channel": channel_name,
            "city": _lookup(tuple(c.name for c in CITIES), city),
            "store": _lookup(STORE_IDS, city),
        }
    ).select(
        _order_ids(seed).alias("order_id"),
        _utc("ts").alias("ts"),
        pl.format("c_{}", "customer").alias("customer_id"),
        "items",
        "channel",
        pl.when(pl.col("channel") == "store").then(pl.col("store")).alias("store_id"),
        "city",
        pl.lit(COUNTRY).alias("country"),
    )


def _sessions_table(
    seed: int,
    s0: int,
    s1: int,
    minute: np.ndarray,
    idx: np.ndarray,
    ts: np.ndarray,
    customer: np.ndarray,
    city: np.ndarray,
    channel: np.ndarray,
) -> pl.DataFrame:
    """Sessions of every order of the window's minutes (kept by their own ts, so windows
    compose): j=0 converts into the order a few seconds later (same minute); j>=1 browse
    without buying, in the same minute and channel, by a random customer. The non-converting
    count is geometric with mean (1-p)/p, which makes conversion p per channel."""
    if minute.size == 0:
        return pl.DataFrame(schema=_SESSIONS_SCHEMA)
    sec = ts - minute * 60
    lag_u = hash_uniform(seed, _S_SESSION_LAG, minute, idx)
    conv_ts = ts - (lag_u * (np.minimum(sec, 30) + 1)).astype(np.int64)
    q = np.log1p(-CONVERSION[channel])
    browsers = np.minimum(
        np.floor(np.log(hash_uniform(seed, _S_BROWSERS, minute, idx)) / q), 500
    ).astype(np.int64)
    owner = np.repeat(np.arange(minute.size), browsers)
    b_minute, b_idx = minute[owner], idx[owner]
    b_j = 1 + np.arange(owner.size) - np.repeat(np.cumsum(browsers) - browsers, browsers)
    b_ts = b_minute * 60 + (
        hash_uniform(seed, _S_SESSION_SECOND, b_minute, b_idx, b_j) * 60
    ).astype(np.int64)
    b_customer = _customers(seed, _S_SESSION_CUSTOMER, b_minute, b_idx, b_j)

    all_ts = np.concatenate([conv_ts, b_ts])
    all_minute = np.concatenate([minute, b_minute])
    all_idx = np.concatenate([idx, b_idx])
    all_j = np.concatenate([np.zeros(minute.size, dtype=np.int64), b_j])
    keep = np.flatnonzero((all_ts >= s0) & (all_ts < s1))
    keep = keep[np.lexsort((all_j[keep], all_idx[keep], all_minute[keep], all_ts[keep]))]
    all_customer = np.concatenate([customer, b_customer])[keep]
    all_city = np.concatenate([city, _home_city(seed, b_customer)])[keep]
    all_channel = np.concatenate([channel, channel[owner]])[keep]
    return pl.DataFrame(
        {
            "minute": all_minute[keep],
            "idx": all_idx[keep],
            "j": all_j[keep],
            "ts": all_ts[keep],
            "customer": all_customer + 1,
            "channel": _lookup(CHANNELS, all_channel),
            "city": _lookup(tuple(c.name for c in CITIES), all_city),
        }
    ).select(
        pl.concat_str(
            [
                pl.lit(f"ses_{seed}_"),
                pl.col("minute").cast(pl.String),
                pl.lit("_"),
                pl.col("idx").cast(pl.String),
                pl.lit("_"),
                pl.col("j").cast(pl.String),
            ]
        ).alias("session_id"),
        _utc("ts").alias("ts"),
        pl.format("c_{}", "customer").alias("customer_id"),
        "channel",
        "city",
        pl.when(pl.col("j") == 0).then(_order_ids(seed)).alias("order_id"),
    )
