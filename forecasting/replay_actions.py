"""The supply actions' proof: the replay's demand served four ways, on the same demand, the
same initial stock and the same carrier delays.

1. **no action**: the stock on hand at the replay's start, nothing re-ordered;
2. **reorder only**: the nightly reorder proposals (ROP and order-up-to from the forecast, as
   `forecasting.replay` builds them each morning);
3. **reorder + transfers**: plus, every day, the store-to-store transfers of
   `forecasting.actions.transfer_proposals` (the nightly `transfer_proposals` asset's own
   function) on that morning's stock and the week's 28-day forecast; moved units are on the
   receiver's shelf the next day;
4. **reorder + transfers + ETA alerts**: plus re-routing: an order whose ETA alert fires
   (P(late) ≥ LAKEHOUSE_SUPPLY_ETA_ALERT_P_LATE) travels with the fastest carrier instead.

Carrier delays come from the lake, as known at the replay's start: each order gets a carrier
drawn from the shares of the shipments that had arrived by then, and a delay (arrival −
promised time, hours) drawn from that carrier's observed delays; it lands on its promised day
plus the days the delay carries it past midnight (a promised time of day drawn uniformly).
Whether its alert fires is drawn from the ETA model's hit rate on late shipments and false
alarm rate on on-time ones at the threshold, measured on the model's test split
(`forecasting.eta.evaluate_eta` on those shipments). Re-routing keeps the order's delay
quantile on the fastest carrier (the lowest mean delay). Every draw is seeded: the same
command gives the same figures. Not modelled: the cost of re-routing, and transit time
between stores (a van, next day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from forecasting.actions import MARGIN_RATIO, transfer_proposals
from forecasting.inventory import ceil_units, reorder_point, stockout_day
from forecasting.pipeline import ForecastOptions, read_silver
from forecasting.replay import ReplayInputs
from forecasting.simulate import ActionResult, Shipping, Transfer, TransferRule, simulate_actions
from lakehouse.config import Settings

SEED = 20_251  # the carrier and alert draws


@dataclass(frozen=True)
class ShippingFacts:
    """What the lake says about carriers at the replay's start."""

    shipments: int  # arrived by the start
    late_rate: float
    carriers: dict[str, float]  # carrier → share of shipments
    fastest: str | None
    alert_hit_rate: float  # P(alert | late), ETA model's test split
    alert_false_alarm_rate: float  # P(alert | on time)


def shipping_from_lake(
    settings: Settings, known_by: date, shape: tuple[int, int], threshold: float
) -> tuple[Shipping, ShippingFacts]:
    """The per-order draws of the module docstring; no delay at all on a lake without
    arrived shipments."""
    from forecasting.eta import eta_features, evaluate_eta, shipment_table

    rng = np.random.default_rng(SEED)
    u_carrier, u_delay, u_hour, u_alert = (rng.random(shape) for _ in range(4))
    events = read_silver(settings, "silver_shipments")
    arrived = None
    if events is not None and events.height:
        feats = eta_features(shipment_table(events), read_silver(settings, "silver_weather"))
        arrived = feats.filter(
            pl.col("arrived_at").is_not_null() & (pl.col("arrived_at").dt.date() <= known_by)
        ).sort("departed_at", "shipment_id")
    if arrived is None or arrived.height < 50:
        none = np.zeros(shape, dtype=bool)
        zeros = np.zeros(shape, dtype=np.int64)
        facts = ShippingFacts(0 if arrived is None else arrived.height, 0.0, {}, None, 0.0, 0.0)
        return Shipping(zeros, none, zeros, none, none), facts
    carriers = sorted(arrived["carrier"].unique().to_list())
    delays = {c: arrived.filter(pl.col("carrier") == c)["delay_h"].to_numpy() for c in carriers}
    shares = np.array([delays[c].size for c in carriers], dtype=np.float64) / arrived.height
    fastest = min(carriers, key=lambda c: (float(delays[c].mean()), c))
    pick = np.minimum(np.searchsorted(np.cumsum(shares), u_carrier), len(carriers) - 1)
    delay_h = np.zeros(shape)
    for k, c in enumerate(carriers):
        mask = pick == k
        delay_h[mask] = np.quantile(delays[c], u_delay[mask])
    rerouted_h = np.quantile(delays[fastest], u_delay)
    hour = u_hour * 24.0

    def days_late(h: np.ndarray) -> np.ndarray:
        return np.floor((hour + np.maximum(h, 0.0)) / 24.0).astype(np.int64)

    run = evaluate_eta(arrived)
    pred = run.validated.predict(run.test).with_columns(run.test["late"])
    alert = pred["p_late"] >= threshold
    late_test = pred["late"] > 0
    hit = float((alert & late_test).sum() / max(int(late_test.sum()), 1))
    false_alarm = float((alert & ~late_test).sum() / max(int((~late_test).sum()), 1))
    late = delay_h > 0
    can_move = pick != carriers.index(fastest)
    alerted = np.where(late, u_alert < hit, u_alert < false_alarm) & can_move
    facts = ShippingFacts(
        arrived.height,
        float((arrived["delay_h"] > 0).mean()),  # type: ignore[arg-type]
        {c: round(float(s), 3) for c, s in zip(carriers, shares, strict=True)},
        fastest,
        hit,
        false_alarm,
    )
    shipping = Shipping(
        late_days=days_late(delay_h),
        late=late,
        late_days_rerouted=days_late(rerouted_h),
        late_rerouted=rerouted_h > 0,
        flagged=alerted,
    )
    return shipping, facts


