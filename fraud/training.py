"""Training, evaluation and registration of the fraud model.

Temporal split over the labelled history known at training time (`as_of`):

    [ fit (80 %) | calibrate (20 %) ] gap [ validation ] maturity → as_of

Training labels are the fraud labels reported up to `as_of`; the gap keeps transactions whose
labels could not have arrived yet out of training; the validation window ends `maturity`
days before `as_of` so its chargebacks have had time to arrive. The model is logged to
MLflow and registered; it becomes `champion` only if its Average Precision beats the current
champion's on the same validation window (lakehouse.registry.promote_if_better).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from fraud.evaluation import evaluate, format_table
from fraud.features import FEATURES, batch_features
from fraud.model import FraudModel, fit, matrix
from fraud.rules import DecisionConfig, load_config, rules_only_score, score_decisions
from fraud.scoring import EVENT_FIELDS, score_columns, with_event_fields
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_NAME = "fraud_gbdt"
EXPERIMENT = "fraud"
METRIC = "val_average_precision"
DAY_US = 86_400_000_000


@dataclass(frozen=True)
class SplitOptions:
    val_days: float = 5.0
    gap_days: float = 2.0
    maturity_days: float = 5.0
    calibrate_share: float = 0.2
    rounds: int = 200


@dataclass
class Split:
    fit: np.ndarray
    calibrate: np.ndarray
    validate: np.ndarray
    bounds: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainResult:
    model: FraudModel
    metrics: dict[str, dict[str, float]]
    split: Split
    promotion: str = ""
    run_id: str = ""

    def table(self) -> str:
        return format_table(self.metrics)


def silver_from_events(events: pl.DataFrame, pii_key: str) -> pl.DataFrame:
    """Seed-schema events (e.g. the simulator's) → silver columns, personal fields treated as
    silver treats them (`governance.pii`)."""
    from governance.pii import silver_sql

    def treated(field: str) -> str:
        return silver_sql("transactions", field, f'"{field}"', pii_key)

    three_ds = (  # transactions v2's optional field; v1 events (the simulators') lack it
        "three_ds_status"
        if "three_ds_status" in events.columns
        else "NULL::VARCHAR AS three_ds_status"
    )
    con = duckdb.connect()
    try:
        con.register("events", events.to_arrow())
        frame = pl.from_arrow(
            con.sql(
                f"""SELECT transaction_id, "timestamp" AS ts,
                    {treated("account_id")} AS account_hash, {treated("card_hash")} AS card_hash,
                    amount, currency, merchant_id, merchant_category, channel, country,
                    {treated("device_id")} AS device_id, {treated("ip")} AS ip_hash,
                    {treated("lat")} AS lat, {treated("lon")} AS lon, {three_ds}
                FROM events"""
            ).to_arrow_table()
        )
        return frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))  # type: ignore[union-attr]
    finally:
        con.close()


def split_options(settings: Settings, rounds: int = 200) -> SplitOptions:
    """The label-delay windows of the configuration (LAKEHOUSE_FRAUD_VAL_DAYS, _GAP_DAYS,
    _MATURITY_DAYS), shared by `fraud train`, `fraud report` and the nightly asset."""
    return SplitOptions(
        val_days=settings.fraud_val_days,
        gap_days=settings.fraud_gap_days,
        maturity_days=settings.fraud_maturity_days,
        rounds=rounds,
    )


def temporal_split(ts_us: np.ndarray, as_of_us: int, options: SplitOptions) -> Split:
    val_end = as_of_us - int(options.maturity_days * DAY_US)
    val_start = val_end - int(options.val_days * DAY_US)
    train_end = val_start - int(options.gap_days * DAY_US)
    train = np.flatnonzero(ts_us < train_end)
    validate = np.flatnonzero((ts_us >= val_start) & (ts_us < val_end))
    if train.size == 0 or validate.size == 0:
        raise ConfigError(
            "not enough history for the temporal split (fit+calibrate | gap "
            f"{options.gap_days}d | validation {options.val_days}d | maturity {options.maturity_days}d): "
            "ingest more days of transactions or shorten the windows"
        )
    t0 = int(ts_us[train].min())
    calib_start = t0 + int((train_end - t0) * (1 - options.calibrate_share))
    fit_rows = train[ts_us[train] < calib_start]
    calib_rows = train[ts_us[train] >= calib_start]

    def iso(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")

    return Split(
        fit_rows,
        calib_rows,
        validate,
        {
            "fit_from": iso(t0),
            "calibrate_from": iso(calib_start),
            "train_until": iso(train_end),
            "validate_from": iso(val_start),
            "validate_until": iso(val_end),
            "as_of": iso(as_of_us),
        },
    )


def labelled_features(
    transactions: pl.DataFrame, labels: pl.DataFrame, as_of: datetime
) -> pl.DataFrame:
    """Features (labels reported before each transaction) + event fields + `y` (a fraud label
    reported up to `as_of`), in (ts, transaction_id) order."""
    known = labels.filter(pl.col("reported_at") <= as_of)
    features = batch_features(transactions, known)
    fraud_ids = known.filter(pl.col("is_fraud")).select("transaction_id").unique()
    events = with_event_fields(transactions).select("transaction_id", "card_hash", *EVENT_FIELDS)
    return (
        features.join(
            events, on="transaction_id", how="left", maintain_order="left", suffix="_event"
        )
        .drop("amount_event")
        .with_columns(
            pl.col("transaction_id").is_in(fraud_ids["transaction_id"].implode()).alias("y")
        )
    )


def _columns(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    columns = {c: frame[c].to_numpy() for c in EVENT_FIELDS}
    columns.update({f: frame[f].cast(pl.Float64).fill_null(np.nan).to_numpy() for f in FEATURES})
    return columns


def evaluate_scorers(
    model: FraudModel,
    config: DecisionConfig,
    frame: pl.DataFrame,
    champion: FraudModel | None = None,
) -> dict[str, dict[str, float]]:
    """GBDT (+ IsolationForest floor + rule overrides) vs rules-only vs IsolationForest-only
    on the same rows; the current champion too when given."""
    columns = _columns(frame)
    n = frame.height
    y = frame["y"].to_numpy()
    amount = frame["amount"].to_numpy()
    card = frame["card_hash"].to_numpy()
    day = frame["ts"].dt.date().to_numpy()
    scored = score_columns(model, config, columns, n, explain_all=False)
    rows = {
        "gbdt + rules (challenger)": evaluate(y, scored.score, scored.decision, amount, card, day)
    }
    if champion is not None:
        champ = score_columns(champion, config, columns, n, explain_all=False)
        rows[f"champion v{champion.version}"] = evaluate(
            y, champ.score, champ.decision, amount, card, day
        )
    rules = rules_only_score(config, columns, n)
    rows["rules only"] = evaluate(
        y, rules, score_decisions(rules, config.challenge, config.block), amount, card, day
    )
    anomaly = model.anomaly(matrix(columns, model.features))
    # IsolationForest-only decisions: CHALLENGE above the anomaly threshold, BLOCK above the
    # 99.99th percentile of the training anomalies' range (no labels used)
    anomaly_decision = np.where(anomaly >= model.anomaly_threshold, "CHALLENGE", "ALLOW").astype(
        object
    )
    rows["isolation forest only"] = evaluate(y, anomaly, anomaly_decision, amount, card, day)
    return rows


def train_model(
    transactions: pl.DataFrame,
    labels: pl.DataFrame,
    as_of: datetime,
    options: SplitOptions = SplitOptions(),
    config: DecisionConfig | None = None,
) -> tuple[TrainResult, pl.DataFrame]:
    """Fit and evaluate (no MLflow): the result and the validation frame."""
    config = config or load_config()
    frame = labelled_features(transactions, labels, as_of)
    ts = frame["ts"].dt.epoch("us").to_numpy()
    split = temporal_split(ts, int(as_of.timestamp() * 1e6), options)
    x = matrix({f: frame[f].cast(pl.Float64).fill_null(np.nan).to_numpy() for f in FEATURES})
    y = frame["y"].to_numpy().astype(np.int64)
    if y[split.fit].sum() < 5:
        raise ConfigError(
            f"only {int(y[split.fit].sum())} labelled frauds in the training window: "
            "wait for more labels (fraud_labels topic) or use a longer history"
        )
    model = fit(
        x[split.fit],
        y[split.fit],
        x[split.calibrate],
        y[split.calibrate],
        config.anomaly_quantile,
        options.rounds,
    )
    model.config_version = config.version
    validation = frame[split.validate]
    return TrainResult(model, evaluate_scorers(model, config, validation), split), validation


def load_lake_history(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """silver_transactions and silver_fraud_labels as Polars frames (empty if absent)."""

    from lake.tables import open_table, silver_uri

    frames = []
    for name, columns in (
        ("silver_transactions", TX_COLUMNS),
        ("silver_fraud_labels", ["transaction_id", "is_fraud", "reported_at"]),
    ):
        table = open_table(silver_uri(settings, name), settings)
        frames.append(
            None
            if table is None
            else pl.from_arrow(table.to_pyarrow_dataset().to_table(columns=columns))
        )
    tx, labels = frames
    if tx is None:
        tx = pl.DataFrame()
    if labels is None:
        labels = pl.DataFrame(
            schema={
                "transaction_id": pl.String,
                "is_fraud": pl.Boolean,
                "reported_at": pl.Datetime("us", "UTC"),
            }
        )
    return tx, labels  # type: ignore[return-value]


TX_COLUMNS = [
    "transaction_id",
    "ts",
    "account_hash",
    "card_hash",
    "amount",
    "currency",
    "merchant_id",
    "merchant_category",
    "channel",
    "country",
    "device_id",
    "ip_hash",
    "lat",
    "lon",
]


def simulated_history(
    settings: Settings,
    days: float = 35,
    scale: float = 0.1,
    seed: int = 42,
    end: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    from fraud.simulator import generate_transactions

    end = (end or datetime.now(UTC)).replace(microsecond=0)
    stream = generate_transactions(end - timedelta(days=days), end, seed, scale)
    events = stream.transactions.drop("is_fraud", "scenario")
    return silver_from_events(events, settings.pii_hash_key), stream.labels, end


def champion_model(settings: Settings) -> FraudModel | None:
    """The registry's champion bundle, or None on a fresh registry."""
    from mlflow import MlflowClient

    from lakehouse.registry import champion_version, configure_mlflow

    configure_mlflow(settings, EXPERIMENT)
    version = champion_version(MlflowClient(), MODEL_NAME)
    if version is None:
        return None
    return load_registered(settings, version)


def load_registered(settings: Settings, version: str) -> FraudModel:
    import mlflow

    cache = settings.models_dir / "fraud" / f"v{version}"
    if not (cache / "bundle").exists():
        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=str(cache / "download")
        )
        bundle = next(Path(folder).rglob("meta.json")).parent
        bundle.rename(cache / "bundle")
    return FraudModel.load(cache / "bundle", version=str(version))


