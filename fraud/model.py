"""The fraud model bundle: LightGBM (class-weighted) + Platt calibration + IsolationForest,
saved as plain files (booster text, arrays, joblib) inside an MLflow model.

`score` returns the calibrated probability, the anomaly score and the TreeSHAP contributions
(LightGBM `pred_contrib=True`) used for the reason codes. lightgbm/sklearn are imported
lazily (they are heavy for the CLI and the Dagster code location).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fraud.features import FEATURES, describe

BOOSTER_FILE, CALIBRATION_FILE, IFOREST_FILE, META_FILE = (
    "booster.txt",
    "calibration.npz",
    "iforest.joblib",
    "meta.json",
)
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "max_depth": 6,
    "min_child_samples": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 1,  # OpenMP threads spin: on a shared 2-core box 2 threads is 10x slower
    "seed": 7,
    "deterministic": True,
}


def matrix(columns: dict[str, np.ndarray] | Any, features: list[str] = FEATURES) -> np.ndarray:
    """Feature matrix (rows × features), nulls as NaN."""
    return (
        np.column_stack([np.asarray(columns[f], dtype=np.float64) for f in features])
        if len(features)
        else np.zeros((0, 0))
    )


@dataclass
class Scores:
    probability: np.ndarray
    anomaly: np.ndarray
    contributions: np.ndarray  # rows × features (bias column dropped; 0 if not explained)


class FastForest:
    """IsolationForest scoring for a few rows without sklearn's per-call overhead (≈ 5 ms per
    row there, joblib included): the fitted trees as padded arrays, walked level by level
    for every tree at once. Same arithmetic as `IsolationForest.score_samples` (float32
    feature values, path length + average path length of the leaf), tested equal."""

    def __init__(self, forest: Any) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        trees = [e.tree_ for e in forest.estimators_]
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.left = np.full((n, width), -1, dtype=np.int64)
        self.right = np.full((n, width), -1, dtype=np.int64)
        self.feature = np.full((n, width), -2, dtype=np.int64)
        self.threshold = np.zeros((n, width))
        self.leaf_value = np.zeros((n, width))
        for i, (tree, features) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
            k = tree.node_count
            self.left[i, :k], self.right[i, :k] = tree.children_left, tree.children_right
            inner = tree.feature >= 0
            mapped = np.where(inner, np.asarray(features)[np.maximum(tree.feature, 0)], -2)
            self.feature[i, :k] = mapped
            self.threshold[i, :k] = tree.threshold
            self.leaf_value[i, :k] = (
                forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
            )
        self.denominator = n * float(_average_path_length([forest._max_samples])[0])
        self.rows = np.arange(n)

    def anomaly(self, x: np.ndarray) -> np.ndarray:
        """-score_samples(x) for each row of x (NaN already filled)."""
        values = x.astype(np.float32).astype(np.float64)
        out = np.empty(len(values))
        for r, row in enumerate(values):
            node = np.zeros(self.rows.size, dtype=np.int64)
            while True:
                feature = self.feature[self.rows, node]
                inner = feature >= 0
                if not inner.any():
                    break
                go_left = row[np.maximum(feature, 0)] <= self.threshold[self.rows, node]
                nxt = np.where(go_left, self.left[self.rows, node], self.right[self.rows, node])
                node = np.where(inner, nxt, node)
            depth = self.leaf_value[self.rows, node].sum()
            out[r] = 2.0 ** (-depth / self.denominator) if self.denominator else 1.0
        return out


@dataclass
class FraudModel:
    booster: Any  # lightgbm.Booster
    calibration_x: np.ndarray
    calibration_y: np.ndarray
    iforest: Any  # sklearn IsolationForest
    iforest_fill: np.ndarray  # per-feature fill value for NaN (IsolationForest has no NaN)
    anomaly_threshold: float
    features: list[str]
    version: str = "unregistered"
    config_version: str = ""
    base_rate: float = 0.0  # fraud share of the fit slice (0: unknown, older bundles)
    _fast: FastForest | None = field(default=None, repr=False)

    def margin(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1))

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        """Platt scaling: sigmoid(a · margin + b), fitted on the calibration slice (smooth and
        strictly increasing, so the ranking of the booster is kept)."""
        a, b = float(self.calibration_x[0]), float(self.calibration_x[1])
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(margin) + b)))

    def anomaly(self, x: np.ndarray) -> np.ndarray:
        """IsolationForest anomaly score (higher = more unusual, in (0, 1])."""
        filled = np.where(np.isnan(x), self.iforest_fill, x)
        if len(filled) <= 16:  # online: sklearn's per-call overhead dominates
            if self._fast is None:
                self._fast = FastForest(self.iforest)
            return self._fast.anomaly(filled)
        return -self.iforest.score_samples(filled)

    def score(self, x: np.ndarray, explain: np.ndarray | bool = True) -> Scores:
        """`explain`: True (all rows), False, or a boolean mask of rows to explain (TreeSHAP
        costs ~100x a prediction: batch scoring explains only the rows it does not allow)."""
        margin = self.margin(x)
        contributions = np.zeros_like(x)
        mask = np.full(len(x), explain) if isinstance(explain, bool) else explain
        if mask.any():
            contributions[mask] = np.asarray(
                self.booster.predict(x[mask], pred_contrib=True, num_threads=1)
            )[:, :-1]
        return Scores(self.calibrate(margin), self.anomaly(x), contributions)

    def reasons(self, x: np.ndarray, contributions: np.ndarray, top: int = 3) -> list[list[str]]:
        """Top-`top` features pushing the score up, in words with their values."""
        order = np.argsort(-contributions, axis=1)[:, :top]
        out: list[list[str]] = []
        for row, idx in enumerate(order):
            words = []
            for j in idx.tolist():
                if contributions[row, j] <= 0:
                    break
                value = x[row, j]
                shown = "n/a" if np.isnan(value) else f"{value:.4g}"
                words.append(
                    f"{describe(self.features[j])} = {shown} (+{contributions[row, j]:.2f})"
                )
            out.append(words)
        return out

    def save(self, folder: Path) -> Path:
        import joblib

        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        np.savez(
            folder / CALIBRATION_FILE,
            x=self.calibration_x,
            y=self.calibration_y,
            fill=self.iforest_fill,
        )
        joblib.dump(self.iforest, folder / IFOREST_FILE)
        meta = {
            "features": self.features,
            "anomaly_threshold": self.anomaly_threshold,
            "config_version": self.config_version,
            "base_rate": self.base_rate,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path, version: str = "unregistered") -> FraudModel:
        import joblib
        import lightgbm

        meta = json.loads((folder / META_FILE).read_text())
        arrays = np.load(folder / CALIBRATION_FILE)
        return cls(
            booster=lightgbm.Booster(model_file=str(folder / BOOSTER_FILE)),
            calibration_x=arrays["x"],
            calibration_y=arrays["y"],
            iforest=joblib.load(folder / IFOREST_FILE),
            iforest_fill=arrays["fill"],
            anomaly_threshold=float(meta["anomaly_threshold"]),
            features=list(meta["features"]),
            version=version,
            config_version=str(meta.get("config_version", "")),
            base_rate=float(meta.get("base_rate", 0.0)),
        )


def fit(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_calibrate: np.ndarray,
    y_calibrate: np.ndarray,
    anomaly_quantile: float,
    rounds: int = 200,
    features: list[str] = FEATURES,
) -> FraudModel:
    """LightGBM with class weighting (scale_pos_weight = sqrt(neg/pos)) on the fit slice,
    Platt calibration on the later calibration slice, IsolationForest on the fit slice."""
    import lightgbm
    from sklearn.ensemble import IsolationForest
    from sklearn.linear_model import LogisticRegression

    positives = max(int(y_fit.sum()), 1)
    params = {
        **LGBM_PARAMS,
        "scale_pos_weight": float(np.sqrt((len(y_fit) - positives) / positives)),
    }
    data = lightgbm.Dataset(x_fit, label=y_fit, feature_name=features, free_raw_data=False)
    valid = lightgbm.Dataset(x_calibrate, label=y_calibrate, reference=data)
    booster = lightgbm.train(
        {**params, "metric": "average_precision"},
        data,
        num_boost_round=rounds,
        valid_sets=[valid],
        callbacks=[lightgbm.early_stopping(20, verbose=False)] if y_calibrate.sum() else [],
    )
    margin = booster.predict(x_calibrate, raw_score=True)
    if 0 < y_calibrate.sum() < y_calibrate.size:
        platt = LogisticRegression(C=1e4).fit(margin.reshape(-1, 1), y_calibrate)
        cal_x = np.array([float(platt.coef_[0, 0]), float(platt.intercept_[0])])
    else:  # no positive (or negative) in the calibration slice: undo the class weighting
        cal_x = np.array([1.0, -float(np.log(params["scale_pos_weight"]))])
    cal_y = np.zeros(0)
    fill = np.nanmedian(np.where(np.isnan(x_fit), np.nan, x_fit), axis=0)
    fill = np.where(np.isnan(fill), -1.0, fill)
    iforest = IsolationForest(n_estimators=50, max_samples=256, random_state=7, n_jobs=1)
    filled = np.where(np.isnan(x_fit), fill, x_fit)
    iforest.fit(filled)
    threshold = float(np.quantile(-iforest.score_samples(filled), anomaly_quantile))
    return FraudModel(
        booster,
        cal_x,
        cal_y,
        iforest,
        fill,
        threshold,
        list(features),
        base_rate=float(np.mean(y_fit)) if len(y_fit) else 0.0,
    )
