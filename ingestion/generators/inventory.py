"""Deterministic `inventory` events consistent with the generated sales (seed Annex B: initial
stock, then updates every 5 minutes).

Fulfilment rule (the dbt stock KPIs use the same one): every order line is taken from the stock
of ONE store. Store orders come from their store_id; web and app orders are fulfilled from the
store in the order's (delivery) city, i.e. `s_<city>`. So the 100 series are SKU x store.

Stock follows an (s, S) policy per series, sized from expected demand: when on_hand + on_order
falls to s or below, a purchase order for S - (on_hand + on_order) units is placed and arrives
after the SKU's supplier lead time (2-5 days, +/- 8 h per order). Sales beyond on_hand are lost
(counted in `lost_sales`); the orders topic still carries them, as a shop's till would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from ingestion.generators.catalog import (
    CITIES,
    SKU_CODES,
    SKUS,
    STORE_IDS,
    city_weights,
)
from ingestion.generators.orders import (
    QTY_P,
    OrderStream,
    encode_messages,
    epoch_seconds,
    expected_orders_per_day,
    expected_sku_lines_per_order,
    generate_orders,
    hash_uniform,
)
from lakehouse.errors import ConfigError

TICK_S = 300  # 5-minute intervals
SERVICE_Z = 1.65  # ~95 % cycle service level
REVIEW_DAYS = 7.0  # order-up-to level covers about a week of demand above s
DEMAND_HEADROOM = 1.15  # weekend and promo peaks above the mean
LEAD_JITTER_S = 8 * 3600
UPDATE_TYPES = ("initial", "update", "snapshot")
N_STORES = len(STORE_IDS)
N_SERIES = len(SKUS) * N_STORES  # series index = sku_index * N_STORES + store_index

_S_INITIAL, _S_LEAD = 101, 102

_INVENTORY_SCHEMA = {
    "sku": pl.String,
    "store_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "update_type": pl.String,
    "on_hand": pl.Int64,
    "on_order": pl.Int64,
    "sold_qty": pl.Int64,
    "received_qty": pl.Int64,
}


@dataclass(frozen=True)
class Policy:
    """Per-series (s, S) parameters, arrays of length N_SERIES."""

    daily_demand: np.ndarray  # expected units/day
    reorder_point: np.ndarray  # s
    order_up_to: np.ndarray  # S
    lead_time_s: np.ndarray  # nominal supplier lead time in seconds


def stock_policy(scale: float) -> Policy:
    """(s, S) from expected demand: s = mean lead-time demand + z * sigma (compound Poisson),
    S = s + a week of demand (at least 2 units)."""
    q = np.arange(1, QTY_P.size + 1)
    mean_q, mean_q2 = float(q @ QTY_P), float((q**2) @ QTY_P)
    orders = expected_orders_per_day() * scale * DEMAND_HEADROOM
    series_lines = np.outer(expected_sku_lines_per_order(), city_weights()).ravel() * orders
    daily = series_lines * mean_q
    lead_days = np.repeat([s.lead_time_days for s in SKUS], N_STORES).astype(float)
    jitter_days = LEAD_JITTER_S / 86400 / np.sqrt(3)  # sd of the uniform lead-time jitter
    sigma = np.sqrt(series_lines * mean_q2 * lead_days + (daily * jitter_days) ** 2)
    s = np.maximum(np.ceil(daily * lead_days + SERVICE_Z * sigma), 1).astype(np.int64)
    big_s = s + np.maximum(np.ceil(daily * REVIEW_DAYS), 2).astype(np.int64)
    return Policy(daily, s, big_s, (lead_days * 86400).astype(np.int64))


@dataclass(frozen=True)
class InventoryStream:
    """Inventory events of one window, sorted by (ts, sku, store_id).

    `inventory`: sku, store_id, ts (datetime UTC), update_type, on_hand, on_order, sold_qty,
    received_qty — the inventory.v1 fields. `lost_sales`: sku, store_id, demand_qty, sold_qty,
    lost_qty over [start, end). `policy`: sku, store_id, daily_demand, reorder_point,
    order_up_to, lead_time_days.
    """

    start: datetime
    end: datetime
    seed: int
    scale: float
    inventory: pl.DataFrame
    lost_sales: pl.DataFrame
    policy: pl.DataFrame

    topics = ("inventory",)

    def table(self, topic: str = "inventory") -> pl.DataFrame:
        if topic != "inventory":
            raise ConfigError(f"InventoryStream has no topic {topic!r}: use inventory")
        return self.inventory

    def messages(self, topic: str = "inventory") -> list[tuple[bytes, bytes]]:
        """Kafka (key = "sku|store_id", value) pairs in event-time order."""
        return encode_messages(self.table(topic), "inventory")

    def event_seconds(self, topic: str = "inventory") -> np.ndarray:
        return self.table(topic)["ts"].dt.epoch("s").to_numpy()


def _edges(t0: int, t_start: int, t_end: int) -> np.ndarray:
    """Interval boundaries: t0, the 5-minute grid, t_start (when warming up), t_end.

    An interval's update is stamped at its last second (end - 1 s) so it never shares a
    timestamp with the initial/snapshot at its start: grid points closer than 2 s to another
    boundary are dropped.
    """
    grid = np.arange((t0 // TICK_S + 1) * TICK_S, t_end, TICK_S, dtype=np.int64)
    fixed = [t0, t_end] + ([t_start] if t_start > t0 else [])
    far = np.all(np.abs(grid[:, None] - np.array(fixed)[None, :]) >= 2, axis=1)
    return np.unique(np.concatenate([grid[far], fixed]))


def _series_demand(orders: OrderStream, edges: np.ndarray) -> np.ndarray:
    """Units demanded per (interval, series), attributing each line to the city's store."""
    sku_index = {code: i for i, code in enumerate(SKU_CODES)}
    city_index = {c.name: i for i, c in enumerate(CITIES)}
    lines = (
        orders.orders.select(pl.col("ts").dt.epoch("s").alias("t"), "city", "items")
        .explode("items")
        .unnest("items")
        .select(
            "t",
            "qty",
            (
                pl.col("sku").replace_strict(sku_index, return_dtype=pl.Int64) * N_STORES
                + pl.col("city").replace_strict(city_index, return_dtype=pl.Int64)
            ).alias("series"),
        )
    )
    n_ticks = edges.size - 1
    if lines.height == 0:
        return np.zeros((n_ticks, N_SERIES), dtype=np.int64)
    t = lines["t"].to_numpy()
    tick = np.searchsorted(edges, t, side="right") - 1
    ok = (tick >= 0) & (tick < n_ticks)
    flat = tick[ok] * N_SERIES + lines["series"].to_numpy()[ok]
    counts = np.bincount(flat, weights=lines["qty"].to_numpy()[ok], minlength=n_ticks * N_SERIES)
    return counts.astype(np.int64).reshape(n_ticks, N_SERIES)