def train_and_register(
    settings: Settings,
    transactions: pl.DataFrame,
    labels: pl.DataFrame,
    as_of: datetime,
    options: SplitOptions = SplitOptions(),
    source: str = "lake",
) -> TrainResult:
    """Fit, evaluate against the champion on the same validation window, log to MLflow,
    register, promote if better; the report lands in <home>/models/fraud/report.json."""
    import mlflow

    from lakehouse.registry import check_comparable, configure_mlflow, promote_if_better

    config = load_config()
    result, validation = train_model(transactions, labels, as_of, options, config)
    champion = champion_model(settings)
    champion_ap: float | None = None
    if champion is not None and set(champion.features) <= set(validation.columns):
        result.metrics = evaluate_scorers(result.model, config, validation, champion)
        champion_ap = result.metrics[f"champion v{champion.version}"]["average_precision"]
    challenger = result.metrics["gbdt + rules (challenger)"]
    # refused before anything is logged: a NaN metric compares false with everything
    check_comparable(MODEL_NAME, METRIC, challenger["average_precision"], champion_ap)
    configure_mlflow(settings, EXPERIMENT)
    with (
        mlflow.start_run(run_name=f"fraud-{as_of:%Y%m%dT%H%M}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params(
            {
                **result.split.bounds,
                "source": source,
                "rules_version": config.version,
                "rows_fit": int(result.split.fit.size),
                "rows_validate": int(result.split.validate.size),
            }
        )
        for scorer, metrics in result.metrics.items():
            prefix = scorer.split(" (")[0].replace(" + ", "_").replace(" ", "_")
            mlflow.log_metrics({f"{prefix}.{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metric(METRIC, challenger["average_precision"])
        bundle = result.model.save(Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=_pyfunc(), artifacts={"bundle": str(bundle)}
        )
        promotion = promote_if_better(
            info.model_uri, MODEL_NAME, METRIC, challenger["average_precision"], champion_ap
        )
        result.run_id = run.info.run_id
    result.model.version = promotion.version
    result.promotion = promotion.describe()
    report = settings.models_dir / "fraud" / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {
                "promotion": result.promotion,
                "split": result.split.bounds,
                "metrics": result.metrics,
                "source": source,
            },
            indent=1,
        )
    )
    return result


def _pyfunc() -> object:
    """An MLflow pyfunc wrapper (defined lazily: mlflow is heavy) scoring feature frames."""
    import mlflow.pyfunc

    class FraudPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            self.model = FraudModel.load(Path(context.artifacts["bundle"]))

        def predict(self, context, model_input, params=None):
            x = np.asarray(model_input[self.model.features], dtype=np.float64)
            return self.model.calibrate(self.model.margin(x))

    return FraudPyfunc()


def configure_registry(settings: Settings) -> None:
    from lakehouse.registry import configure_mlflow

    configure_mlflow(settings, EXPERIMENT)


def lake_as_of(transactions: pl.DataFrame, labels: pl.DataFrame) -> datetime:
    """The data's "now": the latest event or label report seen in the lake."""
    latest = transactions["ts"].max()
    if labels.height:
        latest = max(latest, labels["reported_at"].max())  # type: ignore[type-var]
    return latest  # type: ignore[return-value]


def validation_frame(
    transactions: pl.DataFrame, labels: pl.DataFrame, as_of: datetime, options: SplitOptions
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The validation window's labelled features (for reports of the champion)."""
    frame = labelled_features(transactions, labels, as_of)
    split = temporal_split(
        frame["ts"].dt.epoch("us").to_numpy(), int(as_of.timestamp() * 1e6), options
    )
    return frame[split.validate], split.bounds
