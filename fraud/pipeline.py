"""Streaming steps of the fraud chain (called by the Dagster assets and the CLI):

silver_transactions → fraud_features → fraud_decisions, each step reading only what its
source table gained since its last run (a Delta transaction marker in its own commit, as in
lake/silver.py) and MERGE-inserting on transaction_id, so re-runs are harmless.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, Transaction

from fraud.features import CONTEXT_US, FEATURES, batch_features, prior_history
from fraud.scoring import EVENT_FIELDS, OPTIONAL_EVENT_FIELDS, score_frame
from lake.silver import rows_added_since
from lake.tables import UTC_TS, insert_new_rows, open_table, silver_uri
from lakehouse.config import Settings

log = logging.getLogger(__name__)

FEATURES_MARKER = "fraud_features<-silver_transactions"
DECISIONS_MARKER = "fraud_decisions<-fraud_features"

FEATURES_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("tx_date", pa.date32(), nullable=False),
        *[pa.field(name, pa.float64()) for name in FEATURES],
        pa.field("computed_at", UTC_TS, nullable=False),
    ]
)
DECISIONS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("tx_date", pa.date32(), nullable=False),
        pa.field("card_hash", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("anomaly_score", pa.float64(), nullable=False),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("rule_ids", pa.list_(pa.string())),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("config_version", pa.string(), nullable=False),
        pa.field("decision_latency_ms", pa.float64(), nullable=False),
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("decided_at", UTC_TS, nullable=False),
        pa.field("lag_ms", pa.float64(), nullable=False),
    ]
)


def features_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "fraud_features")


def decisions_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "fraud_decisions")


def drift_psi_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "fraud_drift_psi")


@dataclass
class StepResult:
    table: str
    source_version_from: int | None
    source_version_to: int | None
    rows_in: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.table}: {self.rows_written} rows from {self.rows_in} new source rows in {self.seconds:.1f}s"


def read_table(
    settings: Settings,
    uri: str,
    columns: list[str] | None = None,
    optional: tuple[str, ...] = (),
) -> pl.DataFrame | None:
    """The table's `columns` (None: all); those named in `optional` are left out when the table
    predates them (a column a newer contract version added)."""
    table = open_table(uri, settings)
    if table is None:
        return None
    dataset = table.to_pyarrow_dataset()
    if columns is not None and optional:
        present = set(dataset.schema.names)
        columns = [c for c in columns if c in present or c not in optional]
    return pl.from_arrow(dataset.to_table(columns=columns))  # type: ignore[return-value]


def _insert(
    settings: Settings, uri: str, rows: pa.Table, marker: str, version: int, partition: str
) -> int:
    commit = CommitProperties(app_transactions=[Transaction(marker, version)])
    return insert_new_rows(settings, uri, rows, "transaction_id", partition, commit)


def build_features(settings: Settings) -> StepResult:
    """Features of the transactions silver gained since the last run. The windows (velocity,
    z-score, the card's and the merchant's 1/7/30-day profiles) see the 30 days before the
    earliest new transaction; everything older is
    summarised (`prior_history`: merchant counts, the cards' previous transactions, the
    graph, fraud labels) instead of being run through the feature kernels again."""
    started = time.monotonic()
    uri = features_uri(settings)
    target = open_table(uri, settings)
    processed = target.transaction_version(FEATURES_MARKER) if target else None
    new, version = rows_added_since(
        settings, silver_uri(settings, "silver_transactions"), processed
    )
    result = StepResult("fraud_features", processed, version, rows_in=new.num_rows)
    if version is None or new.num_rows == 0:
        result.seconds = time.monotonic() - started
        return result
    from fraud.training import TX_COLUMNS

    history = read_table(settings, silver_uri(settings, "silver_transactions"), TX_COLUMNS)
    labels = read_table(
        settings,
        silver_uri(settings, "silver_fraud_labels"),
        ["transaction_id", "is_fraud", "reported_at"],
    )
    since = pc.min(new["ts"]).as_py() - timedelta(microseconds=CONTEXT_US)
    older = pl.col("ts") < since
    prior = prior_history(history.filter(older), labels)  # type: ignore[union-attr]
    features = batch_features(history.filter(~older), labels, prior)  # type: ignore[union-attr]
    result.extra = {
        "context_rows": features.height,
        "summarised_rows": history.height - features.height,  # type: ignore[union-attr]
    }
    new_ids = pl.from_arrow(new.select(["transaction_id"])).to_series().unique()  # type: ignore[union-attr]
    rows = (
        features.filter(pl.col("transaction_id").is_in(new_ids.implode()))
        .with_columns(
            pl.col("ts").dt.date().alias("tx_date"),
            pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
        )
        .select(FEATURES_SCHEMA.names)
    )
    result.rows_written = _insert(
        settings, uri, rows.to_arrow().cast(FEATURES_SCHEMA), FEATURES_MARKER, version, "tx_date"
    )
    result.seconds = time.monotonic() - started
    log.info("%s", result.summary())
    return result


def build_decisions(settings: Settings, model: object | None = None) -> StepResult:
    """ALLOW / CHALLENGE / BLOCK + score + reasons for the feature rows added since the last
    run, with the registry's champion — on a fresh registry a first one trained on the lake
    if it holds enough labelled history, else rules only (`extra["model_status"]` says why;
    fraud.champion)."""
    from fraud.champion import Champion, resolve_champion
    from fraud.model import FraudModel
    from fraud.rules import load_config

    started = time.monotonic()
    uri = decisions_uri(settings)
    target = open_table(uri, settings)
    processed = target.transaction_version(DECISIONS_MARKER) if target else None
    new, version = rows_added_since(settings, features_uri(settings), processed)
    result = StepResult("fraud_decisions", processed, version, rows_in=new.num_rows)
    if version is None or new.num_rows == 0:
        result.seconds = time.monotonic() - started
        return result
    champion: Champion = (
        Champion(model, f"model v{model.version} (given)")
        if isinstance(model, FraudModel)
        else resolve_champion(settings, log.info)
    )
    features = pl.from_arrow(new)
    events = read_table(
        settings,
        silver_uri(settings, "silver_transactions"),
        ["transaction_id", "card_hash", *EVENT_FIELDS, "ingested_at"],
        optional=tuple(OPTIONAL_EVENT_FIELDS),
    )
    frame = features.drop("amount").join(  # type: ignore[union-attr]
        events,
        on="transaction_id",
        how="inner",  # type: ignore[arg-type]
    )
    decided = score_frame(champion.model, load_config(), frame)
    now = datetime.now(UTC)
    rows = decided.join(
        frame.select(
            "transaction_id", "ts", "tx_date", "card_hash", "amount", "channel", "ingested_at"
        ),
        on="transaction_id",
    ).with_columns(
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("decided_at"),
        (
            (
                pl.lit(now).cast(pl.Datetime("us", "UTC")) - pl.col("ingested_at")
            ).dt.total_microseconds()
            / 1000.0
        ).alias("lag_ms"),
    )
    result.rows_written = _insert(
        settings,
        uri,
        rows.select(DECISIONS_SCHEMA.names).to_arrow().cast(DECISIONS_SCHEMA),
        DECISIONS_MARKER,
        version,
        "tx_date",
    )
    counts = rows.group_by("decision").len()
    result.extra = {
        **{f"decisions_{d.lower()}": int(n) for d, n in counts.iter_rows()},
        "model_version": champion.version,
        "model_status": champion.status,
        "lag_ms_p50": float(rows["lag_ms"].median() or 0),
        "decision_latency_ms": float(rows["decision_latency_ms"].max() or 0),
    }
    result.seconds = time.monotonic() - started
    log.info("%s", result.summary())
    return result
