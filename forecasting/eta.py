"""Predictive ETA and OTIF (seed §3 "ETA prédictive & risques transport").

One row per shipment from silver_shipments (departed + arrived events). Features: route,
carrier, supplier (categorical codes), distance, promised transit hours, departure hour and
weekday, traffic (departure in the 7-9 h / 16-19 h rush), weather at the destination on the
departure day (rain, temperature), dock saturation, and the carrier's history of delays
(mean delay of its shipments that had **arrived before** this one departed: as-of join, no
leak). Models (LightGBM): quantile regression of transit hours at 0.5 (the ETA) and 0.9, and
a binary classifier for P(late) (late = arrival after the promised time).
Evaluation on the last 20 % of shipments by departure time: MAE in hours, Brier score and a
calibration table (predicted vs observed late rate by P(late) decile).
OTIF per day, supplier and carrier: on time (arrived ≤ promised) and in full (received ≥
ordered), from shipments joined to receipts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from forecasting.demand import STORE_CITY

ETA_FEATURES = (
    "distance_km",
    "promised_h",
    "dep_hour",
    "dep_dow",
    "rush",
    "precip_mm",
    "temp_c",
    "dock_saturation",
    "carrier_delay_hist",
    "carrier_code",
    "route_code",
    "supplier_code",
)


def shipment_table(events: pl.DataFrame) -> pl.DataFrame:
    """silver_shipments events → one row per shipment (arrived_at null while in transit)."""
    departed = events.filter(pl.col("status") == "departed").unique("shipment_id")
    arrived = (
        events.filter(pl.col("status") == "arrived")
        .unique("shipment_id")
        .select("shipment_id", pl.col("arrived_at").alias("arrived"))
    )
    return (
        departed.drop("arrived_at")
        .join(arrived, on="shipment_id", how="left")
        .rename({"arrived": "arrived_at"})
        .sort("departed_at")
    )


def eta_features(ships: pl.DataFrame, weather: pl.DataFrame | None) -> pl.DataFrame:
    base = ships.with_columns(
        ((pl.col("promised_at") - pl.col("departed_at")).dt.total_seconds() / 3600).alias(
            "promised_h"
        ),
        pl.col("departed_at").dt.hour().alias("dep_hour"),
        pl.col("departed_at").dt.weekday().alias("dep_dow"),
        pl.col("departed_at").dt.date().alias("dep_date"),
        pl.col("destination").replace_strict(STORE_CITY, default=None).alias("city"),
        ((pl.col("arrived_at") - pl.col("departed_at")).dt.total_seconds() / 3600).alias(
            "transit_h"
        ),
        (pl.col("arrived_at") > pl.col("promised_at")).cast(pl.Float64).alias("late"),
        ((pl.col("arrived_at") - pl.col("promised_at")).dt.total_seconds() / 3600).alias("delay_h"),
    ).with_columns(
        (pl.col("dep_hour").is_between(7, 9) | pl.col("dep_hour").is_between(16, 19))
        .cast(pl.Float64)
        .alias("rush"),
        # codes by sorted value (stable across processes: registered models, see
        # forecasting/model_registry.py)
        (pl.col("carrier").rank("dense") - 1).cast(pl.Int64).alias("carrier_code"),
        (pl.col("route").rank("dense") - 1).cast(pl.Int64).alias("route_code"),
        (pl.col("supplier_id").rank("dense") - 1).cast(pl.Int64).alias("supplier_code"),
    )
    if weather is not None and weather.height:
        w = weather.select(
            "city", pl.col("weather_date").alias("dep_date"), "precip_mm", "temp_c"
        ).unique(["city", "dep_date"])
        base = base.join(w, on=["city", "dep_date"], how="left")
    else:
        base = base.with_columns(
            pl.lit(None, pl.Float64).alias("precip_mm"), pl.lit(None, pl.Float64).alias("temp_c")
        )
    # carrier delay history: cumulative mean delay of arrivals strictly before departure
    hist = (
        base.filter(pl.col("arrived_at").is_not_null())
        .sort("arrived_at")
        .select(
            "carrier",
            pl.col("arrived_at").alias("t"),
            (
                pl.col("delay_h").cum_sum().over("carrier")
                / pl.col("delay_h").cum_count().over("carrier")
            ).alias("carrier_delay_hist"),
        )
    )
    out = base.sort("departed_at").join_asof(
        hist.sort("t"),
        left_on="departed_at",
        right_on="t",
        by="carrier",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # both sides sorted just above; polars cannot check with `by`
    )
    return out.drop("t")


@dataclass
class EtaModels:
    median: object
    p90: object
    late: object

    def predict(self, rows: pl.DataFrame) -> pl.DataFrame:
        x = rows.select(ETA_FEATURES).to_numpy().astype(np.float64)
        return rows.select("shipment_id").with_columns(
            pl.Series("eta_h", np.maximum(self.median.predict(x), 0.0)),  # type: ignore[attr-defined]
            pl.Series("eta_p90_h", np.maximum(self.p90.predict(x), 0.0)),  # type: ignore[attr-defined]
            pl.Series("p_late", np.clip(self.late.predict(x), 0.0, 1.0)),  # type: ignore[attr-defined]
        )


def train_eta(rows: pl.DataFrame, rounds: int = 200, seed: int = 11) -> EtaModels:
    import lightgbm as lgb

    x = rows.select(ETA_FEATURES).to_numpy().astype(np.float64)
    common = {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "num_threads": 1,  # OpenMP workers spin: 2 threads on a busy 2-core box cost ~10x
        "seed": seed,
        "verbose": -1,
    }
    y = rows["transit_h"].to_numpy()
    late = rows["late"].to_numpy()

    def fit(params: dict[str, object], target: np.ndarray) -> object:
        data = lgb.Dataset(x, target, feature_name=list(ETA_FEATURES))
        return lgb.train({**common, **params}, data, num_boost_round=rounds)

    return EtaModels(
        fit({"objective": "quantile", "alpha": 0.5}, y),
        fit({"objective": "quantile", "alpha": 0.9}, y),
        fit({"objective": "binary"}, late),
    )


@dataclass(frozen=True)
class EtaEvaluation:
    mae_hours: float
    mae_promised_hours: float  # the peer: "it arrives when promised"
    p90_coverage: float
    brier: float
    brier_base_rate: float  # the peer: constant late rate of the training set
    calibration: pl.DataFrame  # decile, mean predicted, observed, n
    n_test: int


def split_eta(features: pl.DataFrame, test_share: float = 0.2) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, test): arrived shipments by departure time, the last `test_share` for test."""
    done = features.filter(pl.col("arrived_at").is_not_null()).sort("departed_at")
    split = int(done.height * (1 - test_share))
    return done[:split], done[split:]


