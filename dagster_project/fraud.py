"""Fraud use case wiring: silver_transactions → fraud_features → fraud_decisions on every
`transactions` micro-batch (the `ingest_transactions` job runs everything downstream of
raw_transactions), silver_fraud_labels from the `fraud_labels` topic, and a nightly
retraining (fraud_model) + drift report (fraud_drift) on their own schedule."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg
from openlineage.client.event_v2 import Dataset

from dagster_project.lineage import DatasetRef, as_dataset, lineage_run
from dagster_project.resources import LakehouseResource
from dagster_project.sensors import NIGHTLY_TAG
from lakehouse.config import Settings

if TYPE_CHECKING:  # fraud.pipeline imports polars and the feature code: not at load time
    from fraud.pipeline import StepResult

NIGHTLY = {NIGHTLY_TAG: "nightly"}


def _silver(settings: Settings, name: str) -> DatasetRef:
    """A silver table as a lineage dataset: (name, uri, schema)."""
    from lake.tables import SILVER_TABLES, silver_uri

    return name, silver_uri(settings, name), SILVER_TABLES[name][1]


def _model(settings: Settings, version: str) -> Dataset:
    """The registered fraud model version as a lineage dataset (features it scores)."""
    from fraud.features import FEATURES
    from fraud.training import MODEL_NAME
    from lakehouse.lineage import mlflow_model_dataset

    return mlflow_model_dataset(settings, MODEL_NAME, version, [(f, "double") for f in FEATURES])


def _metadata(result: "StepResult", path: str) -> dict[str, object]:
    return {
        "rows_written": result.rows_written,
        "source_rows": result.rows_in,
        "source_version_from": -1
        if result.source_version_from is None
        else result.source_version_from,
        "source_version_to": -1 if result.source_version_to is None else result.source_version_to,
        "seconds": round(result.seconds, 3),
        "path": dg.MetadataValue.path(path),
        **{k: v for k, v in result.extra.items() if isinstance(v, int | float | str)},
    }


@dg.asset(
    deps=["silver_transactions", "silver_fraud_labels"],
    group_name="fraud",
    kinds={"polars", "delta"},
    owners=["team:fraud"],
    pool="fraud_features",
    description=(
        "Per-transaction fraud features (fraud/features.py, the same definition as the online "
        "service): velocity per card/device/IP (1m/5m/1h counts, 5m sum, 1h distinct merchants), "
        "haversine distance and km/min since the card's previous transaction, 7-day amount "
        "z-score, smoothed merchant/MCC fraud rate from labels reported before the transaction, "
        "device↔account↔IP graph degrees and component size. Only transactions new in silver are added, "
        "computed over the 7 days before them plus a summary of the older history."
    ),
)
def fraud_features(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from fraud.pipeline import FEATURES_SCHEMA, build_features, features_uri

    settings = lakehouse.settings()
    uri = features_uri(settings)
    inputs = [_silver(settings, "silver_transactions"), _silver(settings, "silver_fraud_labels")]
    with lineage_run(settings, context, inputs, [("fraud_features", uri, FEATURES_SCHEMA)]) as h:
        result = build_features(settings)
        h.set_output_stats("fraud_features", result.rows_written)
    context.log.info(result.summary())
    return dg.MaterializeResult(metadata=_metadata(result, uri))


@dg.asset(
    deps=[fraud_features],
    group_name="fraud",
    kinds={"lightgbm", "delta"},
    owners=["team:fraud"],
    pool="fraud_decisions",
    description=(
        "ALLOW / CHALLENGE (3DS/SCA) / BLOCK per transaction (Annex C: score < 0.5, 0.5-0.8, "
        "> 0.8; rule overrides from fraud/rules.v1.yaml), with the calibrated score, the "
        "IsolationForest anomaly score, reason codes (top-3 SHAP + rule ids) for the "
        "transactions not allowed, the model and rules versions, and the latencies. Without a "
        "champion (fresh registry; too few labels in the lake to train one) the decisions are "
        "rules-only: model_version = rules-only, and the metadata's model_status says why."
    ),
)
def fraud_decisions(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from fraud.champion import TRAINED_ON_LAKE
    from fraud.pipeline import (
        DECISIONS_SCHEMA,
        FEATURES_SCHEMA,
        build_decisions,
        decisions_uri,
        features_uri,
    )
    from fraud.scoring import RULES_ONLY

    settings = lakehouse.settings()
    uri = decisions_uri(settings)
    inputs = [
        ("fraud_features", features_uri(settings), FEATURES_SCHEMA),
        _silver(settings, "silver_transactions"),
    ]
    with lineage_run(settings, context, inputs, [("fraud_decisions", uri, DECISIONS_SCHEMA)]) as h:
        result = build_decisions(settings)
        h.set_output_stats("fraud_decisions", result.rows_written)
        version = str(result.extra.get("model_version", RULES_ONLY))
        if version != RULES_ONLY:  # the champion that scored this batch ...
            h.add_input(_model(settings, version))
        if TRAINED_ON_LAKE in str(result.extra.get("model_status", "")):
            # ... trained by this step on a fresh registry (fraud/champion.py)
            h.add_input(as_dataset(settings, _silver(settings, "silver_fraud_labels")))
            h.add_output(_model(settings, version))
    context.log.info(result.summary())
    if result.extra.get("model_version") == RULES_ONLY:
        context.log.warning(str(result.extra["model_status"]))
    return dg.MaterializeResult(metadata=_metadata(result, uri))


@dg.asset_check(asset=fraud_decisions, name="fraud_decisions_valid", blocking=False)
def fraud_decisions_valid(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Every decision is ALLOW/CHALLENGE/BLOCK, scores in [0, 1], one row per transaction."""
    import polars as pl

    from fraud.pipeline import decisions_uri, read_table

    frame = read_table(
        lakehouse.settings(),
        decisions_uri(lakehouse.settings()),
        ["transaction_id", "decision", "score"],
    )
    if frame is None:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    bad_decision = frame.filter(~pl.col("decision").is_in(["ALLOW", "CHALLENGE", "BLOCK"])).height
    bad_score = frame.filter((pl.col("score") < 0) | (pl.col("score") > 1)).height
    duplicates = frame.height - frame["transaction_id"].n_unique()
    return dg.AssetCheckResult(
        passed=bad_decision == 0 and bad_score == 0 and duplicates == 0,
        metadata={
            "rows": frame.height,
            "bad_decision": bad_decision,
            "bad_score": bad_score,
            "duplicates": duplicates,
        },
    )


