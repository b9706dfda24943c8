"""The fixed retail catalogue behind the generated events: 5 French cities, one store each, 20 SKUs
and a deterministic promotion calendar.

Everything here is constant (it does not depend on the generators' seed) so that dbt seeds,
forecasting features and the generators agree on the same stores, SKUs, prices and promotions.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

COUNTRY = "FR"
PROMO_DISCOUNT = 0.20  # promo price = base price x 0.8
PROMO_SKUS_PER_WEEK = 2
_PROMO_SALT = 0x5EED_900D  # fixed: the promo calendar is a business calendar, not run noise
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class City:
    name: str
    weight: float  # relative share of orders and sessions

    @property
    def store_id(self) -> str:
        return f"s_{self.name.lower()}"


@dataclass(frozen=True)
class Sku:
    sku: str
    name: str
    category: str
    base_price: float
    weight: float  # relative popularity (Zipf-like; slow movers are tiny)
    lead_time_days: int  # supplier lead time, 2-5 days
    slow: bool = False  # sells intermittently (most store-days have zero sales)


CITIES: tuple[City, ...] = (
    City("Paris", 0.34),
    City("Lyon", 0.19),
    City("Marseille", 0.17),
    City("Lille", 0.14),
    City("Bordeaux", 0.16),
)

# Supplier lead time by category (days); slow movers come from a slower supplier (+1 day).
_LEAD_DAYS = {"apparel": 3, "shoes": 5, "home": 4, "beauty": 2, "accessories": 4}
_SLOW_WEIGHT = 0.002  # ~1 line/store/day at scale 0.01 in Paris: most store-days sell 0
_ZIPF_EXPONENT = 1.05

# (sku, name, category, base price) in popularity order; the last four are slow movers.
_REGULAR = (
    ("A123", "Organic cotton T-shirt", "apparel", 19.9),
    ("B200", "Canvas sneakers", "shoes", 49.0),
    ("C310", "Stainless water bottle", "home", 14.5),
    ("C315", "Ceramic mug set", "home", 24.9),
    ("D410", "Slim denim jeans", "apparel", 59.0),
    ("D420", "Merino scarf", "accessories", 29.9),
    ("E510", "Scented candle", "home", 12.9),
    ("E520", "Shea hand cream", "beauty", 8.5),
    ("F610", "Wool socks 3-pack", "apparel", 15.0),
    ("F620", "Leather belt", "accessories", 34.0),
    ("G710", "Linen cushion cover", "home", 22.0),
    ("G720", "Lip balm", "beauty", 4.9),
    ("H810", "Running shorts", "apparel", 27.5),
    ("H820", "Canvas tote bag", "accessories", 17.9),
    ("J910", "Cotton bath towel", "home", 26.0),
    ("J920", "Vitamin C face serum", "beauty", 32.0),
)
_SLOW = (
    ("K100", "Waterproof rain jacket", "apparel", 89.0),
    ("K200", "Leather backpack", "accessories", 129.0),
    ("L300", "Cast-iron casserole", "home", 149.0),
    ("L400", "Eau de parfum 100 ml", "beauty", 79.0),
)

SKUS: tuple[Sku, ...] = tuple(
    Sku(code, name, cat, price, 1.0 / (rank + 1) ** _ZIPF_EXPONENT, _LEAD_DAYS[cat])
    for rank, (code, name, cat, price) in enumerate(_REGULAR)
) + tuple(
    Sku(code, name, cat, price, _SLOW_WEIGHT, min(_LEAD_DAYS[cat] + 1, 5), slow=True)
    for code, name, cat, price in _SLOW
)

STORE_IDS: tuple[str, ...] = tuple(c.store_id for c in CITIES)
SKU_CODES: tuple[str, ...] = tuple(s.sku for s in SKUS)


def city_weights() -> np.ndarray:
    w = np.array([c.weight for c in CITIES])
    return w / w.sum()


def sku_weights() -> np.ndarray:
    w = np.array([s.weight for s in SKUS])
    return w / w.sum()


def base_prices() -> np.ndarray:
    return np.array([s.base_price for s in SKUS])


def promo_prices() -> np.ndarray:
    return np.round(base_prices() * (1.0 - PROMO_DISCOUNT), 2)


def promo_matrix(epoch_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Promotions per UTC day: (on[n_days, 20] bool, uplift[n_days, 20] float, 1.0 when off).

    Each Monday-based week, 2 regular SKUs (never slow movers) are on promo for 3-4 consecutive
    days starting Monday-Thursday, with a demand uplift drawn in [2, 3]. Derived from the week
    number alone, so any window sees the same calendar.
    """
    days = np.asarray(epoch_days, dtype=np.int64)
    on = np.zeros((days.size, len(SKUS)), dtype=bool)
    uplift = np.ones((days.size, len(SKUS)))
    if days.size == 0:
        return on, uplift
    regular = np.flatnonzero([not s.slow for s in SKUS])
    weeks = (days + 3) // 7  # 1970-01-01 was a Thursday: shift so weeks start on Monday
    for week in np.unique(weeks):
        rng = np.random.default_rng([_PROMO_SALT, int(week) + (1 << 32)])
        picked = rng.choice(regular, size=PROMO_SKUS_PER_WEEK, replace=False)
        first = rng.integers(0, 4, size=PROMO_SKUS_PER_WEEK)
        length = rng.integers(3, 5, size=PROMO_SKUS_PER_WEEK)
        lift = rng.uniform(2.0, 3.0, size=PROMO_SKUS_PER_WEEK)
        in_week = np.flatnonzero(weeks == week)
        weekday = (days[in_week] + 3) % 7
        for sku, a, n, f in zip(picked, first, length, lift, strict=True):
            rows = in_week[(weekday >= a) & (weekday < a + n)]
            on[rows, sku] = True
            uplift[rows, sku] = f
    return on, uplift


def promo_calendar(first_day: date, last_day: date) -> pl.DataFrame:
    """Promotions between two dates (inclusive): date, sku, discount, uplift (for forecasting)."""
    days = np.arange((first_day - _EPOCH).days, (last_day - _EPOCH).days + 1)
    on, uplift = promo_matrix(days)
    rows, cols = np.nonzero(on)
    return pl.DataFrame(
        {
            "date": [_EPOCH + timedelta(days=int(d)) for d in days[rows]],
            "sku": [SKU_CODES[c] for c in cols],
            "discount": np.full(rows.size, PROMO_DISCOUNT),
            "uplift": uplift[rows, cols],
        },
        schema={"date": pl.Date, "sku": pl.String, "discount": pl.Float64, "uplift": pl.Float64},
    )


def stores_csv() -> str:
    """`stores.csv` for the dbt seed: store_id,city,country."""
    return _csv(["store_id", "city", "country"], [[c.store_id, c.name, COUNTRY] for c in CITIES])


def skus_csv() -> str:
    """`skus.csv` for the dbt seed: sku,name,category,base_price."""
    rows = [[s.sku, s.name, s.category, f"{s.base_price:.2f}"] for s in SKUS]
    return _csv(["sku", "name", "category", "base_price"], rows)


def write_seed_csvs(folder: Path) -> list[Path]:
    """Write stores.csv and skus.csv into `folder` (created if missing); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("stores.csv", stores_csv()), ("skus.csv", skus_csv())):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()
