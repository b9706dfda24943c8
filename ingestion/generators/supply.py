"""Supply-chain history at daily resolution (seed §3): demand, stock, purchase orders, receipts,
shipments with in-transit readings, and weather per city.

Two years of orders at Annex B rates (50-200/min) would be ~250 M events: far too many for a
demo. The **daily-aggregate history path** sends, per store and day, ONE `orders` event whose
items carry that day's units per SKU (channel `store`, customer `c_history`), so silver_orders
summed per day, SKU and store gives exactly the simulated demand (≈ 3 650 orders for 730 days).
Do not combine it with an order-level backfill over the same days (demand would double).

Demand per SKU × store and day (100 series):
  λ = base · weekday · yearly season (per category) · holiday (FR public holidays ×0.35, eve
      ×1.2) · promotion uplift (catalog.promo_matrix, price −20 %) · price elasticity
      (base-price changes every ~4 months, elasticity −1.5) · weather (cold boosts apparel and
      accessories, rain lowers store traffic);
  units ~ Poisson(λ · Gamma(8)/8) (over-dispersed); slow movers have λ ≈ 0.1-0.5/day.
Stock follows an (s, S) policy per series (daily review): a purchase order goes to the
category's supplier, leaves the supplier's DC after a preparation time N(μ_prep, σ_prep) and
travels by one of three carriers; transit time depends on distance, carrier, rain, traffic
(departure hour, Friday) and dock saturation at the store. Lead time = receipt − order, so
each supplier has its own mean and spread. 8 % of receipts are not in full.
Randomness is counter-based (`hash_uniform` of seed, stream, day, series): the same seed and
window give the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import holidays
import numpy as np
import polars as pl

from ingestion.generators.catalog import (
    CITIES,
    COUNTRY,
    SKU_CODES,
    SKUS,
    STORE_IDS,
    base_prices,
    city_weights,
    promo_matrix,
)
from ingestion.generators.orders import (
    QTY_P,
    WEEKDAY_FACTOR,
    encode_messages,
    expected_orders_per_day,
    expected_sku_lines_per_order,
    hash_uniform,
    poisson,
)
from lakehouse.errors import ConfigError

SUPPLY_TOPICS = ("purchase_orders", "receipts", "shipments", "shipment_readings", "weather")
HISTORY_TOPICS = ("orders", "inventory", *SUPPLY_TOPICS)
N_STORES = len(STORE_IDS)
N_SERIES = len(SKUS) * N_STORES  # series index = sku_index * N_STORES + store_index
_EPOCH = date(1970, 1, 1)

CITY_LATLON = {
    "Paris": (48.857, 2.352),
    "Lyon": (45.764, 4.836),
    "Marseille": (43.296, 5.370),
    "Lille": (50.629, 3.057),
    "Bordeaux": (44.838, -0.579),
}


@dataclass(frozen=True)
class Supplier:
    supplier_id: str
    dc: str  # distribution centre town
    lat: float
    lon: float
    prep_mean_h: float  # order → departure, hours
    prep_sd_h: float


# one supplier per category: mean and spread of lead time differ by supplier
SUPPLIERS: dict[str, Supplier] = {
    "apparel": Supplier("sup_textile_nord", "Roubaix", 50.69, 3.18, 44.0, 10.0),
    "shoes": Supplier("sup_chaussures_drome", "Romans-sur-Isere", 45.04, 5.05, 80.0, 30.0),
    "home": Supplier("sup_maison_centre", "Orleans", 47.90, 1.90, 58.0, 18.0),
    "beauty": Supplier("sup_cosmetique_idf", "Chartres", 48.44, 1.49, 22.0, 5.0),
    "accessories": Supplier("sup_maroquinerie_sud", "Toulouse", 43.60, 1.44, 60.0, 36.0),
}
CARRIERS = ("geodis", "dhl", "kuehne_nagel")
_CARRIER_SPEED = np.array([1.00, 0.93, 1.12])  # transit-time multiplier
_CARRIER_NOISE = np.array([0.12, 0.08, 0.25])  # lognormal sd of transit time
# yearly season per category: amplitude and peak day-of-year
_SEASON = {
    "apparel": (0.30, 350),
    "shoes": (0.20, 250),
    "home": (0.25, 335),
    "beauty": (0.20, 355),
    "accessories": (0.30, 345),
}
ELASTICITY = -1.5
HOLIDAY_FACTOR = 0.35
HOLIDAY_EVE_FACTOR = 1.2
IN_FULL_RATE = 0.92
SERVICE_Z = 1.65
REVIEW_DAYS = 7.0
UNIT_COST_RATIO = 0.45  # purchase cost = 45 % of the base retail price

# independent random streams
_S_DEMAND, _S_GAMMA, _S_GAMMA2, _S_DEMAND_Z = 201, 202, 203, 204
_S_PRICE_STEP, _S_PRICE_DIR = 205, 206
_S_TEMP, _S_RAIN, _S_RAIN_AMT, _S_WIND = 207, 208, 209, 210
_S_PREP, _S_PREP2, _S_CARRIER, _S_HOUR, _S_TRANSIT, _S_TRANSIT2 = 211, 212, 213, 214, 215, 216
_S_DOCK, _S_INFULL, _S_INFULL_AMT, _S_READ = 217, 218, 219, 220
_S_STOP, _S_REEFER, _S_REEFER_AT = 221, 222, 223
REEFER_FAILURE_RATE = 0.03  # share of shipments whose refrigeration fails on the way
REEFER_WARMING_C_PER_H = 1.5  # after a failure the load warms towards ~20 °C ambient


def _normal(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Standard normals (Box-Muller on two counter-based uniforms)."""
    u1 = hash_uniform(seed, stream, *keys)
    u2 = hash_uniform(seed, stream + 1000, *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _gamma8(seed: int, *keys: np.ndarray) -> np.ndarray:
    """Gamma(shape 8, mean 1) multipliers via Wilson-Hilferty on a normal (vectorised)."""
    z = _normal(seed, _S_GAMMA, *keys)
    k = 8.0
    return np.maximum(k * (1 - 1 / (9 * k) + z * np.sqrt(1 / (9 * k))) ** 3 / k, 0.05)


def fr_holidays(first: date, last: date) -> set[date]:
    """French public holidays between two dates (the `holidays` package, offline)."""
    found = holidays.France(years=range(first.year, last.year + 1))
    return {d for d in found if first <= d <= last}


def base_daily_units(scale: float) -> np.ndarray:
    """Expected units/day per series at `scale` (same popularity as the order generator)."""
    q = np.arange(1, QTY_P.size + 1)
    lines = np.outer(expected_sku_lines_per_order(), city_weights()).ravel()
    return lines * expected_orders_per_day() * scale * float(q @ QTY_P)


def price_multiplier(seed: int, epoch_days: np.ndarray, n_skus: int) -> np.ndarray:
    """Base-price changes per SKU: a step every ~120 days (±5-10 %), cumulative, [days, skus]."""
    periods = epoch_days // 120
    first = int(periods.min()) - 6
    all_periods = np.arange(first, int(periods.max()) + 1)
    steps = 1.0 + np.where(
        hash_uniform(seed, _S_PRICE_DIR, all_periods[:, None], np.arange(n_skus)[None, :]) < 0.5,
        -0.08,
        0.06,
    ) * (hash_uniform(seed, _S_PRICE_STEP, all_periods[:, None], np.arange(n_skus)[None, :]) < 0.5)
    # price at a period = product of the last 6 steps (keeps prices bounded around the base)
    logs = np.log(steps)
    cum = np.cumsum(logs, axis=0)
    window = cum - np.vstack([np.zeros((6, n_skus)), cum[:-6]])
    return np.exp(window[periods - first])


def weather_table(seed: int, epoch_days: np.ndarray) -> dict[str, np.ndarray]:
    """Daily weather per city [days, cities]: temp_c (seasonal + noise), precip_mm, wind_kmh."""
    days = epoch_days[:, None]
    city = np.arange(len(CITIES))[None, :]
    lat = np.array([CITY_LATLON[c.name][0] for c in CITIES])[None, :]
    doy = (days - 0) % 365.25
    mean = 14.0 - (lat - 46.0) * 0.9 + 8.5 * np.cos(2 * np.pi * (doy - 200) / 365.25)
    # smooth anomaly: mean of 3 days of noise
    noise = sum(_normal(seed, _S_TEMP, days - k, city) for k in range(3)) / np.sqrt(3) * 2.5
    temp = np.round(mean + noise, 1)
    rains = hash_uniform(seed, _S_RAIN, days, city) < 0.30 + 0.1 * np.cos(2 * np.pi * doy / 365.25)
    amount = -np.log(hash_uniform(seed, _S_RAIN_AMT, days, city)) * 5.0
    precip = np.round(np.where(rains, amount, 0.0), 1)
    wind = np.round(8.0 + 12.0 * hash_uniform(seed, _S_WIND, days, city), 1)
    return {"temp_c": temp, "precip_mm": precip, "wind_kmh": wind}


@dataclass(frozen=True)
class DemandHistory:
    """Daily demand drivers and draws for a window: arrays [days, series]."""

    epoch_days: np.ndarray
    units: np.ndarray
    expected: np.ndarray
    price: np.ndarray  # unit price paid (promo and price changes)
    promo: np.ndarray  # bool
    holiday: np.ndarray  # bool per day
    weather: dict[str, np.ndarray]  # [days, cities]


def simulate_demand(
    seed: int,
    epoch_days: np.ndarray,
    base: np.ndarray,
    sku_of_series: np.ndarray,
    city_of_series: np.ndarray,
    categories: list[str],
    list_prices: np.ndarray,
    promo_on: np.ndarray,
    promo_uplift: np.ndarray,
) -> DemandHistory:
    """The demand model for any number of series (the bench uses 1 000 synthetic ones)."""
    days = np.asarray(epoch_days, dtype=np.int64)
    first, last = _EPOCH + timedelta(int(days[0])), _EPOCH + timedelta(int(days[-1]) + 1)
    hol = fr_holidays(first, last)
    as_dates = [_EPOCH + timedelta(int(d)) for d in days]
    holiday = np.array([d in hol for d in as_dates])
    eve = np.array([d + timedelta(1) in hol for d in as_dates])
    weekday = (days + 3) % 7
    week = WEEKDAY_FACTOR[weekday] / WEEKDAY_FACTOR.mean()
    amp = np.array([_SEASON[c][0] for c in categories])[sku_of_series]
    peak = np.array([_SEASON[c][1] for c in categories])[sku_of_series]
    doy = (days % 365.25)[:, None]
    season = 1.0 + amp[None, :] * np.cos(2 * np.pi * (doy - peak[None, :]) / 365.25)
    cal = np.where(holiday, HOLIDAY_FACTOR, np.where(eve, HOLIDAY_EVE_FACTOR, 1.0))
    n_skus = int(sku_of_series.max()) + 1
    price_mult = price_multiplier(seed, days, n_skus)[:, sku_of_series]
    on = promo_on[:, sku_of_series]
    uplift = promo_uplift[:, sku_of_series]
    weather = weather_table(seed, days)
    temp = weather["temp_c"][:, city_of_series % len(CITIES)]
    rain = weather["precip_mm"][:, city_of_series % len(CITIES)]
    warm_goods = np.isin(np.array(categories)[sku_of_series], ["apparel", "accessories"])
    weather_factor = (1.0 + np.where(warm_goods, 0.012, 0.0) * (15.0 - temp)) * np.where(
        rain > 5.0, 0.9, 1.0
    )
    lam = (
        base[None, :]
        * week[:, None]
        * season
        * cal[:, None]
        * np.where(on, uplift, 1.0)
        * price_mult**ELASTICITY
        * weather_factor
    )
    lam = np.maximum(lam, 0.0)
    d, s = np.meshgrid(days, np.arange(base.size), indexing="ij")
    noisy = lam * _gamma8(seed, d, s)
    units = poisson(
        hash_uniform(seed, _S_DEMAND, d, s).ravel(),
        noisy.ravel(),
        hash_uniform(seed, _S_DEMAND_Z, d, s).ravel(),
    ).reshape(lam.shape)
    price = np.round(list_prices[sku_of_series][None, :] * price_mult * np.where(on, 0.8, 1.0), 2)
    return DemandHistory(days, units, lam, price, on, holiday, weather)


def catalog_demand(seed: int, epoch_days: np.ndarray, scale: float) -> DemandHistory:
    """Demand of the catalogue's 20 SKUs × 5 stores."""
    on, uplift = promo_matrix(epoch_days)
    sku_of = np.repeat(np.arange(len(SKUS)), N_STORES)
    city_of = np.tile(np.arange(N_STORES), len(SKUS))
    return simulate_demand(
        seed,
        epoch_days,
        base_daily_units(scale),
        sku_of,
        city_of,
        [s.category for s in SKUS],
        base_prices(),
        on,
        uplift,
    )


@dataclass
class SupplyHistory:
    """Every topic's table for one window (polars frames with the schema fields)."""

    start: date
    end: date  # exclusive
    seed: int
    scale: float
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    demand: DemandHistory | None = None

    def table(self, topic: str) -> pl.DataFrame:
        if topic not in self.tables:
            raise ConfigError(f"supply history has no topic {topic!r}: use {HISTORY_TOPICS}")
        return self.tables[topic]

    def messages(self, topic: str) -> list[tuple[bytes, bytes]]:
        return encode_messages(self.table(topic), topic)

    def event_seconds(self, topic: str) -> np.ndarray:
        return self.table(topic)["ts"].dt.epoch("s").to_numpy()


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(a))


