"""Daily demand per SKU × store from silver_orders, with the features the models use.

Fulfilment rule (same as the inventory generator and the dbt stock KPIs): store orders come
from their store, web/app orders from the store of the delivery city (`s_<city>`). Days
without sales are zero rows: every series covers every day from its first sale to the last
day of data. Frames are polars; the columns every model sees:

    unique_id "sku|store_id", sku, store_id, city, ds (date), y (units),
    price (unit price paid, carried forward over zero days), promo (0/1), holiday (0/1),
    temp_c, precip_mm (city weather of the day; missing → city climatology).
"""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import numpy as np
import polars as pl

from ingestion.generators.catalog import CITIES, promo_calendar

EXOG = ("price_ratio", "promo", "holiday", "temp_c", "precip_mm")
STORE_CITY = {c.store_id: c.name for c in CITIES}


def daily_demand(order_lines: pl.DataFrame) -> pl.DataFrame:
    """silver_orders rows (sku, store_id, city, order_date, qty, price) → one row per
    (sku, fulfilment store, day) with units and mean price, zero-filled."""
    lines = order_lines.select(
        "sku",
        pl.coalesce(pl.col("store_id"), pl.lit("s_") + pl.col("city").str.to_lowercase()).alias(
            "store_id"
        ),
        "city",
        pl.col("order_date").alias("ds"),
        pl.col("qty").cast(pl.Float64),
        pl.col("price").cast(pl.Float64),
    )
    daily = lines.group_by("sku", "store_id", "ds").agg(
        pl.col("qty").sum().alias("y"),
        ((pl.col("qty") * pl.col("price")).sum() / pl.col("qty").sum()).alias("price"),
        pl.col("city").first(),
    )
    if daily.height == 0:
        return daily
    last = daily["ds"].max()
    spans = daily.group_by("sku", "store_id").agg(
        pl.col("ds").min().alias("first"), pl.col("city").first()
    )
    grid = spans.with_columns(pl.date_ranges("first", pl.lit(last)).alias("ds")).explode("ds")
    full = (
        grid.join(daily.drop("city"), on=["sku", "store_id", "ds"], how="left")
        .with_columns(pl.col("y").fill_null(0.0))
        .sort("sku", "store_id", "ds")
        .with_columns(
            pl.col("price").forward_fill().backward_fill().over("sku", "store_id"),
            (pl.col("sku") + "|" + pl.col("store_id")).alias("unique_id"),
        )
    )
    return full.select("unique_id", "sku", "store_id", "city", "ds", "y", "price")


