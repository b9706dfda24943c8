"""Replay simulation: the same daily demand served by two reorder policies.

Daily loop (vectorised over series): receipts due today arrive → sales = min(demand,
on hand), the rest is lost → review: if on hand + on order ≤ reorder point, order
(target − position) units, received `lead_days` later (integer days, per series).

Policies compared on the same demand and lead times:
- forecast-driven: reorder point and order-up-to level per series and day from the forecast
  (ROP = ⌈μ_d·μ_L⌉ + ⌈z·σ⌉, S = ROP + μ_d·review_days), μ_d/σ_d given per day;
- naive fixed: one reorder point and order quantity per series fixed at the start from the
  trailing mean demand (ROP = mean·lead·(1 + `naive_buffer`), order quantity = mean·
  review_days·(1 + `naive_buffer`)) — what a spreadsheet without forecasts does.

Like-for-like: the naive rule's reorder-point buffer is then tuned (bisection) until its
stock-out rate is no higher than the forecast policy's; working capital and turns of the two
are compared at that equal service level.

KPIs: stock-out rate (share of series-days with unmet demand), fill rate, mean stock (units
and € at unit cost), inventory turns (annualised COGS / mean stock value), working capital €
(mean stock value + value on order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from forecasting.inventory import ceil_units, order_up_to_quantity


@dataclass(frozen=True)
class SimulationResult:
    policy: str
    stockout_rate: float  # share of series-days with lost sales
    fill_rate: float  # units sold / units demanded
    mean_stock_units: float  # mean on hand per series-day
    mean_stock_value: float  # € at cost, summed over series, mean over days
    inventory_turns: float  # annualised cost of goods sold / mean stock value
    working_capital: float  # € at cost: mean (on hand + on order) summed over series
    orders_placed: int

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def simulate(
    demand: np.ndarray,
    rop: np.ndarray,
    order_up_to: np.ndarray,
    lead_days: np.ndarray,
    unit_cost: np.ndarray,
    initial_on_hand: np.ndarray,
    policy: str,
    fixed_quantity: np.ndarray | None = None,
) -> SimulationResult:
    """demand [days, series]; rop/order_up_to [days, series] or [series]; when
    `fixed_quantity` is given the order is that quantity instead of up-to-S."""
    days, n = demand.shape
    rop = np.broadcast_to(rop, (days, n))
    target = np.broadcast_to(order_up_to, (days, n))
    lead = np.asarray(lead_days, dtype=np.int64)
    pipeline = np.zeros((days + int(lead.max()) + 2, n), dtype=np.int64)
    on_hand = np.asarray(initial_on_hand, dtype=np.int64).copy()
    on_order = np.zeros(n, dtype=np.int64)
    sold_total = demand_total = stockout_days = orders = 0
    stock_sum = np.zeros(n)
    wc_sum = np.zeros(n)
    cols = np.arange(n)
    for t in range(days):
        on_hand += pipeline[t]
        on_order -= pipeline[t]
        want = demand[t].astype(np.int64)
        sold = np.minimum(want, on_hand)
        on_hand -= sold
        sold_total += int(sold.sum())
        demand_total += int(want.sum())
        stockout_days += int((want > sold).sum())
        position = on_hand + on_order
        if fixed_quantity is None:
            qty = np.where(position <= rop[t], np.maximum(target[t] - position, 1), 0)
        else:
            qty = np.where(position <= rop[t], fixed_quantity, 0)
        qty = ceil_units(qty)
        placed = qty > 0
        orders += int(placed.sum())
        pipeline[t + lead[placed], cols[placed]] += qty[placed]
        on_order += qty
        stock_sum += on_hand
        wc_sum += on_hand + on_order
    cost = np.asarray(unit_cost, dtype=np.float64)
    mean_stock_value = float((stock_sum / days * cost).sum())
    cogs_year = float((sold_total / max(demand_total, 1)) * (demand * cost).sum()) * 365.0 / days
    return SimulationResult(
        policy=policy,
        stockout_rate=stockout_days / (days * n),
        fill_rate=sold_total / max(demand_total, 1),
        mean_stock_units=float(stock_sum.sum() / (days * n)),
        mean_stock_value=mean_stock_value,
        inventory_turns=cogs_year / mean_stock_value if mean_stock_value > 0 else float("inf"),
        working_capital=float((wc_sum / days * cost).sum()),
        orders_placed=orders,
    )


@dataclass(frozen=True)
class PolicyComparison:
    forecast: SimulationResult
    naive: SimulationResult  # the spreadsheet rule, buffer `naive_buffer` on ROP and quantity
    naive_equal_service: SimulationResult  # naive rule with its ROP buffer tuned to match
    naive_equal_service_buffer: float  # that buffer b: ROP = mean·lead·(1 + b)
    matched: bool  # False when even the largest buffer tried misses the forecast's stock-outs


def naive_matching_service(
    demand: np.ndarray,
    lead_days: np.ndarray,
    unit_cost: np.ndarray,
    initial_on_hand: np.ndarray,
    trailing_mean: np.ndarray,
    target_stockout_rate: float,
    review_days: float = 7.0,
    max_buffer: float = 8.0,
    steps: int = 25,
) -> tuple[SimulationResult, float, bool]:
    """The naive fixed policy at (at least) a target service level: order quantity fixed at
    trailing mean · review_days, reorder point mean · lead · (1 + b) with the smallest buffer b
    (bisection over [0, max_buffer]) whose stock-out rate is ≤ the target. Stock-outs fall as
    b grows (more safety stock). Returns (result, b, matched)."""
    lead = np.asarray(lead_days, dtype=np.float64)
    qty = np.maximum(ceil_units(trailing_mean * review_days), 1)

    def run(buffer: float) -> SimulationResult:
        rop = ceil_units(trailing_mean * lead * (1 + buffer))
        return simulate(
            demand,
            rop,
            rop + qty,
            lead.astype(np.int64),
            unit_cost,
            initial_on_hand,
            "naive_equal_service",
            fixed_quantity=qty,
        )

    best = run(max_buffer)
    if best.stockout_rate > target_stockout_rate:
        return best, max_buffer, False
    low, high = 0.0, max_buffer
    first = run(low)
    if first.stockout_rate <= target_stockout_rate:
        return first, low, True
    for _ in range(steps):
        mid = (low + high) / 2
        result = run(mid)
        if result.stockout_rate <= target_stockout_rate:
            high, best = mid, result
        else:
            low = mid
    return best, high, True


def compare_policies(
    demand: np.ndarray,
    mu_d: np.ndarray,
    sigma_d: np.ndarray,
    lead_days: np.ndarray,
    sigma_l: np.ndarray,
    unit_cost: np.ndarray,
    trailing_mean: np.ndarray,
    z: float = 1.65,
    review_days: float = 7.0,
    naive_buffer: float = 0.5,
) -> PolicyComparison:
    """Forecast-driven vs naive fixed on the same demand [days, series], plus the naive rule
    tuned to the forecast policy's stock-out rate (like-for-like working capital). mu_d and
    sigma_d are the forecast's daily mean and error sd, [days, series] (as known each
    morning)."""
    from forecasting.inventory import reorder_point

    lead = np.asarray(lead_days, dtype=np.float64)
    rp = reorder_point(mu_d, sigma_d, lead[None, :], np.asarray(sigma_l)[None, :], z)
    target = rp.rop + mu_d * review_days
    start = ceil_units(rp.rop[0] + mu_d[0] * review_days / 2)
    fc = simulate(demand, rp.rop, target, lead.astype(np.int64), unit_cost, start, "forecast")
    naive_rop = ceil_units(trailing_mean * lead * (1 + naive_buffer))
    naive_q = np.maximum(ceil_units(trailing_mean * review_days * (1 + naive_buffer)), 1)
    naive = simulate(
        demand,
        naive_rop,
        naive_rop + naive_q,
        lead.astype(np.int64),
        unit_cost,
        start,
        "naive_fixed",
        fixed_quantity=naive_q,
    )
    matched, buffer, ok = naive_matching_service(
        demand, lead, unit_cost, start, trailing_mean, fc.stockout_rate, review_days
    )
    return PolicyComparison(fc, naive, matched, buffer, ok)


__all__ = [
    "ActionResult",
    "PolicyComparison",
    "Shipping",
    "SimulationResult",
    "Transfer",
    "compare_policies",
    "naive_matching_service",
    "order_up_to_quantity",
    "simulate",
    "simulate_actions",
]


# ---- the supply actions on the same demand ---------------------------------------------------
@dataclass(frozen=True)
class Shipping:
    """What happens to an order placed on day t for series i ([days, series] arrays), drawn
    once and shared by every scenario (common random numbers): the days it lands after its
    promised day and whether it is late, as booked and re-routed to the fastest carrier, and
    whether the ETA model's alert fires for it (P(late) ≥ the threshold)."""

    late_days: np.ndarray  # int ≥ 0
    late: np.ndarray  # bool: arrives after the promised time
    late_days_rerouted: np.ndarray
    late_rerouted: np.ndarray
    flagged: np.ndarray  # bool


