"""Three-class sentiment (neg / neu / pos): sentence embedding + trained head, or lexicon baseline.

Features of the head: the 384-d sentence embedding of `model_text` (emojis as words), the
lexicon compound score (VADER for English, the project's French lexicon for French), a French
flag, and the surface cues of `sentiment.text.cues` (positive/negative/sarcasm emojis, "!",
"?", "...", elongated words, caps ratio: the seed's sarcasm remedy). The head is a
multinomial logistic regression, saved under `settings.models_dir/sentiment/<encoder>/` and
trained the first time it is needed (`ensure_head`) or by `lakehouse sentiment train`.
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
        proba = self.model.predict_proba(x)
        best = proba.argmax(axis=1)
        classes = list(self.model.classes_)
        embeddings = x[:, : x.shape[1] - 2 - len(CUE_NAMES)]
        return [classes[i] for i in best], proba[np.arange(len(texts)), best], embeddings


def head_dir(models_dir: Path, encoder: Encoder) -> Path:
    return models_dir / "sentiment" / encoder


def train_head(
    models_dir: Path,
    encoder: Encoder,
    data: Labelled | None = None,
    max_english: int | None = None,
    seed: int = 7,
) -> Head:
    """Fit the head on the shipped training data and save it (atomically) under models_dir."""
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
    head = Head(
        encoder,
        model,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        len(data),
        {"fit_seconds": round(time.monotonic() - started, 1)},
    )
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
