"""Supply actions on top of the nightly forecast (seed §3 "Actions: ré-allocation stock,
re-routing, alerte magasin").

- **Stock re-allocation** (`transfer_proposals`): a store whose predicted stock-out comes
  before its next receipt receives units from another store holding the same SKU within
  `max_km`, whose on-hand exceeds its own need until *its* next receipt (forecast demand
  until then + safety stock). The next receipt of a store is its open order's predicted
  arrival when a shipment carries it (`eta_risk`), else ⌈μ_L⌉ days away when an order is
  open or due now; otherwise it comes ⌈μ_L⌉ days after the day its stock is forecast to
  reach the ROP (when it will order), at most the forecast's horizon. (Counting a donor's
  need over its lead time only would take from it the units it needs before it re-orders:
  replayed, stores then passed the same stock back and forth every day.) Quantity =
  min(receiver's shortfall until its receipt, donor's spare); proposed only when the lost
  margin avoided exceeds the transfer cost (fixed cost + per unit). Receivers are served
  earliest stock-out first, each from the nearest donor.
- **ETA risk** (`eta_risk`): per open shipment, predicted arrival (the ETA model's median),
  P(late), the destination's predicted stock-out date for the shipped SKU and whether the
  shipment lands after it, the cold-chain status, and a re-routing suggestion: the carrier
  whose predicted transit on the same lane (the ETA model, carrier swapped, departing now)
  is shortest, when it beats the current one.
- **Cold chain** (`cold_chain_excursions`): `shipment_readings` outside the shipped SKU's
  temperature range mark the shipment at risk (first excursion time, min/max °C).
Plain polars/numpy: the tables are one row per series or per open shipment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from forecasting.eta import ETA_FEATURES, EtaModels
from ingestion.generators.catalog import CITIES, SKUS
from ingestion.generators.supply import CITY_LATLON

# Storage range per category (°C). Cosmetics travel refrigerated (reefer set point 4 °C);
# the others tolerate a truck's ambient range.
TEMPERATURE_RANGE: dict[str, tuple[float, float]] = {
    "beauty": (-5.0, 15.0),
    "apparel": (-20.0, 40.0),
    "shoes": (-20.0, 40.0),
    "home": (-20.0, 40.0),
    "accessories": (-20.0, 40.0),
}
TRANSFER_FIXED_EUR = 25.0  # one van trip between two stores
TRANSFER_PER_UNIT_EUR = 0.40  # handling per unit moved
MARGIN_RATIO = 0.55  # lost margin per unit not sold = price − cost (cost = 45 % of price)


def store_distances_km() -> pl.DataFrame:
    """from_store, to_store, km (great-circle) between every pair of stores."""
    names = [c.name for c in CITIES]
    lat = np.radians([CITY_LATLON[n][0] for n in names])
    lon = np.radians([CITY_LATLON[n][1] for n in names])
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
    km = 2 * 6371.0 * np.arcsin(np.sqrt(a))
    ids = [c.store_id for c in CITIES]
    return pl.DataFrame(
        {
            "from_store": np.repeat(ids, len(ids)),
            "to_store": np.tile(ids, len(ids)),
            "km": km.ravel(),
        }
    ).filter(pl.col("from_store") != pl.col("to_store"))


def cumulative_demand(forecast: pl.DataFrame, days: pl.DataFrame, column: str) -> pl.DataFrame:
    """unique_id → Σ yhat over the first `column` days of each series' forecast (`days` holds
    unique_id and that column)."""
    first = forecast.group_by("unique_id").agg(pl.col("ds").min().alias("first"))
    return (
        forecast.join(first, on="unique_id")
        .join(days.select("unique_id", column), on="unique_id")
        .filter((pl.col("ds") - pl.col("first")).dt.total_days() < pl.col(column))
        .group_by("unique_id")
        .agg(pl.col("yhat").sum().alias("demand"))
    )


def transfer_proposals(
    proposals: pl.DataFrame, forecast: pl.DataFrame, max_km: float
) -> pl.DataFrame:
    """Store-to-store transfers (see the module docstring). `proposals`: gold
    reorder_proposals (sku, store_id, on_hand, on_order, mu_l, safety_stock, rop, reorder_now,
    predicted_stockout_date; optional next_receipt_in_days: when the open order is expected,
    from its shipment's predicted arrival); `forecast`: gold demand_forecast."""
    first_day = forecast["ds"].min()
    horizon = forecast["ds"].n_unique()
    if "next_receipt_in_days" not in proposals.columns:
        proposals = proposals.with_columns(pl.lit(None, pl.Int64).alias("next_receipt_in_days"))
    rows = proposals.with_columns(
        (pl.col("sku") + "|" + pl.col("store_id")).alias("unique_id"),
        pl.col("mu_l").ceil().cast(pl.Int64).alias("lead_days"),
        pl.when(pl.col("predicted_stockout_date").is_not_null())
        .then((pl.col("predicted_stockout_date") - pl.lit(first_day)).dt.total_days() + 1)
        .alias("stockout_in_days"),
    )
    # the day (1-based) on which on hand minus the forecast reaches the ROP: the store orders
    ranked = forecast.sort("unique_id", "ds").with_columns(
        pl.col("yhat").cum_sum().over("unique_id").alias("cum"),
        (pl.int_range(pl.len()).over("unique_id") + 1).alias("k"),
    )
    reorder_day = (
        ranked.join(rows.select("unique_id", "on_hand", "rop"), on="unique_id")
        .filter(pl.col("on_hand") - pl.col("cum") <= pl.col("rop"))
        .group_by("unique_id")
        .agg(pl.col("k").min().alias("reorder_in_days"))
    )
    rows = rows.join(reorder_day, on="unique_id", how="left").with_columns(
        pl.when(pl.col("next_receipt_in_days").is_not_null())
        .then(pl.col("next_receipt_in_days"))
        .when((pl.col("on_order") > 0) | pl.col("reorder_now"))
        .then(pl.col("lead_days"))
        .when(pl.col("reorder_in_days").is_not_null())
        .then(pl.col("reorder_in_days") + pl.col("lead_days"))
        .otherwise(pl.lit(horizon))
        .clip(upper_bound=horizon)
        .alias("receipt_in_days")
    )
    need = cumulative_demand(forecast, rows, "receipt_in_days").rename({"demand": "until_receipt"})
    rows = (
        rows.join(need, on="unique_id", how="left")
        .with_columns(pl.col("until_receipt").fill_null(0.0))
        .with_columns(
            (pl.col("until_receipt") - pl.col("on_hand")).ceil().clip(0).alias("shortfall"),
            (pl.col("on_hand") - (pl.col("until_receipt") + pl.col("safety_stock")).ceil())
            .clip(0)
            .alias("spare"),
        )
    )
    receivers = rows.filter(
        pl.col("stockout_in_days").is_not_null()
        & (pl.col("stockout_in_days") <= pl.col("receipt_in_days"))
        & (pl.col("shortfall") > 0)
    ).sort("stockout_in_days", "sku", "store_id")
    donors = rows.filter(pl.col("spare") > 0)
    price = {s.sku: s.base_price for s in SKUS}
    pairs = (
        receivers.select(
            "sku", pl.col("store_id").alias("to_store"), "shortfall", "stockout_in_days"
        )
        .join(
            donors.select("sku", pl.col("store_id").alias("from_store"), "spare"),
            on="sku",
        )
        .join(store_distances_km(), on=["from_store", "to_store"])
        .filter(pl.col("km") <= max_km)
        .sort("stockout_in_days", "sku", "to_store", "km")
    )
    # greedy allocation, one pass over the candidate pairs (a few per receiver)
    spare_left = {
        (r["sku"], r["from_store"]): float(r["spare"]) for r in pairs.iter_rows(named=True)
    }
    need_left: dict[tuple[str, str], float] = {}
    out = []
    for r in pairs.iter_rows(named=True):
        key_to = (r["sku"], r["to_store"])
        key_from = (r["sku"], r["from_store"])
        need_units = need_left.setdefault(key_to, float(r["shortfall"]))
        qty = min(need_units, spare_left[key_from])
        if qty < 1:
            continue
        margin = qty * price.get(r["sku"], 0.0) * MARGIN_RATIO
        cost = TRANSFER_FIXED_EUR + TRANSFER_PER_UNIT_EUR * qty
        if margin <= cost:
            continue
        need_left[key_to] = need_units - qty
        spare_left[key_from] -= qty
        out.append(
            {
                "sku": r["sku"],
                "from_store": r["from_store"],
                "to_store": r["to_store"],
                "qty": int(qty),
                "distance_km": round(float(r["km"]), 1),
                "stockout_in_days": int(r["stockout_in_days"]),
                "stockout_units_avoided": int(qty),
                "stockout_cost_avoided_eur": round(margin, 2),
                "transfer_cost_eur": round(cost, 2),
            }
        )
    schema = {
        "sku": pl.String,
        "from_store": pl.String,
        "to_store": pl.String,
        "qty": pl.Int64,
        "distance_km": pl.Float64,
        "stockout_in_days": pl.Int64,
        "stockout_units_avoided": pl.Int64,
        "stockout_cost_avoided_eur": pl.Float64,
        "transfer_cost_eur": pl.Float64,
    }
    return pl.DataFrame(out, schema=schema)


def cold_chain_excursions(readings: pl.DataFrame, shipments: pl.DataFrame) -> pl.DataFrame:
    """shipment_id, sku, first_excursion_at, min_c, max_c, excursions: readings outside the
    shipped SKU's temperature range (`shipments` has shipment_id and sku)."""
    category = {s.sku: s.category for s in SKUS}
    ranges = pl.DataFrame(
        {
            "sku": list(category),
            "t_min": [TEMPERATURE_RANGE[category[s]][0] for s in category],
            "t_max": [TEMPERATURE_RANGE[category[s]][1] for s in category],
        }
    )
    return (
        readings.join(shipments.select("shipment_id", "sku"), on="shipment_id")
        .join(ranges, on="sku")
        .filter(
            (pl.col("temperature_c") < pl.col("t_min"))
            | (pl.col("temperature_c") > pl.col("t_max"))
        )
        .group_by("shipment_id", "sku")
        .agg(
            pl.col("ts").min().alias("first_excursion_at"),
            pl.col("temperature_c").min().alias("min_c"),
            pl.col("temperature_c").max().alias("max_c"),
            pl.len().alias("excursions"),
        )
        .sort("shipment_id")
    )


@dataclass(frozen=True)
class EtaRiskInputs:
    open_features: pl.DataFrame  # eta_features rows of open shipments (+ sku)
    predictions: pl.DataFrame  # eta_predictions (+ shipment_id)
    proposals: pl.DataFrame  # gold reorder_proposals
    excursions: pl.DataFrame  # cold_chain_excursions


def reroute_suggestions(models: EtaModels, open_features: pl.DataFrame) -> pl.DataFrame:
    """shipment_id, best_carrier, best_eta_h: the carrier with the shortest predicted transit
    on the shipment's lane (the model with the carrier's code and delay history swapped)."""
    carriers = (
        open_features.select("carrier", "carrier_code", "carrier_delay_hist")
        .group_by("carrier", "carrier_code")
        .agg(pl.col("carrier_delay_hist").drop_nulls().last())
    )
    if open_features.height == 0 or carriers.height == 0:
        return pl.DataFrame(
            schema={"shipment_id": pl.String, "best_carrier": pl.String, "best_eta_h": pl.Float64}
        )
    swapped = (
        open_features.drop("carrier", "carrier_code", "carrier_delay_hist")
        .join(carriers, how="cross")
        .select("shipment_id", "carrier", *ETA_FEATURES)
    )
    pred = models.predict(swapped).with_columns(swapped["carrier"])
    return (
        pred.sort("shipment_id", "eta_h", "carrier")
        .group_by("shipment_id", maintain_order=True)
        .first()
        .select(
            "shipment_id",
            pl.col("carrier").alias("best_carrier"),
            pl.col("eta_h").alias("best_eta_h"),
        )
    )


def eta_risk(models: EtaModels, inputs: EtaRiskInputs, p_late_threshold: float) -> pl.DataFrame:
    """One row per open shipment: predicted arrival, P(late), the destination's predicted
    stock-out, lands_after_stockout, cold-chain status, re-routing suggestion, and `alert`
    (P(late) ≥ threshold, or a cold-chain excursion)."""
    current = models.predict(inputs.open_features).select("shipment_id", "eta_h")
    reroute = reroute_suggestions(models, inputs.open_features)
    stockout = inputs.proposals.select(
        "sku", pl.col("store_id").alias("destination"), "predicted_stockout_date"
    )
    base = (
        inputs.predictions.join(
            inputs.open_features.select("shipment_id", "sku", "destination"), on="shipment_id"
        )
        .join(current, on="shipment_id")
        .join(stockout, on=["sku", "destination"], how="left")
        .join(reroute, on="shipment_id", how="left")
        .join(
            inputs.excursions.select("shipment_id", "first_excursion_at", "min_c", "max_c"),
            on="shipment_id",
            how="left",
        )
    )
    return (
        base.with_columns(
            (
                pl.col("predicted_stockout_date").is_not_null()
                & (pl.col("eta").dt.date() > pl.col("predicted_stockout_date"))
            ).alias("lands_after_stockout"),
            pl.col("first_excursion_at").is_not_null().alias("cold_chain_breach"),
            pl.when(
                (pl.col("best_carrier") != pl.col("carrier"))
                & (pl.col("best_eta_h") < pl.col("eta_h") - 0.5)
            )
            .then(pl.col("best_carrier"))
            .alias("reroute_carrier"),
            (pl.col("eta_h") - pl.col("best_eta_h")).clip(0).alias("reroute_saves_h"),
        )
        .with_columns(
            ((pl.col("p_late") >= p_late_threshold) | pl.col("cold_chain_breach")).alias("alert")
        )
        .select(
            "shipment_id",
            "sku",
            "supplier_id",
            "carrier",
            "route",
            "destination",
            "departed_at",
            "promised_at",
            "eta",
            "eta_p90",
            "p_late",
            "predicted_stockout_date",
            "lands_after_stockout",
            "cold_chain_breach",
            "first_excursion_at",
            "min_c",
            "max_c",
            "reroute_carrier",
            "reroute_saves_h",
            "alert",
        )
        .sort("shipment_id")
    )