def transfer_rule(
    inputs: ReplayInputs,
    safety_stock: np.ndarray,
    rop: np.ndarray,
    lead_days: np.ndarray,
    max_km: float,
) -> TransferRule:
    """Each morning, `transfer_proposals` on the stock of that day and the week's forecast
    (the days left of the 28-day forecast made at the week's cutoff)."""
    index = {(k, s): i for i, (k, s) in enumerate(zip(inputs.skus, inputs.stores, strict=True))}
    ids = np.asarray(inputs.series, dtype=object)

    def rule(  # type: ignore[no-untyped-def]
        t: int,
        on_hand: np.ndarray,
        on_order: np.ndarray,
        ordered: np.ndarray,
        next_receipt: np.ndarray,
    ):
        week, offset = divmod(t, 7)
        ahead = inputs.forecasts[week][:, offset:]
        today = inputs.first_day + timedelta(days=t)
        out_day = stockout_day(on_hand, ahead)
        proposals = pl.DataFrame(
            {
                "sku": inputs.skus,
                "store_id": inputs.stores,
                "on_hand": on_hand,
                "on_order": on_order,
                "mu_l": lead_days.astype(np.float64),
                "safety_stock": safety_stock[t],
                "rop": rop[t],
                "next_receipt": next_receipt,
                "reorder_now": ordered,
                "out_day": out_day,
            }
        ).with_columns(
            pl.when(pl.col("out_day") > 0)
            .then(pl.lit(today) + pl.duration(days=pl.col("out_day") - 1))
            .alias("predicted_stockout_date"),
            # when the store expects its open order (0: none open)
            pl.when(pl.col("next_receipt") > 0)
            .then(pl.col("next_receipt"))
            .alias("next_receipt_in_days"),
        )
        horizon = ahead.shape[1]
        dates = pl.date_range(today, today + timedelta(days=horizon - 1), eager=True)
        forecast = pl.DataFrame(
            {
                "unique_id": np.repeat(ids, horizon).astype(str),
                "ds": pl.concat([dates] * len(ids)),
                "yhat": ahead.ravel(),
            }
        )
        moves = transfer_proposals(proposals, forecast, max_km)
        return [
            Transfer(
                index[(r["sku"], r["from_store"])],
                index[(r["sku"], r["to_store"])],
                int(r["qty"]),
                float(r["transfer_cost_eur"]),
            )
            for r in moves.iter_rows(named=True)
        ]

    return rule