def _utc(seconds: np.ndarray) -> pl.Series:
    return (
        pl.Series(np.asarray(seconds, dtype=np.int64) * 1_000_000)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )


def generate_supply_history(
    start: date,
    end: date,
    seed: int,
    scale: float = 0.01,
    readings_days: int = 14,
    snapshot_days: int = 28,
) -> SupplyHistory:
    """Daily history of [start, end): every topic of HISTORY_TOPICS (see module docstring).

    Shipment readings (every 3 h in transit) are sent for shipments departing in the last
    `readings_days`, inventory snapshots (end of day) for the last `snapshot_days`: the rest of
    history has no use for them and they would dominate the event count."""
    if not scale > 0:
        raise ConfigError(f"scale={scale} is invalid: use a positive number")
    n_days = (end - start).days
    if n_days < 1:
        raise ConfigError(f"history window {start} → {end} is empty: use at least one day")
    days = np.arange((start - _EPOCH).days, (end - _EPOCH).days, dtype=np.int64)
    demand = catalog_demand(seed, days, scale)
    out = SupplyHistory(start, end, seed, scale, demand=demand)
    out.tables["orders"] = _history_orders(seed, demand)
    out.tables["weather"] = _weather_events(demand)
    _simulate_replenishment(out, seed, scale, readings_days, snapshot_days)
    return out


