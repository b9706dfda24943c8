"""The demand forecast on the `spark` engine (LAKEHOUSE_ENGINE=spark): the daily demand
aggregation and the statistical candidates run on Spark, the global LightGBM on the driver.

- `spark_daily_demand` is `forecasting.demand.daily_demand` in Spark, from silver_orders'
  Parquet files: same fulfilment rule, same zero-filled grid, same carried price. The mean
  price of a day is Σ qty·price / Σ qty with the Σ qty·price of polars (compensated, Kahan,
  in (order_id, line) order, the order `demand_inputs` sorts the lines in), so the collected
  frame equals the DuckDB engine's bit for bit and the LightGBM features do too.
- `SparkStatsModels` is the statsforecast candidate group (SeasonalNaive, AutoETS,
  CrostonOptimized, TSB) through statsforecast's distributed backend (Fugue on Spark): the
  series hashed over Spark partitions, each fitted on the same `FIT_DAYS` as the local
  group. Every backtest window goes in one job (the window is part of the series key). Not
  statsforecast's `cross_validation`: it refuses series shorter than the whole backtest
  span, which the local backtest keeps (a series that starts late has fewer windows).
  Forecasts are collected as float64 (`_backend_class`).

No Dagster import: callers pass the SparkSession (the Dagster assets pass the one of
dagster-pyspark's resource).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from forecasting.demand import DEMAND_COLUMNS
from forecasting.models import FIT_DAYS, STAT_MODELS, named_columns, stat_models
from lake.spark_silver import read_delta
from lake.tables import open_table, silver_uri
from lakehouse.config import Settings

WINDOW_SEPARATOR = "#"  # backtest series key: "<cutoff>#<unique_id>"


def _kahan_sum(values: F.Column) -> F.Column:
    """Σ of an array of doubles, folded in array order with Kahan's compensation: the float
    sum polars computes in a group_by (`daily_demand`), bit for bit."""
    start = F.struct(F.lit(0.0).alias("s"), F.lit(0.0).alias("c"))

    def step(acc: F.Column, x: F.Column) -> F.Column:
        y = x - acc["c"]
        t = acc["s"] + y
        return F.struct(t.alias("s"), ((t - acc["s"]) - y).alias("c"))

    return F.aggregate(values, start, step, lambda acc: acc["s"])


def spark_daily_demand(
    spark: SparkSession,
    settings: Settings,
    as_of: date | None = None,
    max_series: int | None = None,
) -> DataFrame | None:
    """silver_orders → one row per (sku, fulfilment store, day), zero-filled, DEMAND_COLUMNS;
    then, as `demand_inputs` does, the days up to `as_of` and the first `max_series` series.
    None when silver_orders does not exist or is empty."""
    uri = silver_uri(settings, "silver_orders")
    table = open_table(uri, settings)
    if table is None or not table.file_uris():
        return None
    orders = read_delta(spark, uri, settings.storage_options)
    lines = orders.select(
        "sku",
        F.coalesce("store_id", F.concat(F.lit("s_"), F.lower("city"))).alias("store_id"),
        "city",
        # order_date is the partition column (not in the files): the UTC date of ts, as silver
        # defines it (the engine's session time zone is UTC, lake.spark_silver.spark_config)
        F.to_date("ts").alias("ds"),
        F.col("qty").cast("double").alias("qty"),
        "order_id",
        "line",
        (F.col("qty").cast("double") * F.col("price")).alias("amount"),
    )
    daily = lines.groupBy("sku", "store_id", "ds").agg(
        F.sum("qty").alias("y"),
        F.array_sort(F.collect_list(F.struct("order_id", "line", "amount"))).alias("_lines"),
    )
    daily = daily.select(
        "sku",
        "store_id",
        "ds",
        "y",
        (_kahan_sum(daily["_lines"]["amount"]) / F.col("y")).alias("price"),
    )
    spans = lines.groupBy("sku", "store_id").agg(
        F.min("ds").alias("first"), F.max("ds").alias("last"), F.min("city").alias("city")
    )
    # every series runs to the last day of data (a window over the series' spans: one job)
    spans = spans.withColumn("last", F.max("last").over(Window.partitionBy()))
    grid = spans.select(
        "sku", "store_id", "city", F.explode(F.sequence("first", "last")).alias("ds")
    )
    series = Window.partitionBy("sku", "store_id").orderBy("ds")
    before = series.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    after = series.rowsBetween(Window.currentRow, Window.unboundedFollowing)
    full = grid.join(daily, ["sku", "store_id", "ds"], "left").select(
        F.concat("sku", F.lit("|"), "store_id").alias("unique_id"),
        "sku",
        "store_id",
        "city",
        "ds",
        F.coalesce("y", F.lit(0.0)).alias("y"),
        F.coalesce(
            F.last("price", ignorenulls=True).over(before),
            F.first("price", ignorenulls=True).over(after),
        ).alias("price"),
    )
    if as_of is not None:
        full = full.where(F.col("ds") <= F.lit(as_of))
    if max_series:
        keep = full.select("unique_id").distinct().orderBy("unique_id").limit(max_series)
        full = full.join(keep, "unique_id", "left_semi")
    return full.select(*DEMAND_COLUMNS)


def collect_daily(frame: DataFrame) -> pl.DataFrame:
    """The Spark daily demand on the driver (through Arrow), ordered as `daily_demand`'s."""
    daily = pl.from_arrow(frame.toArrow())
    assert isinstance(daily, pl.DataFrame)
    return (
        daily.with_columns(pl.col("ds").cast(pl.Date), pl.col("y", "price").cast(pl.Float64))
        .sort("sku", "store_id", "ds")
        .select(DEMAND_COLUMNS)
    )


