"""Drift of the fraud features and scores: PSI between a reference window (the champion's
training window) and the latest day, and score-calibration drift (mean score vs observed fraud rate).

PSI = Σ (p_latest - p_ref) · ln(p_latest / p_ref) over 10 quantile bins of the reference
(missing values are their own bin); < 0.1 stable, 0.1-0.25 warn, > 0.25 fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from fraud.features import FEATURES

WARN, FAIL = 0.1, 0.25
MIN_REFERENCE_ROWS, MIN_LATEST_ROWS = 1000, 200  # below: PSI is noise, not reported
BINS = 10
EPS = 1e-4


def psi(reference: np.ndarray, latest: np.ndarray, bins: int = BINS) -> float:
    """Population Stability Index of `latest` against `reference` (NaN = its own bin)."""
    reference = np.asarray(reference, dtype=np.float64)
    latest = np.asarray(latest, dtype=np.float64)
    ref_ok, new_ok = reference[~np.isnan(reference)], latest[~np.isnan(latest)]
    if reference.size == 0 or latest.size == 0:
        return float("nan")
    edges = (
        np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
        if ref_ok.size
        else np.array([])
    )
    ref_counts = np.append(
        np.bincount(np.searchsorted(edges, ref_ok, side="right"), minlength=edges.size + 1),
        reference.size - ref_ok.size,
    )
    new_counts = np.append(
        np.bincount(np.searchsorted(edges, new_ok, side="right"), minlength=edges.size + 1),
        latest.size - new_ok.size,
    )
    p = np.maximum(ref_counts / reference.size, EPS)
    q = np.maximum(new_counts / latest.size, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass
class DriftReport:
    reference_rows: int
    latest_rows: int
    latest_day: str
    feature_psi: dict[str, float]
    score_psi: float
    calibration_gap: float  # |mean score - observed fraud rate| on the latest labelled day

    @property
    def worst(self) -> tuple[str, float]:
        finite = {k: v for k, v in self.feature_psi.items() if np.isfinite(v)}
        if not finite:
            return "", 0.0
        name = max(finite, key=finite.__getitem__)
        return name, finite[name]


def drift_report(
    features: pl.DataFrame,
    decisions: pl.DataFrame | None,
    labels: pl.DataFrame | None,
    reference: tuple[datetime, datetime] | None = None,
) -> DriftReport:
    """Latest = the latest (UTC) day; reference = the champion's training window when given
    (`reference`, from its training report) and present in the data, else every earlier day."""
    last_day = features["ts"].max().date()  # type: ignore[union-attr]
    is_latest = pl.col("ts").dt.date() == last_day
    in_reference = ~is_latest
    if reference is not None:
        window = (pl.col("ts") >= reference[0]) & (pl.col("ts") < reference[1]) & ~is_latest
        if features.filter(window).height >= MIN_REFERENCE_ROWS:
            in_reference = window
    ref, new = features.filter(in_reference), features.filter(is_latest)
    if ref.height < MIN_REFERENCE_ROWS or new.height < MIN_LATEST_ROWS:
        nan = float("nan")
        return DriftReport(
            ref.height, new.height, str(last_day), dict.fromkeys(FEATURES, nan), nan, nan
        )
    per_feature = {
        f: psi(
            ref[f].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            new[f].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        )
        for f in FEATURES
    }
    score_psi, gap = float("nan"), float("nan")
    if decisions is not None and decisions.height:
        d_ref, d_new = decisions.filter(in_reference), decisions.filter(is_latest)
        score_psi = psi(d_ref["score"].to_numpy(), d_new["score"].to_numpy())
        if labels is not None:
            # calibration on the latest day whose labels had time to arrive (7 days back)
            day = last_day - timedelta(days=7)
            window = decisions.filter(pl.col("ts").dt.date() == day)
            if window.height:
                frauds = labels.filter(pl.col("is_fraud"))["transaction_id"].implode()
                observed = window.select(pl.col("transaction_id").is_in(frauds).mean()).item()
                gap = abs(float(window["score"].mean()) - float(observed))  # type: ignore[arg-type]
    return DriftReport(ref.height, new.height, str(last_day), per_feature, score_psi, gap)


# fraud_drift_psi: one row per feature (and `score`) per drift run; appended, so the PSI of
# every run stays readable (gold fraud_drift_psi, the Fraud dashboard).
DRIFT_PSI_COLUMNS = {
    "computed_at": pl.Datetime("us", "UTC"),
    "latest_day": pl.Date,
    "feature": pl.String,
    "psi": pl.Float64,
    "reference_rows": pl.Int64,
    "latest_rows": pl.Int64,
}


def drift_psi_rows(report: DriftReport, computed_at: datetime) -> pl.DataFrame:
    """The rows of `report` for the fraud_drift_psi table (the model score as feature
    `score`); a PSI that could not be computed (an empty bin side) is null."""
    features = [*report.feature_psi, "score"]
    values = [*report.feature_psi.values(), report.score_psi]
    return pl.DataFrame(
        {
            "computed_at": [computed_at] * len(features),
            "latest_day": [datetime.fromisoformat(str(report.latest_day)).date()] * len(features),
            "feature": features,
            "psi": [float(v) if np.isfinite(v) else None for v in values],
            "reference_rows": [report.reference_rows] * len(features),
            "latest_rows": [report.latest_rows] * len(features),
        },
        schema=DRIFT_PSI_COLUMNS,
    )
