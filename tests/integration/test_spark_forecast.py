"""LAKEHOUSE_ENGINE=spark gives the forecasts LAKEHOUSE_ENGINE=duckdb gives.

One silver_orders table (24 SKU × store series over 150 days: several order lines a day at
different prices, web orders fulfilled by the city's store, two series that start late — one
after the first backtest cutoff — and an intermittent one) is copied into two homes. The
default engine runs the nightly job's demand steps as plain functions; the Spark engine runs
the `forecast_backtest` and `demand_forecast` assets through Dagster with dagster-pyspark's
resource (its session: this module's). The daily demand, the backtest scores, the champions,
the interval calibration and the forecasts are compared: equal, value for value.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from deltalake import write_deltalake
from spark_kit import module_spark

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from dagster_project.assets.silver import pyspark_resource
from dagster_project.forecasting import engine_assets
from dagster_project.resources import LakehouseResource
from forecasting import pipeline
from forecasting.demand import daily_demand
from forecasting.spark_forecast import collect_daily, spark_daily_demand
from lake.tables import SILVER_ORDERS_SCHEMA, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

LAST = date(2026, 11, 25)
DAYS = 150
LATE_ID = "K05|s_lille"  # starts 40 days before the end: after the first backtest cutoff
WEB_ID = "K00|s_lyon"  # web orders of Lyon customers, fulfilled by the Lyon store
INTERMITTENT_ID = "K03|s_paris"
STORES = ("s_paris", "s_lyon", "s_lille", "s_nantes")
CITY = {"s_paris": "Paris", "s_lyon": "Lyon", "s_lille": "Lille", "s_nantes": "Nantes"}


def _orders(seed: int = 4) -> pl.DataFrame:
    """silver_orders rows: per series and day a Poisson number of units with a weekly season,
    split into 1-3 order lines at prices that vary by a few cents (and -20 % on promotions)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {c: [] for c in ("order_id", "ts", "sku", "store", "qty")}
    rows |= {"price": [], "channel": []}
    for k in range(6):
        for store in STORES:
            uid = f"K{k:02d}|{store}"
            first = DAYS - 40 if uid == LATE_ID else (DAYS - 90 if k == 4 else 0)
            rate = 0.25 if uid == INTERMITTENT_ID else 2.0 + 3 * k
            for day in range(first, DAYS):
                ds = LAST - timedelta(days=DAYS - 1 - day)
                units = rng.poisson(rate * (1.4 if ds.weekday() >= 5 else 1.0))
                if day == first:
                    units = max(units, 1)  # the series starts with a sale
                parts = rng.multinomial(units, [0.5, 0.3, 0.2]) if units else []
                for line, qty in enumerate(p for p in parts if p):
                    price = round(9.99 + k * 5 + rng.integers(-3, 4) * 0.01, 2)
                    price = round(price * 0.8, 2) if rng.random() < 0.1 else price
                    rows["order_id"].append(f"o{k}{store}{day}-{line}")
                    at = datetime(ds.year, ds.month, ds.day, 9 + line, tzinfo=UTC)
                    rows["ts"].append(at)
                    rows["sku"].append(f"K{k:02d}")
                    rows["store"].append(store)
                    rows["qty"].append(int(qty))
                    rows["price"].append(price)
                    rows["channel"].append("web" if uid == WEB_ID and line else "store")
    frame = pl.DataFrame(rows, schema_overrides={"ts": pl.Datetime("us", "UTC")})
    n = frame.height
    return frame.select(
        "order_id",
        pl.lit(0, pl.Int32).alias("line"),
        "ts",
        pl.col("ts").dt.date().alias("order_date"),
        pl.lit("c_hash").alias("customer_id_hash"),
        "channel",
        pl.when(pl.col("channel") == "web").then(None).otherwise(pl.col("store")).alias("store_id"),
        pl.col("store").replace_strict(CITY).alias("city"),
        pl.lit("FR").alias("country"),
        "sku",
        pl.col("qty").cast(pl.Int32),
        "price",
        (pl.col("qty") * pl.col("price")).round(2).alias("line_amount"),
        pl.lit(0, pl.Int32).alias("source_epoch"),
        pl.lit(0, pl.Int32).alias("source_partition"),
        pl.Series("source_offset", np.arange(n, dtype=np.int64)),
        pl.col("ts").alias("ingested_at"),
    )


