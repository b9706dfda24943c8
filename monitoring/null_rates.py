"""Null rate per column of each micro-batch, against the thresholds the contracts declare.

A topic's contract (ingestion/schemas/<topic>.v<N>.json, newest version) declares, on a
property that may be null or absent, `"x-max-null-rate": <0..1>`: the share of events of a
batch allowed to lack it. A field without the annotation is not judged (a store order's
`store_id` is legitimately null for web orders). Batches smaller than
`LAKEHOUSE_NULL_RATE_MIN_ROWS` are not judged either (one null in three rows says nothing).

Rates are computed on the raw payloads (JSON path per field, vectorised), so an encrypted
identifier counts as present and a JSON null or a missing key as null.

Plain Python (no Dagster import).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.contracts import contract
from lake.tables import open_table, raw_uri
from lakehouse.config import Settings
from monitoring.alerts import NULL_RATE, Condition

ANNOTATION = "x-max-null-rate"


def null_rate_thresholds(topic: str) -> dict[str, float]:
    """Field -> maximum null rate, as declared in the topic's newest contract."""
    props = contract(topic).schema.get("properties", {})
    return {name: float(p[ANNOTATION]) for name, p in props.items() if ANNOTATION in p}


def null_rates(payloads: pa.Array | pa.ChunkedArray, fields: list[str]) -> dict[str, float]:
    """Share of payloads (JSON objects) where each field is null or absent."""
    values = pl.Series("value", payloads).cast(pl.String)
    if values.len() == 0:
        return {}
    frame = pl.DataFrame({"value": values}).select(
        [
            pl.col("value").str.json_path_match(f"$.{name}").is_null().mean().alias(name)
            for name in fields
        ]
    )
    return {name: float(frame[name][0]) for name in fields}


def batch_payloads(settings: Settings, topic: str, batch_id: str) -> pa.ChunkedArray:
    """Payloads of one raw micro-batch (file statistics skip the other batches' files)."""
    table = open_table(raw_uri(settings, topic), settings)
    if table is None:
        return pa.chunked_array([], pa.large_string())
    dataset = table.to_pyarrow_dataset()
    rows = dataset.to_table(columns=["value"], filter=pc.field("batch_id") == batch_id)
    return rows["value"]


@dataclass(frozen=True)
class NullRateReport:
    topic: str
    batch_id: str
    rows: int
    rates: dict[str, float]
    thresholds: dict[str, float]
    judged: bool  # False: batch below the minimum size (or nothing declared)

    @property
    def breaches(self) -> dict[str, float]:
        return {c: r for c, r in self.rates.items() if r > self.thresholds[c]}

    def conditions(self) -> list[Condition]:
        if not self.judged:
            return []
        return [
            Condition(
                kind=NULL_RATE,
                subject=self.topic,
                detail=column,
                firing=rate > self.thresholds[column],
                value=round(rate, 6),
                threshold=self.thresholds[column],
                summary=(
                    f"Topic {self.topic}, field {column}: {rate:.1%} of the {self.rows:,} "
                    f"events of batch {self.batch_id} are null or missing (contract allows "
                    f"{self.thresholds[column]:.1%})"
                ),
                fix=(
                    f"fix the producer of {self.topic}; if the data is right, raise "
                    f"{ANNOTATION} of {column} in a new contract version"
                ),
                severity="warning",
            )
            for column, rate in self.rates.items()
        ]


def batch_null_rates(
    settings: Settings, topic: str, batch_id: str, payloads: pa.ChunkedArray | None = None
) -> NullRateReport:
    thresholds = null_rate_thresholds(topic)
    if payloads is None:
        payloads = batch_payloads(settings, topic, batch_id) if thresholds else None
    rows = 0 if payloads is None else len(payloads)
    judged = bool(thresholds) and rows >= settings.null_rate_min_rows
    rates = null_rates(payloads, list(thresholds)) if judged and payloads is not None else {}
    return NullRateReport(topic, batch_id, rows, rates, thresholds, judged)