@dataclass(frozen=True)
class ActionsComparison:
    results: list[ActionResult]  # no action, reorder only, + transfers, + ETA alerts
    shipping: ShippingFacts


def compare_actions(
    settings: Settings, inputs: ReplayInputs, options: ForecastOptions | None = None
) -> ActionsComparison:
    options = options or ForecastOptions()
    lead = np.asarray(inputs.lead_days, dtype=np.float64)
    rp = reorder_point(
        inputs.mu_d,
        inputs.sigma_d,
        lead[None, :],
        np.asarray(inputs.sigma_l)[None, :],
        options.z_value,
    )
    target = rp.rop + inputs.mu_d * options.review_days
    start = ceil_units(rp.rop[0] + inputs.mu_d[0] * options.review_days / 2)
    shipping, facts = shipping_from_lake(
        settings,
        inputs.first_day - timedelta(days=1),
        inputs.demand.shape,
        settings.supply_eta_alert_p_late,
    )
    rule = transfer_rule(
        inputs, rp.safety_stock, rp.rop, lead.astype(np.int64), settings.supply_transfer_max_km
    )
    common = {
        "demand": inputs.demand,
        "rop": rp.rop,
        "order_up_to": target,
        "lead_days": lead.astype(np.int64),
        "unit_cost": inputs.unit_cost,
        "initial_on_hand": start,
        "shipping": shipping,
    }
    results = [
        simulate_actions("no action", reorder=False, **common),  # type: ignore[arg-type]
        simulate_actions("reorder only", **common),  # type: ignore[arg-type]
        simulate_actions("reorder + transfers", transfers=rule, **common),  # type: ignore[arg-type]
        simulate_actions(
            "reorder + transfers + ETA alerts",
            transfers=rule,
            reroute=True,
            **common,  # type: ignore[arg-type]
        ),
    ]
    return ActionsComparison(results, facts)


def describe_actions(comparison: ActionsComparison) -> str:
    rows = [
        ("stock-out rate (series-days)", "stockout_rate", "{:.2%}"),
        ("fill rate", "fill_rate", "{:.2%}"),
        ("mean stock (units/series)", "mean_stock_units", "{:.1f}"),
        ("mean stock value €", "mean_stock_value", "{:,.0f}"),
        ("working capital €", "working_capital", "{:,.0f}"),
        ("lost margin €", "lost_margin", "{:,.0f}"),
        ("OTIF (orders on time, in full)", "otif", "{:.1%}"),
        ("orders placed", "orders_placed", "{:d}"),
        ("transfers (units)", "transfers", "{:d}"),
        ("transfer cost €", "transfer_cost_eur", "{:,.0f}"),
        ("orders re-routed on an ETA alert", "rerouted", "{:d}"),
    ]
    results = comparison.results
    head = f"{'KPI':34}" + "".join(f"{r.scenario:>34}" for r in results)
    lines = [head]
    for label, attr, fmt in rows:
        cells = []
        for r in results:
            value = (
                r.lost_sales_value * MARGIN_RATIO / (1 - MARGIN_RATIO)  # cost = 45 % of price
                if attr == "lost_margin"
                else getattr(r, attr)
            )
            cell = "-" if isinstance(value, float) and value != value else fmt.format(value)
            if attr == "transfers":
                cell = f"{value:d} ({r.transfer_units:d})"
            cells.append(cell)
        lines.append(f"{label:34}" + "".join(f"{c:>34}" for c in cells))
    facts = comparison.shipping
    if facts.fastest is None:
        lines.append(
            f"carrier delays: fewer than 50 shipments arrived by the replay's start "
            f"({facts.shipments}): every order lands on its promised day"
        )
    else:
        lines.append(
            f"carrier delays from {facts.shipments} shipments arrived by the start (late "
            f"{facts.late_rate:.1%}; shares {facts.carriers}; fastest {facts.fastest}); ETA "
            f"alert at the threshold: hit rate {facts.alert_hit_rate:.1%} on late shipments, "
            f"false alarms {facts.alert_false_alarm_rate:.1%} on on-time ones"
        )
    return "\n".join(lines)