spark = module_spark("test-spark-forecast")


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """engine → a home holding the same silver_orders."""
    source = tmp_path_factory.mktemp("orders") / "home"
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(source)})
    write_deltalake(
        silver_uri(settings, "silver_orders"),
        _orders().to_arrow().cast(SILVER_ORDERS_SCHEMA),
        partition_by=["order_date"],
    )
    out = {}
    for engine in ("duckdb", "spark"):
        out[engine] = tmp_path_factory.mktemp(engine) / "home"
        shutil.copytree(source, out[engine])
    return out


OPTIONS = pipeline.ForecastOptions()


@pytest.fixture(scope="module")
def lakes(homes: dict[str, Path], spark: SparkSession) -> dict[str, Settings]:
    """The nightly demand steps on each engine: plain functions on the default one, the
    Dagster assets with dagster-pyspark's resource on Spark."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LAKEHOUSE_")}
    try:
        for name in saved:
            del os.environ[name]
        duck = Settings.from_env({"LAKEHOUSE_HOME": str(homes["duckdb"])})
        pipeline.run_backtest(duck, OPTIONS)
        pipeline.run_forecast(duck, OPTIONS)
        os.environ |= {"LAKEHOUSE_HOME": str(homes["spark"]), "LAKEHOUSE_ENGINE": "spark"}
        settings = Settings.from_env()
        result = dg.materialize(
            engine_assets("spark"),
            resources={"lakehouse": LakehouseResource(), "pyspark": pyspark_resource(settings)},
        )
        assert result.success
        return {"duckdb": duck, "spark": settings}
    finally:
        for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
            del os.environ[name]
        os.environ |= saved


def test_daily_demand_aggregated_by_spark_is_the_default_engines(
    homes: dict[str, Path], spark: SparkSession
) -> None:
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(homes["duckdb"])})
    orders = pipeline.read_silver(settings, "silver_orders")
    assert orders is not None
    expected = daily_demand(orders.sort("order_id", "line"))
    actual = collect_daily(spark_daily_demand(spark, settings))  # type: ignore[arg-type]
    assert actual.schema == expected.schema
    assert actual.equals(expected)
    # what the comparison covered: mean prices of several lines, zero days, the web rule
    lines = orders.group_by("sku", "store_id", "order_date").agg(
        pl.col("price").n_unique().alias("prices")
    )
    assert lines["prices"].max() >= 3  # type: ignore[operator]
    assert expected.filter(pl.col("y") == 0).height > 100
    assert WEB_ID in expected["unique_id"].to_list()
    assert expected.filter(pl.col("unique_id") == LATE_ID).height == 40


def test_champions_and_forecasts_are_the_same_on_both_engines(
    lakes: dict[str, Settings],
) -> None:
    for table in pipeline.GOLD_TABLES[:5]:  # backtest, champions, calibration, forecasts
        expected = pipeline.read_gold(lakes["duckdb"], table)
        actual = pipeline.read_gold(lakes["spark"], table)
        assert expected.height > 0, table
        keys = [c for c in ("level", "node", "unique_id", "model", "h", "ds") if c in expected]
        expected, actual = expected.sort(keys), actual.sort(keys)
        assert actual.columns == expected.columns, table
        assert actual.equals(expected), table
    champions = pipeline.read_gold(lakes["spark"], "forecast_champions")
    assert champions.height == 24
    assert champions["champion"].n_unique() >= 3, champions["champion"].value_counts()
    # the late series has a forecast, and was scored on the days it existed only
    forecast = pipeline.read_gold(lakes["spark"], "demand_forecast")
    assert forecast.filter(pl.col("unique_id") == LATE_ID).height == OPTIONS.horizon
    late = champions.filter(pl.col("unique_id") == LATE_ID)
    assert late["n"].item() < champions["n"].max()


def test_the_engine_is_the_forecast_assets_kind() -> None:
    """Same keys, deps and config on both engines; on spark the assets show the engine as a
    kind and need dagster-pyspark's resource (the run above used it)."""
    by_engine = {engine: engine_assets(engine) for engine in ("duckdb", "spark")}
    for duck, spark in zip(by_engine["duckdb"], by_engine["spark"], strict=True):
        (d,), (s,) = duck.specs, spark.specs
        assert d.key == s.key and [x.asset_key for x in d.deps] == [x.asset_key for x in s.deps]
        assert d.kinds == {"python", "delta"} and s.kinds == {"python", "delta", "spark"}
        assert "pyspark" in spark.required_resource_keys
        assert "pyspark" not in duck.required_resource_keys
