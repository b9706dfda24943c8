"""Features + model + rules → decisions with reasons: the code the batch asset and the online
service share (columns of numpy arrays; one row online, many in batch). Without a model
(`model=None`: no champion, see fraud.champion) the decisions are rules-only: the score is
the rules-only baseline's, the overrides still apply, `model_version` is `rules-only`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from fraud.features import FEATURES
from fraud.model import FraudModel, matrix
from fraud.rules import ALLOW, CHALLENGE, DecisionConfig, decide, rules_only_score
from fraud.rules import fired as rules_fired

EVENT_FIELDS = (
    "amount",
    "channel",
    "country",
    "merchant_id",
    "merchant_category",
    "three_ds_status",
)
# event fields a later contract version added: null for older events and in a silver table
# written before the version (transactions v2: the EMV 3DS transStatus Y/A/N/U/R)
OPTIONAL_EVENT_FIELDS: dict[str, pl.DataType] = {"three_ds_status": pl.String()}
RULES_ONLY = "rules-only"  # model_version of decisions made without a model


@dataclass
class Scored:
    decision: np.ndarray
    score: np.ndarray
    anomaly_score: np.ndarray
    reasons: list[list[str]]
    rule_ids: list[list[str]]


def _rules_only(config: DecisionConfig, columns: Mapping[str, np.ndarray], n: int) -> Scored:
    """No model: the baseline rules' score through the same thresholds and overrides; the
    reasons are the rules that fired (baseline rules included in rule_ids)."""
    score = rules_only_score(config, columns, n)
    decisions = decide(config, score, np.zeros(n), np.inf, columns)
    hits = rules_fired(config.baseline, columns, n)
    rule_ids: list[list[str]] = [list(ids) for ids in decisions.fired_rules]
    for rule in config.baseline:
        for i in np.flatnonzero(hits[rule.id]).tolist():
            rule_ids[i].append(rule.id)
    reasons = [[f"rule {r}" for r in ids] for ids in rule_ids]
    return Scored(decisions.decision, score, np.zeros(n), reasons, rule_ids)


def score_columns(
    model: FraudModel | None,
    config: DecisionConfig,
    columns: Mapping[str, np.ndarray],
    n: int,
    explain_all: bool = True,
    explain: bool = True,
) -> Scored:
    """Decisions for n rows. Reason codes: top-3 SHAP features for every row when
    `explain_all`, else only for the rows not allowed (batch: TreeSHAP costs ~0.5 ms a row,
    100x the prediction); none when not `explain` (benchmarks); rule ids always."""
    if model is None:
        return _rules_only(config, columns, n)
    x = matrix(columns, model.features)
    scores = model.score(x, explain=False)
    decisions = decide(config, scores.probability, scores.anomaly, model.anomaly_threshold, columns)
    if config.challenge_lift > 0 and model.base_rate > 0:
        # low base rate: a score far above it steps up (3DS) even below the 0.5 threshold
        lifted = (decisions.decision == ALLOW) & (
            scores.probability >= config.challenge_lift * model.base_rate
        )
        decisions.decision[lifted] = CHALLENGE
    mask = np.ones(n, dtype=bool) if explain_all else decisions.decision != "ALLOW"
    explained = np.flatnonzero(mask | decisions.anomalous) if explain else np.zeros(0, np.int64)
    none: list[str] = []  # shared by the rows without reasons (never mutated)
    reasons: list[list[str]] = [none] * n
    if explained.size:
        contributions = np.asarray(
            model.booster.predict(x[explained], pred_contrib=True, num_threads=1)
        )[:, :-1]
        words = model.reasons(x[explained], contributions)
        for j, i in enumerate(explained.tolist()):
            reasons[i] = words[j]
            if decisions.anomalous[i]:
                reasons[i].append(f"unusual pattern (anomaly score {scores.anomaly[i]:.3f})")
    for i in (i for i, fired in enumerate(decisions.fired_rules) if fired):
        reasons[i] = reasons[i] + [f"rule {rule}" for rule in decisions.fired_rules[i]]
    return Scored(
        decisions.decision, scores.probability, scores.anomaly, reasons, decisions.fired_rules
    )


def with_event_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with the optional event fields it lacks, as nulls."""
    missing = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in OPTIONAL_EVENT_FIELDS.items()
        if name not in frame.columns
    ]
    return frame.with_columns(missing) if missing else frame


def score_frame(
    model: FraudModel | None, config: DecisionConfig, frame: pl.DataFrame
) -> pl.DataFrame:
    """`frame`: transaction_id + EVENT_FIELDS + the model's features → one decision row each
    (ALLOW rows carry no SHAP reasons in batch, only the rows challenged or blocked)
    (decision, score, anomaly_score, reasons, rule_ids, model_version, config_version,
    decision_latency_ms = this batch's scoring time per row)."""
    started = time.perf_counter()
    frame = with_event_fields(frame)
    features = FEATURES if model is None else model.features
    columns = {c: frame[c].to_numpy() for c in (*EVENT_FIELDS, *features)}
    columns.update({f: frame[f].cast(pl.Float64).fill_null(np.nan).to_numpy() for f in features})
    scored = score_columns(model, config, columns, frame.height, explain_all=False)
    per_row_ms = (time.perf_counter() - started) * 1000 / max(frame.height, 1)
    return frame.select("transaction_id").with_columns(
        pl.Series("decision", scored.decision.tolist(), dtype=pl.String),
        pl.Series("score", scored.score, dtype=pl.Float64),
        pl.Series("anomaly_score", scored.anomaly_score, dtype=pl.Float64),
        pl.Series("reasons", pa.array(scored.reasons, pa.list_(pa.string()))),
        pl.Series("rule_ids", pa.array(scored.rule_ids, pa.list_(pa.string()))),
        pl.lit(RULES_ONLY if model is None else model.version).alias("model_version"),
        pl.lit(config.version).alias("config_version"),
        pl.lit(per_row_ms).alias("decision_latency_ms"),
    )