def _history_orders(seed: int, demand: DemandHistory) -> pl.DataFrame:
    d_idx, s_idx = np.nonzero(demand.units > 0)
    sku = s_idx // N_STORES
    store = s_idx % N_STORES
    lines = pl.DataFrame(
        {
            "day": demand.epoch_days[d_idx],
            "store": store,
            "sku": pl.Series(SKU_CODES).gather(sku),
            "qty": demand.units[d_idx, s_idx],
            "price": demand.price[d_idx, s_idx],
        }
    ).sort("day", "store", "sku")
    store_ids = pl.Series(STORE_IDS)
    city_names = pl.Series([c.name for c in CITIES])
    grouped = lines.group_by("day", "store", maintain_order=True).agg(
        pl.struct("sku", "qty", "price").alias("items")
    )
    return grouped.select(
        pl.format("h_{}_{}_{}", pl.lit(seed), "day", pl.col("store")).alias("order_id"),
        pl.from_epoch(pl.col("day") * 86400 + 12 * 3600, time_unit="s")
        .dt.replace_time_zone("UTC")
        .alias("ts"),
        pl.lit("c_history").alias("customer_id"),
        "items",
        pl.lit("store").alias("channel"),
        pl.lit(store_ids.gather(grouped["store"])).alias("store_id"),
        pl.lit(city_names.gather(grouped["store"])).alias("city"),
        pl.lit(COUNTRY).alias("country"),
    )