@dataclass(frozen=True)
class Transfer:
    from_series: int
    to_series: int
    qty: int
    cost_eur: float


# (day, on hand, on order, ordered today, days to the next receipt the store expects, 0 =
# none) -> the transfers to make today
TransferRule = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[Transfer]]


@dataclass(frozen=True)
class ActionResult:
    scenario: str
    stockout_rate: float  # share of series-days with lost sales
    fill_rate: float
    mean_stock_units: float
    mean_stock_value: float
    working_capital: float  # € at cost: on hand + on order + in transfer, mean over days
    otif: float  # orders received on time (and in full: the replay receives what it orders)
    lost_sales_value: float  # € at cost of the demand not served
    orders_placed: int
    transfers: int
    transfer_units: int
    transfer_cost_eur: float
    rerouted: int  # orders moved to the fastest carrier on an ETA alert

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def simulate_actions(
    scenario: str,
    demand: np.ndarray,
    rop: np.ndarray,
    order_up_to: np.ndarray,
    lead_days: np.ndarray,
    unit_cost: np.ndarray,
    initial_on_hand: np.ndarray,
    shipping: Shipping,
    reorder: bool = True,
    transfers: TransferRule | None = None,
    reroute: bool = False,
) -> ActionResult:
    """The daily loop of `simulate` with the actions: receipts → sales → reorder (order-up-to
    at the ROP, landing `lead_days` + the order's late days later; with `reroute`, an order
    whose ETA alert fires travels with the fastest carrier instead) → transfers (units leave
    the donor today and are on the receiver's shelf tomorrow)."""
    days, n = demand.shape
    lead = np.asarray(lead_days, dtype=np.int64)
    horizon = days + int(lead.max()) + int(shipping.late_days.max(initial=0)) + 3
    arriving = np.zeros((horizon, n), dtype=np.int64)  # supplier receipts
    transferred = np.zeros((horizon, n), dtype=np.int64)  # store-to-store moves
    on_hand = np.asarray(initial_on_hand, dtype=np.int64).copy()
    on_order = np.zeros(n, dtype=np.int64)
    sold_total = demand_total = stockout_days = orders = on_time = rerouted = 0
    moves = moved_units = 0
    move_cost = 0.0
    lost = np.zeros(n)
    stock_sum = np.zeros(n)
    wc_sum = np.zeros(n)
    cols = np.arange(n)
    # open orders: series, the day the store expects them (the promised day; with ETA alerts,
    # the re-routed arrival of an alerted order), the day they land
    open_series = np.zeros(0, dtype=np.int64)
    open_expected = np.zeros(0, dtype=np.int64)
    open_land = np.zeros(0, dtype=np.int64)
    for t in range(days):
        on_hand += arriving[t] + transferred[t]
        on_order -= arriving[t]
        want = demand[t].astype(np.int64)
        sold = np.minimum(want, on_hand)
        on_hand -= sold
        sold_total += int(sold.sum())
        demand_total += int(want.sum())
        stockout_days += int((want > sold).sum())
        lost += want - sold
        placed = np.zeros(n, dtype=bool)
        if reorder:
            position = on_hand + on_order
            qty = ceil_units(
                np.where(position <= rop[t], np.maximum(order_up_to[t] - position, 1), 0)
            )
            placed = qty > 0
            moved = placed & shipping.flagged[t] if reroute else np.zeros(n, dtype=bool)
            late = np.where(moved, shipping.late_rerouted[t], shipping.late[t])
            extra = np.where(moved, shipping.late_days_rerouted[t], shipping.late_days[t])
            orders += int(placed.sum())
            on_time += int((placed & ~late).sum())
            rerouted += int(moved.sum())
            land = t + lead[placed] + extra[placed]
            np.add.at(arriving, (land, cols[placed]), qty[placed])
            on_order += qty
            promised = t + lead[placed]
            open_series = np.concatenate([open_series, cols[placed]])
            open_expected = np.concatenate([open_expected, np.where(moved[placed], land, promised)])
            open_land = np.concatenate([open_land, land])
        if transfers is not None:
            still = open_land > t
            open_series, open_expected, open_land = (
                open_series[still],
                open_expected[still],
                open_land[still],
            )
            next_receipt = np.zeros(n, dtype=np.int64)  # 0: no open order
            if open_series.size:
                soonest = np.full(n, np.iinfo(np.int64).max)
                np.minimum.at(soonest, open_series, np.maximum(open_expected - t, 1))
                next_receipt = np.where(soonest < np.iinfo(np.int64).max, soonest, 0)
            for move in transfers(t, on_hand.copy(), on_order.copy(), placed, next_receipt):
                qty_moved = min(move.qty, int(on_hand[move.from_series]))
                if qty_moved < 1:
                    continue
                on_hand[move.from_series] -= qty_moved
                transferred[t + 1, move.to_series] += qty_moved
                moves += 1
                moved_units += qty_moved
                move_cost += move.cost_eur
        stock_sum += on_hand
        wc_sum += on_hand + on_order + transferred[t + 1]
    cost = np.asarray(unit_cost, dtype=np.float64)
    return ActionResult(
        scenario=scenario,
        stockout_rate=stockout_days / (days * n),
        fill_rate=sold_total / max(demand_total, 1),
        mean_stock_units=float(stock_sum.sum() / (days * n)),
        mean_stock_value=float((stock_sum / days * cost).sum()),
        working_capital=float((wc_sum / days * cost).sum()),
        otif=on_time / orders if orders else float("nan"),
        lost_sales_value=float((lost * cost).sum()),
        orders_placed=orders,
        transfers=moves,
        transfer_units=moved_units,
        transfer_cost_eur=round(move_cost, 2),
        rerouted=rerouted,
    )
