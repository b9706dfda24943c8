"""Safety stock, reorder point and reorder proposals (seed §3 "ROP (Reorder Point)").

Demand during the lead time, with daily demand D ~ (μ_d, σ_d) and lead time L ~ (μ_L, σ_L)
independent:

    μ = μ_d · μ_L
    σ = sqrt(μ_L · σ_d² + μ_d² · σ_L²)
    safety stock = z · σ            (z = Φ⁻¹(service level), e.g. 1.65 for 95 %)
    ROP = μ + safety stock

Rounding rule: stock is whole units, so the safety stock is rounded **up** (ceil) and the ROP
is μ rounded up plus that safety stock — never a fraction, never below the exact value. A tiny
tolerance (1e-9) absorbs floating-point noise so that 500.0000000001 stays 500.

Reorder proposal: when on hand + on order ≤ ROP, order up to S = ROP + μ_d · review_days
(order-up-to policy with a periodic review of `review_days`), i.e. quantity = S − position,
rounded up to the supplier's pack size. Everything is vectorised over NumPy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lakehouse.errors import ConfigError

_EPS = 1e-9
FloatArray = NDArray[np.float64]


def z_from_service_level(service_level: float) -> float:
    """Standard normal quantile of a cycle service level in (0, 1): 0.95 → 1.645."""
    if not 0.0 < service_level < 1.0:
        raise ConfigError(f"service level {service_level} is invalid: use a number in (0, 1)")
    return NormalDist().inv_cdf(service_level)


def ceil_units(x: ArrayLike) -> NDArray[np.int64]:
    """Round up to whole units, ignoring float noise below 1e-9."""
    return np.ceil(np.asarray(x, dtype=np.float64) - _EPS).astype(np.int64)


@dataclass(frozen=True)
class ReorderPoint:
    """Lead-time demand statistics and the resulting safety stock / ROP (arrays or scalars)."""

    mu: FloatArray  # mean demand during the lead time
    sigma: FloatArray  # standard deviation of demand during the lead time
    safety_stock_exact: FloatArray
    safety_stock: NDArray[np.int64]  # rounded up
    rop_exact: FloatArray
    rop: NDArray[np.int64]  # ceil(μ) + safety_stock


def reorder_point(
    mu_d: ArrayLike, sigma_d: ArrayLike, mu_l: ArrayLike, sigma_l: ArrayLike, z: ArrayLike
) -> ReorderPoint:
    """The seed's formulas, elementwise. Negative inputs are a caller error."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (mu_d, sigma_d, mu_l, sigma_l, z)]
    md, sd, ml, sl, zz = np.broadcast_arrays(*arrays)
    for name, values in (("mu_d", md), ("sigma_d", sd), ("mu_l", ml), ("sigma_l", sl)):
        if np.any(values < 0) or np.any(~np.isfinite(values)):
            raise ConfigError(f"{name} must be finite and >= 0")
    mu = md * ml
    sigma = np.sqrt(ml * sd**2 + md**2 * sl**2)
    ss_exact = zz * sigma
    ss = ceil_units(np.maximum(ss_exact, 0.0))
    return ReorderPoint(mu, sigma, ss_exact, ss, mu + ss_exact, ceil_units(mu) + ss)


def order_up_to_quantity(
    on_hand: ArrayLike,
    on_order: ArrayLike,
    rop: ArrayLike,
    mu_d: ArrayLike,
    review_days: float = 7.0,
    pack_size: int = 1,
) -> NDArray[np.int64]:
    """Units to order now: 0 when on hand + on order > ROP, else S − position with
    S = ROP + μ_d · review_days, rounded up to a multiple of `pack_size` (≥ 1 unit)."""
    if pack_size < 1:
        raise ConfigError(f"pack size {pack_size} is invalid: use a positive integer")
    position = np.asarray(on_hand, dtype=np.float64) + np.asarray(on_order, dtype=np.float64)
    rop_arr = np.asarray(rop, dtype=np.float64)
    target = rop_arr + np.asarray(mu_d, dtype=np.float64) * review_days
    need = np.maximum(target - position, 1.0)
    qty = ceil_units(need / pack_size) * pack_size
    return np.where(position <= rop_arr, qty, 0).astype(np.int64)


def eoq(annual_demand: ArrayLike, order_cost: float, holding_cost_per_unit_year: ArrayLike):
    """Economic order quantity sqrt(2·D·K / h), rounded up (alternative lot size)."""
    d = np.asarray(annual_demand, dtype=np.float64)
    h = np.asarray(holding_cost_per_unit_year, dtype=np.float64)
    return ceil_units(np.sqrt(2.0 * d * order_cost / np.maximum(h, _EPS)))


def stockout_day(on_hand: ArrayLike, daily_forecast: NDArray[np.float64]) -> NDArray[np.int64]:
    """First horizon day (1-based) on which cumulative forecast demand exceeds on hand, per row
    of `daily_forecast` [n_series, horizon]; -1 when the stock lasts the whole horizon."""
    stock = np.asarray(on_hand, dtype=np.float64)[:, None]
    cumulative = np.cumsum(np.asarray(daily_forecast, dtype=np.float64), axis=1)
    out = cumulative > stock + _EPS
    first = np.argmax(out, axis=1) + 1
    return np.where(out.any(axis=1), first, -1).astype(np.int64)


def describe_rop(result: ReorderPoint, z: float) -> str:
    """The worked-example printout (scalar inputs)."""
    mu, sigma = float(result.mu), float(result.sigma)
    ss_exact, ss = float(result.safety_stock_exact), int(result.safety_stock)
    return "\n".join(
        [
            f"μ = μ_d · μ_L = {mu:g}",
            f"σ = sqrt(μ_L · σ_d² + μ_d² · σ_L²) = {sigma:.2f}",
            f"safety stock = z · σ = {z:g} × {sigma:.2f} = {ss_exact:.2f} → {ss} (rounded up)",
            f"ROP = ⌈μ⌉ + safety stock = {math.ceil(mu - _EPS)} + {ss} = {int(result.rop)} units",
        ]
    )