def _weather_events(demand: DemandHistory) -> pl.DataFrame:
    n_days, n_cities = demand.weather["temp_c"].shape
    day = np.repeat(demand.epoch_days, n_cities)
    return pl.DataFrame(
        {
            "city": [c.name for c in CITIES] * n_days,
            "ts": _utc(day * 86400),
            "temp_c": demand.weather["temp_c"].ravel(),
            "precip_mm": demand.weather["precip_mm"].ravel(),
            "wind_kmh": demand.weather["wind_kmh"].ravel(),
        }
    ).sort("ts", "city")


def _simulate_replenishment(
    out: SupplyHistory, seed: int, scale: float, readings_days: int, snapshot_days: int
) -> None:
    """(s, S) daily review over the whole window; emits POs, shipments, receipts, stock."""
    assert out.demand is not None
    demand = out.demand
    days = demand.epoch_days
    n_days = days.size
    base = base_daily_units(scale)
    sku_of = np.repeat(np.arange(len(SKUS)), N_STORES)
    store_of = np.tile(np.arange(N_STORES), len(SKUS))
    categories = [s.category for s in SKUS]
    sup = [SUPPLIERS[categories[k]] for k in sku_of]
    prep_mean = np.array([s.prep_mean_h for s in sup])
    prep_sd = np.array([s.prep_sd_h for s in sup])
    dc_lat, dc_lon = np.array([s.lat for s in sup]), np.array([s.lon for s in sup])
    st_lat = np.array([CITY_LATLON[CITIES[i].name][0] for i in store_of])
    st_lon = np.array([CITY_LATLON[CITIES[i].name][1] for i in store_of])
    distance = _haversine_km(dc_lat, dc_lon, st_lat, st_lon)
    lead_days = (prep_mean + distance / 70.0 + 8.0) / 24.0
    peak = base * 1.3
    s_point = np.ceil(peak * lead_days + SERVICE_Z * np.sqrt(peak * lead_days * 2.0)).astype(int)
    big_s = s_point + np.maximum(np.ceil(peak * REVIEW_DAYS), 2).astype(int)

    horizon = n_days + 30
    arriving = np.zeros((horizon, N_SERIES), dtype=np.int64)
    on_hand = big_s.copy()
    on_order = np.zeros(N_SERIES, dtype=np.int64)
    po_rows: list[tuple[np.ndarray, ...]] = []
    snap_rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for i in range(n_days):
        received = arriving[i]
        on_hand = on_hand + received
        on_order = on_order - received
        sold = np.minimum(demand.units[i], on_hand)
        on_hand = on_hand - sold
        if i >= n_days - snapshot_days:
            snap_rows.append((int(days[i]), on_hand.copy(), on_order.copy(), sold, received))
        position = on_hand + on_order
        need = np.flatnonzero(position <= s_point)
        if need.size == 0:
            continue
        qty = big_s[need] - position[need]
        day = int(days[i])
        ordered = (
            day * 86400
            + 18 * 3600
            + (hash_uniform(seed, _S_HOUR, day, need) * 3600).astype(np.int64)
        )
        prep = np.maximum(prep_mean[need] + prep_sd[need] * _normal(seed, _S_PREP, day, need), 4.0)
        departed = ordered + (prep * 3600).astype(np.int64)
        carrier = np.minimum((hash_uniform(seed, _S_CARRIER, day, need) * 3).astype(int), 2)
        dep_day = departed // 86400
        w_idx = np.clip(dep_day - days[0], 0, n_days - 1)
        rain = demand.weather["precip_mm"][w_idx, store_of[need]]
        dep_hour = (departed % 86400) // 3600
        rush = ((dep_hour >= 7) & (dep_hour <= 9)) | ((dep_hour >= 16) & (dep_hour <= 19))
        friday = (dep_day + 3) % 7 == 4
        dock = np.clip(
            0.35
            + 0.25 * hash_uniform(seed, _S_DOCK, day, need)
            + 0.25 * ((dep_day + 3) % 7 == 0)
            + 0.15 * (demand.promo[i, need]),
            0.0,
            1.0,
        )
        base_h = distance[need] / 70.0 + 2.0
        transit = (
            base_h * _CARRIER_SPEED[carrier]
            + 0.15 * rain
            + 1.5 * rush
            + 2.5 * friday
            + 10.0 * np.maximum(dock - 0.6, 0.0)
        ) * np.exp(_CARRIER_NOISE[carrier] * _normal(seed, _S_TRANSIT, day, need))
        arrived = departed + (transit * 3600).astype(np.int64)
        promised = departed + ((base_h * 1.08 + 2.0) * 3600).astype(np.int64)
        in_full = hash_uniform(seed, _S_INFULL, day, need) < IN_FULL_RATE
        received_qty = np.where(
            in_full,
            qty,
            np.maximum(
                np.floor(qty * (0.6 + 0.35 * hash_uniform(seed, _S_INFULL_AMT, day, need))), 0
            ).astype(np.int64),
        )
        arr_idx = arrived // 86400 - days[0]
        # stock arrives the day after the truck (put-away); beyond the horizon = still open
        land = np.minimum(arr_idx + 1, horizon - 1)
        np.add.at(arriving, (land, need), received_qty)
        on_order[need] += received_qty
        po_rows.append(
            (
                np.full(need.size, day),
                need,
                qty,
                received_qty,
                ordered,
                departed,
                promised,
                arrived,
                carrier,
                dock,
                distance[need],
            )
        )
    end_s = int(days[-1] + 1) * 86400
    cols = [np.concatenate(c) for c in zip(*po_rows, strict=True)] if po_rows else None
    _emit_supply_tables(out, seed, cols, end_s, sku_of, store_of, readings_days, st_lat, st_lon)
    out.tables["inventory"] = _snapshots(snap_rows)