@dg.asset(
    deps=["silver_transactions", "silver_fraud_labels"],
    group_name="fraud",
    kinds={"lightgbm", "mlflow"},
    owners=["team:fraud"],
    tags=NIGHTLY,
    description=(
        "Nightly retraining on every label known so far in the lake (never on simulated data): "
        "temporal split (fit | calibrate | gap | validation | label maturity: LAKEHOUSE_FRAUD_*), LightGBM + Platt calibration + IsolationForest, "
        "evaluated against rules-only and IsolationForest-only, registered in MLflow and promoted "
        "to `champion` only if it beats the current champion's AP on the same window."
    ),
)
def fraud_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from fraud.champion import lake_training_blocker
    from fraud.training import lake_as_of, load_lake_history, split_options, train_and_register
    from lakehouse.errors import ConfigError, PromotionRefused

    settings = lakehouse.settings()
    inputs = [_silver(settings, "silver_transactions"), _silver(settings, "silver_fraud_labels")]
    source = "lake"  # never simulated data here: `lakehouse fraud train --source simulated` asks
    # the output, the registered model version, is known once registered (none if skipped)
    with lineage_run(settings, context, inputs, []) as handle:
        tx, labels = load_lake_history(settings)
        reason = lake_training_blocker(settings, tx, labels)
        if reason is None:
            try:
                result = train_and_register(
                    settings, tx, labels, lake_as_of(tx, labels), split_options(settings), source
                )
            except (ConfigError, PromotionRefused) as exc:  # e.g. no fraud in a window
                reason = str(exc)
            else:
                handle.add_output(_model(settings, str(result.model.version)))
    if reason is not None:
        context.log.info(f"no retraining: {reason}")
        return dg.MaterializeResult(metadata={"skipped": reason})
    context.log.info(result.promotion)
    challenger = result.metrics["gbdt + rules (challenger)"]
    return dg.MaterializeResult(
        metadata={
            "promotion": result.promotion,
            "source": source,
            "model_version": result.model.version,
            "run_id": result.run_id,
            "val_average_precision": challenger["average_precision"],
            "val_auc_roc": challenger["auc_roc"],
            "report": dg.MetadataValue.md(result.table()),
            **{f"split_{k}": v for k, v in result.split.bounds.items()},
        }
    )


DRIFT_CHECKS = [
    dg.AssetCheckSpec(
        "fraud_feature_psi",
        asset="fraud_drift",
        description="max feature PSI: warn > 0.1, fail > 0.25",
    ),
    dg.AssetCheckSpec(
        "fraud_score_drift", asset="fraud_drift", description="score PSI: warn > 0.1, fail > 0.25"
    ),
]


