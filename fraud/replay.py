"""Replay a stream (silver columns) through the online path: snapshot → features → record,
with labels applied as their report time passes. Used by the parity tests and the benchmarks
(the service's warm-up loads the same state column-wise: `fraud.store.state_from_history`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl

from fraud.features import online_features
from fraud.store import FeatureStore


def replay(
    store: FeatureStore, transactions: pl.DataFrame, labels: pl.DataFrame | None = None
) -> Iterator[tuple[dict[str, object], dict[str, float]]]:
    """Yield (transaction row, online features) in (ts, transaction_id) order."""
    tx = transactions.sort("ts", "transaction_id")
    ts = tx["ts"].dt.epoch("us").to_numpy()
    if labels is not None and labels.height:
        lab = labels.sort("reported_at")
        lab_t = lab["reported_at"].dt.epoch("us").to_numpy()
        lab_rows = lab.select("transaction_id", "is_fraud").rows()
    else:
        lab_t, lab_rows = np.empty(0, dtype=np.int64), []
    next_label = 0
    for i, row in enumerate(tx.iter_rows(named=True)):
        t = int(ts[i])
        while next_label < len(lab_rows) and lab_t[next_label] <= t:
            txid, is_fraud = lab_rows[next_label]
            store.record_label(str(txid), bool(is_fraud), int(lab_t[next_label]))
            next_label += 1
        features = online_features(row, t, store.snapshot(row, t))
        store.record(row, t)
        yield row, features