def _emit_supply_tables(
    out: SupplyHistory,
    seed: int,
    cols: list[np.ndarray] | None,
    end_s: int,
    sku_of: np.ndarray,
    store_of: np.ndarray,
    readings_days: int,
    st_lat: np.ndarray,
    st_lon: np.ndarray,
) -> None:
    if cols is None:
        empty = {t: pl.DataFrame() for t in SUPPLY_TOPICS if t != "weather"}
        out.tables.update(empty)
        return
    day, series, qty, received_qty, ordered, departed, promised, arrived, carrier, dock, dist = cols
    keep = ordered < end_s
    (day, series, qty, received_qty, ordered, departed, promised, arrived, carrier, dock, dist) = (
        a[keep]
        for a in (
            day,
            series,
            qty,
            received_qty,
            ordered,
            departed,
            promised,
            arrived,
            carrier,
            dock,
            dist,
        )
    )
    sku_idx = sku_of[series]
    categories = [SKUS[k].category for k in range(len(SKUS))]
    supplier_ids = pl.Series([SUPPLIERS[c].supplier_id for c in categories]).gather(sku_idx)
    dcs = pl.Series([SUPPLIERS[c].dc for c in categories]).gather(sku_idx)
    skus = pl.Series(SKU_CODES).gather(sku_idx)
    stores = pl.Series(STORE_IDS).gather(store_of[series])
    cities = pl.Series([c.name for c in CITIES]).gather(store_of[series])
    po_id = pl.Series([f"po_{seed}_{d}_{s}" for d, s in zip(day, series, strict=True)])
    unit_cost = np.round(base_prices()[sku_idx] * UNIT_COST_RATIO, 2)
    out.tables["purchase_orders"] = pl.DataFrame(
        {
            "po_id": po_id,
            "ts": _utc(ordered),
            "supplier_id": supplier_ids,
            "sku": skus,
            "store_id": stores,
            "qty": qty,
            "unit_cost": unit_cost,
            "expected_at": _utc(promised),
        }
    ).sort("ts", "po_id")
    done = arrived < end_s
    out.tables["receipts"] = pl.DataFrame(
        {
            "receipt_id": po_id.filter(done).str.replace("po_", "rc_"),
            "po_id": po_id.filter(done),
            "ts": _utc(arrived[done]),
            "supplier_id": supplier_ids.filter(done),
            "sku": skus.filter(done),
            "store_id": stores.filter(done),
            "qty_ordered": qty[done],
            "qty_received": received_qty[done],
        }
    ).sort("ts", "receipt_id")
    shipment_id = po_id.str.replace("po_", "sh_")
    route = dcs + "->" + cities
    started = departed < end_s
    common = pl.DataFrame(
        {
            "shipment_id": shipment_id,
            "po_id": po_id,
            "supplier_id": supplier_ids,
            "carrier": pl.Series(CARRIERS).gather(carrier),
            "route": route,
            "origin": dcs,
            "destination": stores,
            "distance_km": np.round(dist, 1),
            "departed_at": _utc(departed),
            "promised_at": _utc(promised),
            "dock_saturation": np.round(dock, 3),
            "qty": qty,
        }
    )
    departed_events = common.filter(pl.Series(started)).with_columns(
        pl.col("departed_at").alias("ts"),
        pl.lit("departed").alias("status"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("arrived_at"),
    )
    arrived_events = common.filter(pl.Series(done)).with_columns(
        _utc(arrived[done]).alias("ts"),
        pl.lit("arrived").alias("status"),
        _utc(arrived[done]).alias("arrived_at"),
    )
    out.tables["shipments"] = pl.concat([departed_events, arrived_events]).sort("ts", "shipment_id")
    # readings every 3 h while in transit, for recent departures
    recent = np.flatnonzero(started & (departed >= end_s - readings_days * 86400))
    n_reads = np.maximum((np.minimum(arrived[recent], end_s) - departed[recent]) // 10800, 0) + 1
    owner = np.repeat(recent, n_reads)
    k = np.arange(owner.size) - np.repeat(np.cumsum(n_reads) - n_reads, n_reads)
    t = departed[owner] + k * 10800
    # Causal readings: a reading reflects only what happened before its timestamp. The truck
    # drives at the planned pace (promised transit); a late shipment's extra time is one stop
    # at a random point of the trip, so readings before the stop show no delay (the arrival
    # does not leak), readings during it show a stalled truck. An early one drives faster.
    dep, arr = departed[owner], arrived[owner]
    planned = np.maximum(promised[owner] - dep, 1)
    actual = np.maximum(arr - dep, 1)
    late_by = np.maximum(actual - planned, 0)
    stop_at = dep + (0.15 + 0.7 * hash_uniform(seed, _S_STOP, owner)) * planned
    pace = np.where(late_by > 0, planned, actual).astype(np.float64)
    moving = np.where(
        t < stop_at, t - dep, np.where(t < stop_at + late_by, stop_at - dep, t - dep - late_by)
    )
    frac = np.clip(moving / pace, 0, 1)
    sup_lat = np.array([SUPPLIERS[categories[i]].lat for i in sku_idx[owner]])
    sup_lon = np.array([SUPPLIERS[categories[i]].lon for i in sku_idx[owner]])
    st_la, st_lo = st_lat[series[owner]], st_lon[series[owner]]
    temp = 4.0 + 2.0 * _normal(seed, _S_READ, owner, k)  # reefer set point 4 °C
    # refrigeration failures: from a random point of the trip the load warms up (causal too:
    # readings before the failure are normal)
    fails = hash_uniform(seed, _S_REEFER, owner) < REEFER_FAILURE_RATE
    failed_at = dep + hash_uniform(seed, _S_REEFER_AT, owner) * actual
    warm_h = np.where(fails & (t >= failed_at), (t - failed_at) / 3600.0, 0.0)
    temp = np.minimum(temp + REEFER_WARMING_C_PER_H * warm_h, np.maximum(temp, 20.0))
    out.tables["shipment_readings"] = pl.DataFrame(
        {
            "shipment_id": shipment_id.gather(owner),
            "ts": _utc(t),
            "temperature_c": np.round(temp, 2),
            "lat": np.round(sup_lat + (st_la - sup_lat) * frac, 4),
            "lon": np.round(sup_lon + (st_lo - sup_lon) * frac, 4),
        }
    ).sort("ts", "shipment_id")


def _snapshots(rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]):
    if not rows:
        return pl.DataFrame()
    day = np.concatenate([np.full(N_SERIES, r[0]) for r in rows])
    series = np.tile(np.arange(N_SERIES), len(rows))
    return pl.DataFrame(
        {
            "sku": pl.Series(SKU_CODES).gather(series // N_STORES),
            "store_id": pl.Series(STORE_IDS).gather(series % N_STORES),
            "ts": _utc(day * 86400 + 86399),
            "update_type": "snapshot",
            "on_hand": np.concatenate([r[1] for r in rows]),
            "on_order": np.concatenate([r[2] for r in rows]),
            "sold_qty": np.concatenate([r[3] for r in rows]),
            "received_qty": np.concatenate([r[4] for r in rows]),
        }
    ).sort("ts", "sku", "store_id")


def history_window(days: int, end: datetime | None = None) -> tuple[date, date]:
    """[start, end) of `days` whole UTC days ending at today's midnight (exclusive)."""
    if days < 1:
        raise ConfigError(f"--backfill-days {days} is invalid: use at least 1 day")
    last = (end or datetime.now(UTC)).date()
    return last - timedelta(days=days), last
