"""Three-class sentiment (neg / neu / pos): sentence embedding + trained head, or lexicon baseline.

Features of the head: the 384-d sentence embedding of `model_text` (emojis as words), the
lexicon compound score (VADER for English, the project's French lexicon for French), a French
flag, and the surface cues of `sentiment.text.cues` (positive/negative/sarcasm emojis, "!",
"?", "...", elongated words, caps ratio: the seed's sarcasm remedy). The head is a
multinomial logistic regression, saved under `settings.models_dir/sentiment/<encoder>/` and
trained the first time it is needed (`ensure_head`) or by `lakehouse sentiment train` and the
nightly `train_sentiment_model` job (which register it in MLflow and serve it only when it
beats the champion: sentiment/model_registry.py).

`confidence` (the probability of the predicted label) is temperature-scaled: softmax(z / T)
of the head's logits z. T is fitted (minimum log-loss) on the held-out posts
(`sentiment/data/eval_{fr,en}.tsv`), the posts the head is judged on and the closest to live
ones: fitted on the head's own training rows (out-of-fold logits of a 5-fold
cross-validation) it came out at 0.97 and left the held-out ECE at 0.10-0.11, since the
held-out posts are easier than the noisy human-rated tweets of the training set. T changes
no label, so the held-out macro-F1 stays an out-of-sample figure. `calibration_report` gives
the reliability table and the expected calibration error on each held-out set before (T = 1)
and after, the "after" **cross-fitted**: the temperature fitted on the *other* language's
held-out posts, so the ECE reported is never measured on the posts T was fitted on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sentiment import datasets, lexicon
from sentiment.datasets import LABELS, Labelled
from sentiment.embedding import Encoder, encode
from sentiment.text import CUE_NAMES, cues, model_text

log = logging.getLogger(__name__)
_lock = threading.Lock()
_heads: dict[Path, Head] = {}


def side_features(texts: list[str], langs: list[str]) -> np.ndarray:
    """Lexicon score, French flag and surface cues: (n, 2 + len(CUE_NAMES))."""
    rows = [
        [lexicon.compound(t, lang), 1.0 if lang == "fr" else 0.0, *cues(t).as_list()]
        for t, lang in zip(texts, langs, strict=True)
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 2 + len(CUE_NAMES))


def features(texts: list[str], langs: list[str], encoder: Encoder, models_dir: Path) -> np.ndarray:
    vectors = encode([model_text(t) for t in texts], encoder, models_dir)
    return np.hstack([vectors, side_features(texts, langs)])


@dataclass
class Head:
    encoder: Encoder
    model: Any  # sklearn Pipeline
    trained_at: str
    train_rows: int
    metrics: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0  # confidence = softmax(logits / temperature)

    def predict(
        self, texts: list[str], langs: list[str], models_dir: Path
    ) -> tuple[list[str], np.ndarray]:
        """Labels and confidence (probability of the predicted class)."""
        labels, confidence, _ = self.predict_with_embeddings(texts, langs, models_dir)
        return labels, confidence

    def predict_with_embeddings(
        self, texts: list[str], langs: list[str], models_dir: Path
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Labels, confidence and the sentence embeddings used (reusable for aspects)."""
        if not texts:
            return [], np.zeros(0), np.zeros((0, 384), dtype=np.float32)
        x = features(texts, langs, self.encoder, models_dir)
        proba = self.probabilities(x)
        best = proba.argmax(axis=1)
        classes = list(self.model.classes_)
        embeddings = x[:, : x.shape[1] - 2 - len(CUE_NAMES)]
        return [classes[i] for i in best], proba[np.arange(len(texts)), best], embeddings

    def probabilities(self, x: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Class probabilities (columns in `model.classes_` order), temperature-scaled."""
        t = self.temperature if temperature is None else temperature
        return softmax(np.asarray(self.model.decision_function(x), dtype=np.float64) / t)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """T > 0 minimising the (weighted) log-loss of softmax(logits / T) for integer `labels`
    (bounded search over log T in [-3, 3])."""
    from scipy.optimize import minimize_scalar

    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = np.arange(len(labels))

    def loss(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z[rows, labels] - np.log(np.exp(z).sum(axis=1))
        return float(-(w * log_p).sum() / w.sum())

    found = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(found.x))


def held_out_logits(
    model: Any, classes: list[str], lang: str, encoder: Encoder, models_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, true class index) of a head's pipeline on one language's held-out posts."""
    held_out = datasets.evaluation_set(lang)
    x = features(held_out.texts, held_out.langs, encoder, models_dir)
    z = np.asarray(model.decision_function(x), dtype=np.float64)
    return z, np.array([classes.index(label) for label in held_out.labels])


def head_dir(models_dir: Path, encoder: Encoder) -> Path:
    return models_dir / "sentiment" / encoder


def train_head(
    models_dir: Path,
    encoder: Encoder,
    data: Labelled | None = None,
    max_english: int | None = None,
    seed: int = 7,
    save: bool = True,
) -> Head:
    """Fit the head on the shipped training data, fit its temperature on the held-out posts,
    and save it (atomically) under models_dir unless `save` is False (the registry saves a
    challenger only once it is promoted)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = data or datasets.training_set()
    if max_english is not None:
        rng = np.random.default_rng(seed)
        english = [i for i, lang in enumerate(data.langs) if lang == "en"]
        keep = set(rng.permutation(english)[:max_english].tolist())
        keep |= {i for i, lang in enumerate(data.langs) if lang != "en"}
        idx = sorted(keep)
        data = Labelled(
            [data.texts[i] for i in idx],
            [data.labels[i] for i in idx],
            [data.langs[i] for i in idx],
            [data.aspects[i] for i in idx],
        )
    started = time.monotonic()
    x = features(data.texts, data.langs, encoder, models_dir)
    # French rows are few next to VADER's English ones: weight languages equally
    langs = np.asarray(data.langs)
    weights = np.ones(len(langs))
    for lang in set(data.langs):
        weights[langs == lang] = len(langs) / (len(set(data.langs)) * (langs == lang).sum())
    dim = x.shape[1]
    emb = list(range(dim - 2 - len(CUE_NAMES)))
    side = list(range(dim - 2 - len(CUE_NAMES), dim))
    model = Pipeline(
        [
            (
                "scale",
                ColumnTransformer([("emb", "passthrough", emb), ("side", StandardScaler(), side)]),
            ),
            ("clf", LogisticRegression(C=2.0, max_iter=2000, class_weight="balanced")),
        ]
    )
    model.fit(x, data.labels, clf__sample_weight=weights)
    classes = list(model.classes_)
    logits, truth = [], []
    for lang in ("fr", "en"):
        z, y = held_out_logits(model, classes, lang, encoder, models_dir)
        logits.append(z)
        truth.append(y)
    temperature = fit_temperature(np.vstack(logits), np.concatenate(truth))
    head = Head(
        encoder,
        model,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        len(data),
        {"fit_seconds": round(time.monotonic() - started, 1)},
        temperature,
    )
    if save:
        save_head(head, models_dir)
    return head


def save_head(head: Head, models_dir: Path) -> Path:
    import joblib

    folder = head_dir(models_dir, head.encoder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "head.joblib.tmp"
    joblib.dump(head.model, tmp)
    os.replace(tmp, folder / "head.joblib")
    meta = {k: v for k, v in asdict(head).items() if k != "model"}
    (folder / "head.json").write_text(json.dumps(meta, indent=2))
    with _lock:
        _heads[folder] = head
    return folder


def load_head(models_dir: Path, encoder: Encoder) -> Head | None:
    folder = head_dir(models_dir, encoder)
    with _lock:
        if folder in _heads:
            return _heads[folder]
    if not (folder / "head.joblib").exists():
        return None
    import joblib

    meta = json.loads((folder / "head.json").read_text())
    head = Head(
        encoder,
        joblib.load(folder / "head.joblib"),
        meta["trained_at"],
        meta["train_rows"],
        meta.get("metrics", {}),
        float(meta.get("temperature", 1.0)),  # heads saved before calibration: unscaled
    )
    with _lock:
        _heads[folder] = head
    return head


def ensure_head(models_dir: Path, encoder: Encoder) -> Head:
    """The saved head, or a new one trained now on the shipped data (first use)."""
    head = load_head(models_dir, encoder)
    if head is None:
        log.info("no %s sentiment head under %s: training it now", encoder, models_dir)
        head = train_head(models_dir, encoder)
    return head


# ---- evaluation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    method: str
    lang: str
    n: int
    macro_f1: float
    accuracy: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1
    confusion: list[list[int]]  # rows = true (neg, neu, pos), columns = predicted

    def table(self) -> str:
        lines = [
            f"{self.method} [{self.lang}] n={self.n} macro-F1={self.macro_f1:.3f} "
            f"accuracy={self.accuracy:.3f}"
        ]
        for label in LABELS:
            c = self.per_class[label]
            lines.append(f"  {label}: precision={c['precision']:.3f} recall={c['recall']:.3f}")
        lines.append("  confusion (rows true neg/neu/pos, cols predicted): " + str(self.confusion))
        return "\n".join(lines)


def evaluate_labels(method: str, lang: str, truth: list[str], predicted: list[str]) -> Evaluation:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    p, r, f, _ = precision_recall_fscore_support(
        truth, predicted, labels=list(LABELS), zero_division=0
    )
    return Evaluation(
        method,
        lang,
        len(truth),
        float(f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0)),
        float(accuracy_score(truth, predicted)),
        {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
            for i, label in enumerate(LABELS)
        },
        confusion_matrix(truth, predicted, labels=list(LABELS)).tolist(),
    )


def evaluate(models_dir: Path, encoders: tuple[Encoder, ...]) -> list[Evaluation]:
    """Model heads vs the lexicon baseline on the held-out set, per language."""
    results: list[Evaluation] = []
    for lang in ("fr", "en"):
        held_out = datasets.evaluation_set(lang)
        for encoder in encoders:
            head = ensure_head(models_dir, encoder)
            predicted, _ = head.predict(held_out.texts, held_out.langs, models_dir)
            results.append(
                evaluate_labels(f"minilm-{encoder}+head", lang, held_out.labels, predicted)
            )
        baseline, _ = lexicon.classify(held_out.texts, held_out.langs)
        name = "lexicon (VADER)" if lang == "en" else "lexicon (project FR)"
        results.append(evaluate_labels(name, lang, held_out.labels, baseline))
    return results


# ---- calibration of `confidence` -------------------------------------------------------------
@dataclass(frozen=True)
class Reliability:
    """Confidence vs accuracy in equal-width confidence bins, and the expected calibration
    error ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|."""

    bins: list[tuple[float, float, int, float, float]]  # low, high, n, mean confidence, accuracy
    ece: float
    n: int


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> Reliability:
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    ece = 0.0
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        if count == 0:
            continue
        mean_conf, accuracy = float(conf[mask].mean()), float(hit[mask].mean())
        rows.append((float(edges[b]), float(edges[b + 1]), count, mean_conf, accuracy))
        ece += count / conf.size * abs(accuracy - mean_conf)
    return Reliability(rows, float(ece), int(conf.size))


@dataclass(frozen=True)
class CalibrationReport:
    lang: str
    temperature: float  # fitted on the other language's held-out posts
    before: Reliability  # T = 1
    after: Reliability  # with that temperature

    def table(self) -> str:
        lines = [
            f"[{self.lang}] n={self.before.n} T={self.temperature:.3f} "
            f"ECE before {self.before.ece:.4f} after {self.after.ece:.4f}",
            "| confidence | posts (T=1) | mean confidence | accuracy | posts (T) | mean "
            "confidence | accuracy |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        after = {(lo, hi): (n, c, a) for lo, hi, n, c, a in self.after.bins}
        before = {(lo, hi): (n, c, a) for lo, hi, n, c, a in self.before.bins}
        for key in sorted(set(before) | set(after)):
            b = before.get(key)
            a = after.get(key)
            cells_b = f"{b[0]} | {b[1]:.3f} | {b[2]:.3f}" if b else "0 | - | -"
            cells_a = f"{a[0]} | {a[1]:.3f} | {a[2]:.3f}" if a else "0 | - | -"
            lines.append(f"| {key[0]:.1f}-{key[1]:.1f} | {cells_b} | {cells_a} |")
        return "\n".join(lines)


def calibration_report(head: Head, models_dir: Path) -> list[CalibrationReport]:
    """Reliability and ECE of `confidence` on each language's held-out set: unscaled (T = 1),
    and with the temperature fitted on the other language's held-out posts (cross-fitted:
    never scored on the posts it was fitted on). The report's T is that cross-fitted one."""
    classes = list(head.model.classes_)
    logits = {
        lang: held_out_logits(head.model, classes, lang, head.encoder, models_dir)
        for lang in ("fr", "en")
    }
    out = []
    for lang, other in (("fr", "en"), ("en", "fr")):
        z, truth = logits[lang]
        t_other = fit_temperature(*logits[other])
        found = []
        for t in (1.0, t_other):
            proba = softmax(z / t)
            found.append(reliability(proba.max(axis=1), proba.argmax(axis=1) == truth))
        out.append(CalibrationReport(lang, t_other, found[0], found[1]))
    return out
