"""Decision configuration (`fraud/rules.v1.yaml`), rule evaluation and the Annex C decision.

Rules are data: a list of conditions over event fields and features, evaluated on numpy
columns — the batch path passes whole columns, the online path one-element columns, so both
evaluate the very same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from lakehouse.errors import ConfigError

ALLOW, CHALLENGE, BLOCK = "ALLOW", "CHALLENGE", "BLOCK"
SEVERITY = {ALLOW: 0, CHALLENGE: 1, BLOCK: 2}
DECISIONS = (ALLOW, CHALLENGE, BLOCK)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le", "in", "not_in"}
DEFAULT_CONFIG = "rules.v1.yaml"


@dataclass(frozen=True)
class Rule:
    id: str
    when: tuple[Mapping[str, Any], ...]
    action: str = BLOCK  # overrides
    score: float = 1.0  # baseline rules
    description: str = ""

    @property
    def fields(self) -> set[str]:
        return {str(c["field"]) for c in self.when}


@dataclass(frozen=True)
class DecisionConfig:
    version: str
    challenge: float
    block: float
    anomaly_quantile: float
    overrides: tuple[Rule, ...]
    baseline: tuple[Rule, ...]
    # a calibrated score this many times the model's training fraud rate raises ALLOW to
    # CHALLENGE (0: off): at a base rate of 1 % a 0.5 threshold leaves well-ranked frauds
    # allowed (fraud.scoring applies it)
    challenge_lift: float = 0.0

    def with_thresholds(self, challenge: float, block: float) -> DecisionConfig:
        _check_thresholds(challenge, block)
        return DecisionConfig(
            self.version,
            challenge,
            block,
            self.anomaly_quantile,
            self.overrides,
            self.baseline,
            self.challenge_lift,
        )


def _check_thresholds(challenge: float, block: float) -> None:
    if not 0 <= challenge <= block <= 1:
        raise ConfigError(
            f"thresholds challenge={challenge}, block={block} are invalid: "
            "use 0 <= challenge <= block <= 1"
        )


def _rule(raw: Mapping[str, Any], kind: str) -> Rule:
    try:
        when = tuple(raw["when"])
        for c in when:
            if c["op"] not in _OPS:
                raise ValueError(f"unknown op {c['op']!r}")
            _ = c["field"], c["value"]
        rule = Rule(
            id=str(raw["id"]),
            when=when,
            action=str(raw.get("action", BLOCK)),
            score=float(raw.get("score", 1.0)),
            description=str(raw.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{kind} rule {raw!r} is invalid ({exc}): see fraud/rules.v1.yaml"
        ) from None
    if rule.action not in (CHALLENGE, BLOCK):
        raise ConfigError(f"rule {rule.id}: action must be CHALLENGE or BLOCK")
    return rule


def load_config(path: Path | str | None = None) -> DecisionConfig:
    """The shipped config (package data) or a file of the same format."""
    try:
        text = (
            resources.files("fraud").joinpath(DEFAULT_CONFIG).read_text("utf-8")
            if path is None
            else Path(path).read_text("utf-8")
        )
        raw = yaml.safe_load(text)
        config = DecisionConfig(
            version=str(raw["version"]),
            challenge=float(raw["thresholds"]["challenge"]),
            block=float(raw["thresholds"]["block"]),
            anomaly_quantile=float(raw.get("anomaly_challenge_quantile", 0.999)),
            overrides=tuple(_rule(r, "override") for r in raw.get("overrides", [])),
            baseline=tuple(_rule(r, "baseline") for r in raw.get("baseline", [])),
            challenge_lift=float(raw.get("challenge_lift", 0.0)),
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"decision config {path or DEFAULT_CONFIG} is invalid ({exc})") from None
    _check_thresholds(config.challenge, config.block)
    return config


def _condition(column: np.ndarray, op: str, value: Any) -> np.ndarray:
    if op in ("in", "not_in") or (op in ("eq", "ne") and isinstance(value, str)):
        # a null (e.g. an optional field the event lacks) is in no list: not_in holds
        values = [str(v) for v in value] if op in ("in", "not_in") else [value]
        if column.size > 64:  # batch: polars' hash lookup (numpy sorts object arrays)
            hit = (
                pl.Series(column.astype(object), dtype=pl.String)
                .is_in(values)
                .fill_null(False)
                .to_numpy()
            )
        else:  # online: a few rows
            allowed = set(values)
            hit = np.fromiter(
                (v in allowed for v in column.tolist()), dtype=bool, count=column.size
            )
        return ~hit if op in ("ne", "not_in") else hit
    numeric = np.asarray(column, dtype=np.float64)  # NaN compares False: rule does not fire
    with np.errstate(invalid="ignore"):
        return {
            "eq": numeric == value,
            "ne": numeric != value,
            "gt": numeric > value,
            "ge": numeric >= value,
            "lt": numeric < value,
            "le": numeric <= value,
        }[op]


def fired(
    rules: Sequence[Rule], columns: Mapping[str, np.ndarray], n: int
) -> dict[str, np.ndarray]:
    """rule id -> boolean column (every condition holds)."""
    out: dict[str, np.ndarray] = {}
    for rule in rules:
        hit = np.ones(n, dtype=bool)
        for c in rule.when:
            field = str(c["field"])
            if field not in columns:
                raise ConfigError(f"rule {rule.id} uses unknown field {field!r}")
            hit &= _condition(np.asarray(columns[field]), str(c["op"]), c["value"])
        out[rule.id] = hit
    return out


def rules_only_score(
    config: DecisionConfig, columns: Mapping[str, np.ndarray], n: int
) -> np.ndarray:
    """The rules-only baseline: the highest score among fired rules (0 when none)."""
    score = np.zeros(n)
    for rule in config.overrides:
        hit = fired([rule], columns, n)[rule.id]
        score = np.where(hit, np.maximum(score, 1.0 if rule.action == BLOCK else 0.6), score)
    for rule in config.baseline:
        hit = fired([rule], columns, n)[rule.id]
        score = np.where(hit, np.maximum(score, rule.score), score)
    return score


def score_decisions(score: np.ndarray, challenge: float, block: float) -> np.ndarray:
    """Annex C: < challenge ALLOW; challenge..block CHALLENGE (3DS/SCA); > block BLOCK."""
    score = np.asarray(score, dtype=np.float64)
    return np.where(score > block, BLOCK, np.where(score >= challenge, CHALLENGE, ALLOW)).astype(
        object
    )


@dataclass(frozen=True)
class Decisions:
    decision: np.ndarray  # object array of ALLOW / CHALLENGE / BLOCK
    fired_rules: list[list[str]]  # per row: override rule ids that fired
    anomalous: np.ndarray  # bool: the anomaly score raised the decision


def decide(
    config: DecisionConfig,
    score: np.ndarray,
    anomaly: np.ndarray,
    anomaly_threshold: float,
    columns: Mapping[str, np.ndarray],
) -> Decisions:
    """Score thresholds, then the anomaly floor, then rule overrides (never lowering)."""
    n = len(score)
    score = np.asarray(score, dtype=np.float64)
    # same thresholds as score_decisions, as severities 0/1/2
    severity = (score >= config.challenge).astype(np.int64) + (score > config.block)
    anomalous = (np.asarray(anomaly) >= anomaly_threshold) & (severity < 1)
    severity = np.where(anomalous, 1, severity)
    hits = fired(config.overrides, columns, n)
    none: list[str] = []  # shared by the rows no rule fired on (never mutated)
    names: list[list[str]] = [none] * n
    for rule in config.overrides:
        rows = np.flatnonzero(hits[rule.id])
        severity[rows] = np.maximum(severity[rows], SEVERITY[rule.action])
        for r in rows.tolist():
            names[r] = [*names[r], rule.id]
    return Decisions(np.asarray(DECISIONS, dtype=object)[severity], names, anomalous)