@functools.cache
def _backend_class() -> type:
    """statsforecast's FugueBackend with two changes: float64 forecast columns (its schema
    says float32, which would round the numbers the champions are picked on), and the series
    handed to the models a Spark partition at a time (Fugue's `coarse` partitioning: one
    statsforecast call per partition; the default is one per series, whose fixed cost per
    call exceeds a SeasonalNaive or Croston fit). Each series is fitted alone either way."""
    import pyarrow as pa
    from fugue import transform
    from statsforecast.distributed.fugue import FugueBackend
    from triad import Schema

    class PartitionedFugueBackend(FugueBackend):
        def _get_output_schema(self, **kwargs: object) -> Schema:
            schema = super()._get_output_schema(**kwargs)
            return Schema(
                [
                    pa.field(f.name, pa.float64()) if pa.types.is_float32(f.type) else f
                    for f in schema.fields
                ]
            )

        def forecast_series(self, df: DataFrame, models: list[object], h: int) -> DataFrame:
            columns = {"id_col": "unique_id", "time_col": "ds", "target_col": "y"}
            schema = self._get_output_schema(
                df=df, models=models, level=None, mode="forecast", **columns
            )
            params = {"models": models, "freq": "D", "fallback_model": None, "h": h}
            params |= {"level": None, "prediction_intervals": None, **columns}
            return transform(
                df,
                self._forecast_noX,
                params=params,
                schema=schema,
                partition={"by": "unique_id", "algo": "coarse"},
                engine=self._engine,
            )

    return PartitionedFugueBackend


class SparkStatsModels:
    """`forecasting.models.statsforecast_models` on Spark: the same models on the same fitting
    days of the same daily demand (`daily`, the Spark frame the driver's copy was collected
    from), the series spread over Spark partitions by statsforecast's Fugue backend."""

    def __init__(self, daily: DataFrame, names: tuple[str, ...] = STAT_MODELS) -> None:
        self.daily = daily
        self.names = names

    def forecast_windows(self, cutoffs: Sequence[date], horizon: int) -> pl.DataFrame:
        """unique_id, ds, cutoff, <one column per model>: for each cutoff, a forecast of the
        `horizon` days after it fitted on the `FIT_DAYS` days up to it. One Spark job."""
        from fugue import make_execution_engine

        frames = [
            self.daily.where(
                (F.col("ds") <= F.lit(c)) & (F.col("ds") > F.lit(c - timedelta(days=FIT_DAYS)))
            ).select(
                F.concat(F.lit(f"{c.isoformat()}{WINDOW_SEPARATOR}"), "unique_id").alias(
                    "unique_id"
                ),
                F.col("ds").cast("timestamp_ntz").alias("ds"),
                "y",
            )
            for c in cutoffs
        ]
        windows = functools.reduce(DataFrame.unionByName, frames)
        models = stat_models(self.names)
        backend = _backend_class()(make_execution_engine(infer_by=[windows]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = backend.forecast_series(windows, models, horizon)
            table = out.toArrow()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        key = pl.col("unique_id").str.splitn(WINDOW_SEPARATOR, 2)  # ids may hold the separator
        frame = frame.with_columns(
            key.struct.field("field_1").alias("unique_id"),
            key.struct.field("field_0").str.to_date().alias("cutoff"),
            pl.col("ds").cast(pl.Date),
        )
        return named_columns(frame, models, self.names).select(
            "unique_id", "ds", "cutoff", *self.names
        )

    def __call__(self, train: pl.DataFrame, future: pl.DataFrame, horizon: int) -> pl.DataFrame:
        """The candidate-group call (`forecasting.models.Candidate`) at `train`'s last day:
        `train` is the driver's copy of `daily` up to that day (`forecast_inputs`)."""
        cutoff = train["ds"].max()
        assert isinstance(cutoff, date)
        return self.forecast_windows([cutoff], horizon).drop("cutoff")