def generate_inventory(
    start: datetime,
    end: datetime,
    seed: int,
    scale: float = 1.0,
    initial_at: datetime | None = None,
    *,
    orders: OrderStream | None = None,
) -> InventoryStream:
    """Inventory events for [start, end), consistent with generate_orders(seed, scale).

    The stock is simulated from `initial_at` (default: start) in 5-minute intervals, looping
    over intervals but vectorised over the 100 SKU x store series. Emitted:
    - "initial" for every series at start (or, when initial_at < start, a "snapshot" at start
      of the stock carried over from the warm-up [initial_at, start), which is not emitted);
    - "update" at the last second of each 5-minute interval for each series whose stock moved
      (sold_qty and/or received_qty > 0);
    - "snapshot" for every series at each 00:00 UTC inside the window (sold/received 0).
    Per series, on_hand = previous on_hand - sold_qty + received_qty (sold_qty is what stock
    could serve). With start on the 5-minute grid, the events from start on equal those of one
    run started at initial_at. Pass `orders` (same seed/scale, window [initial_at or start,
    end)) to reuse an already generated stream.
    """
    t_start, t_end = epoch_seconds(start), epoch_seconds(end)
    t0 = t_start if initial_at is None else epoch_seconds(initial_at)
    if t_end - t_start < 2:
        raise ConfigError(f"inventory window {start}..{end} is under 2 s: use a longer one")
    if t0 > t_start:
        raise ConfigError(
            f"initial_at {initial_at} is after start {start}: use initial_at <= start"
        )
    if t_start - t0 < 2:
        t0 = t_start
    sim_start = start if t0 == t_start or initial_at is None else initial_at
    if orders is None:
        orders = generate_orders(sim_start, end, seed, scale, with_sessions=False)
    elif (
        epoch_seconds(orders.start) != t0
        or epoch_seconds(orders.end) != t_end
        or orders.seed != seed
        or orders.scale != scale
    ):
        raise ValueError("orders must be generate_orders(initial_at or start, end, seed, scale)")

    edges = _edges(t0, t_start, t_end)
    n_ticks = edges.size - 1
    demand = _series_demand(orders, edges)
    policy = stock_policy(scale)
    s, big_s = policy.reorder_point, policy.order_up_to
    series = np.arange(N_SERIES)
    initial_u = hash_uniform(seed, _S_INITIAL, series)
    on_hand = s + np.rint(initial_u * (big_s - s)).astype(np.int64)
    on_order = np.zeros(N_SERIES, dtype=np.int64)
    arrivals = np.zeros((n_ticks + 1, N_SERIES), dtype=np.int64)  # last row: after the window
    hist_on_hand = np.empty((n_ticks, N_SERIES), dtype=np.int64)
    hist_on_order = np.empty((n_ticks, N_SERIES), dtype=np.int64)
    sold = np.empty((n_ticks, N_SERIES), dtype=np.int64)

    def reorder(at: int) -> None:
        """Place purchase orders for series at or below s; they arrive lead time later."""
        need = np.flatnonzero(on_hand + on_order <= s)
        if need.size == 0:
            return
        qty = big_s[need] - on_hand[need] - on_order[need]
        jitter = (hash_uniform(seed, _S_LEAD, need, at) * 2 - 1) * LEAD_JITTER_S
        lead = np.clip(policy.lead_time_s[need] + jitter.astype(np.int64), 2 * 86400, 5 * 86400)
        arrive = np.searchsorted(edges, at + lead, side="right") - 1
        arrivals[np.minimum(arrive, n_ticks), need] += qty
        on_order[need] += qty

    reorder(t0)
    initial = (on_hand.copy(), on_order.copy())
    for k in range(n_ticks):
        received = arrivals[k]
        on_hand += received
        on_order -= received
        sold_k = np.minimum(demand[k], on_hand)
        on_hand -= sold_k
        sold[k] = sold_k
        reorder(int(edges[k + 1]))
        hist_on_hand[k] = on_hand
        hist_on_order[k] = on_order
    received_all = arrivals[:n_ticks]

    inventory = _events(
        edges, t_start, t0, initial, hist_on_hand, hist_on_order, sold, received_all
    )
    in_window = edges[:-1] >= t_start
    demand_w, sold_w = demand[in_window].sum(axis=0), sold[in_window].sum(axis=0)
    sku_names, store_names = _series_names(series)
    keys = {"sku": sku_names, "store_id": store_names}
    lost_sales = pl.DataFrame(
        {**keys, "demand_qty": demand_w, "sold_qty": sold_w, "lost_qty": demand_w - sold_w}
    )
    policy_table = pl.DataFrame(
        {
            **keys,
            "daily_demand": policy.daily_demand,
            "reorder_point": s,
            "order_up_to": big_s,
            "lead_time_days": policy.lead_time_s // 86400,
        }
    )
    return InventoryStream(start, end, seed, scale, inventory, lost_sales, policy_table)