def calendar_features(frame: pl.DataFrame, weather: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add promo (catalog promo calendar, known in advance), holiday (FR public holidays),
    price_ratio (price / the series' median price) and weather (temp_c, precip_mm by city and
    day; days without a reading get the city's mean of the same ISO week, else 12 °C / 1 mm)."""
    first, last = frame["ds"].min(), frame["ds"].max()
    promos = promo_calendar(first, last).select(
        "sku", pl.col("date").alias("ds"), pl.lit(1.0).alias("promo")
    )
    fr = holidays.France(years=range(first.year, last.year + 1))
    days = pl.DataFrame({"ds": pl.date_range(first, last, eager=True)}).with_columns(
        pl.col("ds").is_in(list(fr)).cast(pl.Float64).alias("holiday")
    )
    out = (
        frame.join(promos, on=["sku", "ds"], how="left")
        .join(days, on="ds", how="left")
        .with_columns(
            pl.col("promo").fill_null(0.0),
            (pl.col("price") / pl.col("price").median().over("unique_id")).alias("price_ratio"),
        )
    )
    if weather is not None and weather.height:
        w = weather.select(
            "city", pl.col("weather_date").alias("ds"), "temp_c", "precip_mm"
        ).unique(["city", "ds"])
        clim = w.group_by("city", pl.col("ds").dt.week().alias("week")).agg(
            pl.col("temp_c").mean().alias("temp_clim"), pl.col("precip_mm").mean().alias("p_clim")
        )
        out = (
            out.join(w, on=["city", "ds"], how="left")
            .with_columns(pl.col("ds").dt.week().alias("week"))
            .join(clim, on=["city", "week"], how="left")
            .with_columns(
                pl.coalesce("temp_c", "temp_clim", pl.lit(12.0)).alias("temp_c"),
                pl.coalesce("precip_mm", "p_clim", pl.lit(1.0)).alias("precip_mm"),
            )
            .drop("week", "temp_clim", "p_clim")
        )
    else:
        out = out.with_columns(pl.lit(12.0).alias("temp_c"), pl.lit(1.0).alias("precip_mm"))
    return out.sort("unique_id", "ds")


def future_frame(history: pl.DataFrame, horizon: int, weather: pl.DataFrame | None) -> pl.DataFrame:
    """Exogenous rows for the `horizon` days after each series' last day: promo calendar and
    holidays are known; price = the last non-promo price (promo days: −20 %); weather from
    climatology (or readings when the weather topic already carries those days)."""
    last = history.group_by("unique_id").agg(
        pl.col("sku").first(),
        pl.col("store_id").first(),
        pl.col("city").first(),
        pl.col("ds").max().alias("last"),
        pl.col("price").filter(pl.col("promo") == 0).last().alias("base_price"),
        pl.col("price").median().alias("median_price"),
    )
    grid = last.with_columns(
        pl.date_ranges(
            pl.col("last") + timedelta(days=1), pl.col("last") + timedelta(days=horizon)
        ).alias("ds")
    ).explode("ds")
    rows = grid.with_columns(
        pl.coalesce("base_price", "median_price").alias("price"), pl.lit(None).alias("y")
    ).select("unique_id", "sku", "store_id", "city", "ds", "price")
    feats = calendar_features(rows, weather)
    # price on promo days is the discounted one, relative to the history's median price
    med = last.select("unique_id", "median_price")
    return (
        feats.join(med, on="unique_id", how="left")
        .with_columns(
            (pl.col("price") * pl.when(pl.col("promo") > 0).then(0.8).otherwise(1.0)).alias("price")
        )
        .with_columns((pl.col("price") / pl.col("median_price")).alias("price_ratio"))
        .drop("median_price")
    )


DEMAND_COLUMNS = ("unique_id", "sku", "store_id", "city", "ds", "y", "price")


def forecast_inputs(
    daily: pl.DataFrame,
    weather: pl.DataFrame | None,
    horizon: int,
    cutoff: date | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history with features, future exogenous rows) exactly as a forecast made at the end of
    `cutoff` (default: the last day of data) sees them: demand and weather readings up to the
    cutoff only, then `future_frame` (promotions from the calendar, the last regular price,
    climatology weather). The nightly forecast and every backtest window call this, so a
    backtest window sees what production would have seen that day, nothing more."""
    base = daily.select(DEMAND_COLUMNS)
    if cutoff is not None:
        base = base.filter(pl.col("ds") <= cutoff)
        if weather is not None:
            weather = weather.filter(pl.col("weather_date") <= cutoff)
    history = calendar_features(base, weather)
    return history, future_frame(history, horizon, weather)


def split_at(frame: pl.DataFrame, cutoff: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history up to and including cutoff, the rows after it **without y**)."""
    train = frame.filter(pl.col("ds") <= cutoff)
    future = frame.filter(pl.col("ds") > cutoff).drop("y")
    return train, future


def intermittency(frame: pl.DataFrame) -> pl.DataFrame:
    """Share of zero days and average demand interval (ADI) per series."""
    return frame.group_by("unique_id").agg(
        (pl.col("y") == 0).mean().alias("zero_share"),
        (pl.len() / (pl.col("y") > 0).sum().clip(1)).alias("adi"),
    )


def as_matrix(frame: pl.DataFrame, column: str = "y") -> tuple[list[str], np.ndarray]:
    """[series, days] matrix of `column` (series sorted by unique_id)."""
    wide = frame.pivot(on="ds", index="unique_id", values=column, sort_columns=True).sort(
        "unique_id"
    )
    return wide["unique_id"].to_list(), wide.drop("unique_id").to_numpy().astype(float)


def store_city_map(frame: pl.DataFrame) -> dict[str, str]:
    pairs = frame.select("store_id", "city").unique()
    return dict(zip(pairs["store_id"].to_list(), pairs["city"].to_list(), strict=True))


def first_day(frame: pl.DataFrame) -> date:
    return frame["ds"].min()