def _severity_result(name: str, value: float, metadata: dict[str, object]) -> dg.AssetCheckResult:
    from fraud.drift import FAIL, WARN

    finite = value == value  # NaN: not enough data
    return dg.AssetCheckResult(
        check_name=name,
        passed=not finite or value <= WARN,
        severity=dg.AssetCheckSeverity.ERROR
        if finite and value > FAIL
        else dg.AssetCheckSeverity.WARN,
        metadata={"value": value if finite else -1.0, **metadata},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "fraud_drift",
            deps=[fraud_features, fraud_decisions],
            group_name="fraud",
            kinds={"polars"},
            owners=["team:fraud"],
            tags=NIGHTLY,
            description="Per-feature PSI (training history vs latest day) and score-calibration drift.",
        )
    ],
    check_specs=DRIFT_CHECKS,
)
def fraud_drift(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    import polars as pl
    from deltalake import write_deltalake

    from fraud.drift import DRIFT_PSI_COLUMNS, drift_psi_rows, drift_report
    from fraud.features import FEATURES
    from fraud.pipeline import (
        DECISIONS_SCHEMA,
        FEATURES_SCHEMA,
        decisions_uri,
        drift_psi_uri,
        features_uri,
        read_table,
    )
    from lake.tables import silver_uri

    settings = lakehouse.settings()
    inputs = [
        ("fraud_features", features_uri(settings), FEATURES_SCHEMA),
        ("fraud_decisions", decisions_uri(settings), DECISIONS_SCHEMA),
        _silver(settings, "silver_fraud_labels"),
    ]
    # The report is asset metadata and check results, and its PSI rows are appended to
    # fraud_drift_psi (the Fraud dashboard).
    psi_schema = pl.DataFrame(schema=DRIFT_PSI_COLUMNS).to_arrow().schema
    outputs = [("fraud_drift_psi", drift_psi_uri(settings), psi_schema)]
    with lineage_run(settings, context, inputs, outputs) as handle:
        features = read_table(settings, features_uri(settings), ["transaction_id", "ts", *FEATURES])
        report = None
        if features is not None and features.height > 0:
            decisions = read_table(
                settings, decisions_uri(settings), ["transaction_id", "ts", "score"]
            )
            labels = read_table(
                settings,
                silver_uri(settings, "silver_fraud_labels"),
                ["transaction_id", "is_fraud"],
            )
            report = drift_report(features, decisions, labels, _training_window(settings))
        if report is not None:
            rows = drift_psi_rows(report, datetime.now(UTC))
            write_deltalake(
                drift_psi_uri(settings),
                rows.to_arrow(),
                mode="append",
                storage_options=settings.storage_options or None,
            )
            handle.set_output_stats("fraud_drift_psi", rows.height)
    if report is None:
        yield dg.MaterializeResult(metadata={"rows": 0})
        for spec in DRIFT_CHECKS:
            yield dg.AssetCheckResult(check_name=spec.name, passed=True, metadata={"rows": 0})
        return
    worst, worst_value = report.worst
    table = pl.DataFrame(
        {"feature": list(report.feature_psi), "psi": list(report.feature_psi.values())}
    )
    yield dg.MaterializeResult(
        metadata={
            "latest_day": report.latest_day,
            "reference_rows": report.reference_rows,
            "latest_rows": report.latest_rows,
            "worst_feature": worst,
            "worst_psi": worst_value,
            "score_psi": report.score_psi if report.score_psi == report.score_psi else -1.0,
            "calibration_gap": report.calibration_gap
            if report.calibration_gap == report.calibration_gap
            else -1.0,
            "psi": dg.MetadataValue.md(
                table.sort("psi", descending=True, nulls_last=True)
                .to_pandas()
                .to_markdown(index=False)
            ),
        }
    )
    context.log.info(
        f"drift: worst {worst} PSI {worst_value:.3f}, score PSI {report.score_psi:.3f}"
    )
    yield _severity_result("fraud_feature_psi", worst_value, {"feature": worst})
    yield _severity_result(
        "fraud_score_drift", report.score_psi, {"calibration_gap": report.calibration_gap}
    )


def _training_window(settings: object) -> tuple[object, object] | None:
    """The last training's fit..train_until window, from its report (None if never trained)."""
    import json
    from datetime import datetime

    report = settings.models_dir / "fraud" / "report.json"  # type: ignore[attr-defined]
    if not report.exists():
        return None
    split = json.loads(report.read_text()).get("split", {})
    if "fit_from" not in split:
        return None
    return datetime.fromisoformat(split["fit_from"]), datetime.fromisoformat(split["train_until"])


nightly_job = dg.define_asset_job(
    name="fraud_nightly",
    selection=dg.AssetSelection.assets(fraud_model, "fraud_drift"),
    description="Retrain on all labels known so far, evaluate, promote or not; drift report.",
)
nightly_schedule = dg.ScheduleDefinition(
    name="fraud_nightly_retraining",
    job=nightly_job,
    cron_schedule="30 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[fraud_features, fraud_decisions, fraud_model, fraud_drift],
    asset_checks=[fraud_decisions_valid],
    jobs=[nightly_job],
    schedules=[nightly_schedule],
)
