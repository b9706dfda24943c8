"""fraud_features step on hand-written silver Delta tables (no broker): a micro-batch reads
the 30 days before its earliest transaction plus a summary of everything older, and writes
the same features a run over the whole history computes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from deltalake import write_deltalake

from fraud.features import FEATURES, batch_features
from fraud.pipeline import build_features, features_uri, read_table
from fraud.simulator import generate_transactions
from fraud.training import silver_from_events
from lake.tables import silver_uri
from lakehouse.config import Settings

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_micro_batches_get_the_features_of_the_whole_history(settings: Settings) -> None:
    stream = generate_transactions(T0, T0 + timedelta(days=33), seed=4, scale=0.01)
    silver = silver_from_events(stream.transactions.drop("is_fraud", "scenario"), "k")
    labels = stream.labels.filter(pl.col("reported_at") < T0 + timedelta(days=33))
    write_deltalake(silver_uri(settings, "silver_fraud_labels"), labels.to_arrow())
    uri = silver_uri(settings, "silver_transactions")
    split = T0 + timedelta(days=32, hours=12)
    write_deltalake(uri, silver.filter(pl.col("ts") < split).to_arrow())
    first = build_features(settings)
    assert first.rows_written == first.rows_in > 0
    write_deltalake(uri, silver.filter(pl.col("ts") >= split).to_arrow(), mode="append")
    second = build_features(settings)
    assert second.rows_written == second.rows_in == silver.filter(pl.col("ts") >= split).height
    assert second.extra["summarised_rows"] > 0  # more than 30 days back: summarised
    assert build_features(settings).rows_written == 0  # nothing new

    stored = read_table(settings, features_uri(settings))
    assert stored is not None
    stored = stored.sort("ts", "transaction_id").filter(pl.col("ts") >= split)
    expected = batch_features(silver, labels).filter(pl.col("ts") >= split)
    assert stored["transaction_id"].to_list() == expected["transaction_id"].to_list()
    for name in FEATURES:
        a = stored[name].fill_null(np.nan).to_numpy()
        b = expected[name].fill_null(np.nan).to_numpy()
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), name