def _series_names(series: np.ndarray) -> tuple[pl.Series, pl.Series]:
    sku = pl.Series(SKU_CODES, dtype=pl.String).gather(series // N_STORES)
    store = pl.Series(STORE_IDS, dtype=pl.String).gather(series % N_STORES)
    return sku, store


def _events(
    edges: np.ndarray,
    t_start: int,
    t0: int,
    initial: tuple[np.ndarray, np.ndarray],
    on_hand: np.ndarray,
    on_order: np.ndarray,
    sold: np.ndarray,
    received: np.ndarray,
) -> pl.DataFrame:
    """Flatten the simulated history into inventory.v1 rows (only events at ts >= t_start)."""
    parts: list[tuple[np.ndarray, ...]] = []  # ts, type, series, on_hand, on_order, sold, recv
    all_series = np.arange(N_SERIES)
    zeros = np.zeros(N_SERIES, dtype=np.int64)
    if t0 == t_start:
        parts.append(
            (
                np.full(N_SERIES, t0),
                np.zeros(N_SERIES, dtype=np.int64),
                all_series,
                initial[0],
                initial[1],
                zeros,
                zeros,
            )
        )
    ticks, series = np.nonzero((sold > 0) | (received > 0))
    ts = edges[ticks + 1] - 1
    ok = ts >= t_start
    ticks, series, ts = ticks[ok], series[ok], ts[ok]
    parts.append(
        (
            ts,
            np.ones(ts.size, dtype=np.int64),
            series,
            on_hand[ticks, series],
            on_order[ticks, series],
            sold[ticks, series],
            received[ticks, series],
        )
    )
    inner = np.arange(1, edges.size - 1)
    snap = inner[
        ((edges[inner] % 86400 == 0) | (edges[inner] == t_start)) & (edges[inner] >= t_start)
    ]
    if snap.size:
        ticks = np.repeat(snap - 1, N_SERIES)
        series = np.tile(all_series, snap.size)
        n = ticks.size
        parts.append(
            (
                edges[ticks + 1],
                np.full(n, 2),
                series,
                on_hand[ticks, series],
                on_order[ticks, series],
                np.zeros(n, dtype=np.int64),
                np.zeros(n, dtype=np.int64),
            )
        )
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.lexsort((cols[2], cols[0]))
    ts, kind, series, oh, oo, sq, rq = (c[order] for c in cols)
    sku, store = _series_names(series)
    return pl.DataFrame(
        {
            "sku": sku,
            "store_id": store,
            "ts": ts,
            "update_type": pl.Series(UPDATE_TYPES, dtype=pl.String).gather(kind),
            "on_hand": oh,
            "on_order": oo,
            "sold_qty": sq,
            "received_qty": rq,
        }
    ).with_columns(pl.from_epoch("ts", time_unit="s").dt.replace_time_zone("UTC"))