def mae_hours(model: object, test: pl.DataFrame) -> float:
    """MAE (hours) of a transit-time regressor (the ETA median booster) on test rows."""
    x = test.select(ETA_FEATURES).to_numpy().astype(np.float64)
    pred = np.maximum(model.predict(x), 0.0)  # type: ignore[attr-defined]
    return float(np.abs(pred - test["transit_h"].to_numpy()).mean())


@dataclass(frozen=True)
class EtaRun:
    final: EtaModels  # refit on every arrived shipment: predicts the open ones
    validated: EtaModels  # fit on the train split only: the one evaluated (and registered)
    evaluation: EtaEvaluation
    test: pl.DataFrame


def evaluate_eta(features: pl.DataFrame, test_share: float = 0.2) -> EtaRun:
    train, test = split_eta(features, test_share)
    done = pl.concat([train, test])
    models = train_eta(train)
    pred = models.predict(test).with_columns(test.select("transit_h", "late", "promised_h"))
    base_rate = float(train["late"].mean())  # type: ignore[arg-type]
    calib = (
        pred.with_columns((pl.col("p_late") * 10).floor().clip(0, 9).cast(pl.Int32).alias("decile"))
        .group_by("decile")
        .agg(
            pl.col("p_late").mean().alias("predicted"),
            pl.col("late").mean().alias("observed"),
            pl.len().alias("n"),
        )
        .sort("decile")
    )
    ev = EtaEvaluation(
        mae_hours=float((pred["eta_h"] - pred["transit_h"]).abs().mean()),  # type: ignore[arg-type]
        mae_promised_hours=float((pred["promised_h"] - pred["transit_h"]).abs().mean()),  # type: ignore[arg-type]
        p90_coverage=float((pred["transit_h"] <= pred["eta_p90_h"]).mean()),  # type: ignore[arg-type]
        brier=float(((pred["p_late"] - pred["late"]) ** 2).mean()),  # type: ignore[arg-type]
        brier_base_rate=float(((base_rate - pred["late"]) ** 2).mean()),  # type: ignore[arg-type]
        calibration=calib,
        n_test=test.height,
    )
    return EtaRun(train_eta(done), models, ev, test)


def eta_predictions(models: EtaModels, features: pl.DataFrame) -> pl.DataFrame:
    """Open shipments (no arrival yet): predicted arrival, p90 arrival and P(late)."""
    open_rows = features.filter(pl.col("arrived_at").is_null())
    if open_rows.height == 0:
        return pl.DataFrame(
            schema={
                "shipment_id": pl.String,
                "supplier_id": pl.String,
                "carrier": pl.String,
                "route": pl.String,
                "departed_at": pl.Datetime("us", "UTC"),
                "promised_at": pl.Datetime("us", "UTC"),
                "eta": pl.Datetime("us", "UTC"),
                "eta_p90": pl.Datetime("us", "UTC"),
                "p_late": pl.Float64,
            }
        )
    pred = models.predict(open_rows)
    return open_rows.select(
        "shipment_id", "supplier_id", "carrier", "route", "departed_at", "promised_at"
    ).with_columns(
        (pl.col("departed_at") + pl.duration(seconds=(pred["eta_h"] * 3600).round())).alias("eta"),
        (pl.col("departed_at") + pl.duration(seconds=(pred["eta_p90_h"] * 3600).round())).alias(
            "eta_p90"
        ),
        pred["p_late"],
    )


def otif_daily(ships: pl.DataFrame, receipts: pl.DataFrame) -> pl.DataFrame:
    """On-time-in-full per receipt day, supplier and carrier."""
    done = ships.filter(pl.col("arrived_at").is_not_null()).select(
        "po_id", "supplier_id", "carrier", "arrived_at", "promised_at"
    )
    joined = done.join(receipts.select("po_id", "qty_ordered", "qty_received"), on="po_id")
    return (
        joined.with_columns(
            pl.col("arrived_at").dt.date().alias("d"),
            (pl.col("arrived_at") <= pl.col("promised_at")).alias("on_time"),
            (pl.col("qty_received") >= pl.col("qty_ordered")).alias("in_full"),
        )
        .group_by("d", "supplier_id", "carrier")
        .agg(
            pl.len().alias("deliveries"),
            pl.col("on_time").mean().alias("on_time_rate"),
            pl.col("in_full").mean().alias("in_full_rate"),
            (pl.col("on_time") & pl.col("in_full")).mean().alias("otif_rate"),
        )
        .sort("d", "supplier_id", "carrier")
    )
