"""Register the sentiment head in the project's MLflow registry (lakehouse/registry.py), with
the champion rule of the fraud and demand models.

Registered model `sentiment_head_<encoder>` (static, transformer). Metric: macro-F1 on the
held-out sets (`sentiment/data/eval_{fr,en}.tsv`), the mean of the two languages (higher is
better). The current champion is re-scored on the same held-out posts with the same encoder
before the comparison (`promote_if_better`: ties keep the champion). Only a promoted head is
saved as the one the classifier serves (`settings.models_dir/sentiment/<encoder>/`); a
challenger that loses stays registered, not served. The temperature of `confidence` does
not change a label, hence not the metric: it is logged with the run, with the expected
calibration error before and after it on each held-out set. mlflow is imported inside the
functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lakehouse.config import Settings
from sentiment import datasets
from sentiment.classifier import (
    CalibrationReport,
    Evaluation,
    Head,
    calibration_report,
    evaluate_labels,
    features,
    save_head,
    train_head,
)

if TYPE_CHECKING:
    from lakehouse.registry import Promotion

EXPERIMENT = "sentiment"


def model_name(encoder: str) -> str:
    return f"sentiment_head_{encoder}"


def held_out_macro_f1(model: Any, encoder: str, models_dir: Path) -> tuple[float, list[Evaluation]]:
    """Mean over fr/en of the macro-F1 of a head's sklearn pipeline on the held-out sets."""
    evaluations = []
    for lang in ("fr", "en"):
        held_out = datasets.evaluation_set(lang)
        x = features(held_out.texts, held_out.langs, encoder, models_dir)  # type: ignore[arg-type]
        predicted = [str(p) for p in model.predict(x)]
        evaluations.append(evaluate_labels(encoder, lang, held_out.labels, predicted))
    return float(np.mean([e.macro_f1 for e in evaluations])), evaluations


def _champion_model(name: str) -> Any | None:
    import mlflow

    from lakehouse.registry import champion_version

    if champion_version(mlflow.MlflowClient(), name) is None:
        return None
    return mlflow.sklearn.load_model(f"models:/{name}@champion")


@dataclass(frozen=True)
class HeadRegistration:
    promotion: Promotion
    evaluations: list[Evaluation]  # the challenger on the held-out sets
    calibration: list[CalibrationReport]  # its confidence before / after the temperature
    served: bool  # saved as the head the classifier uses


def register_head(settings: Settings, head: Head) -> HeadRegistration:
    """Log and register `head`; champion (and served) only if its held-out macro-F1 beats
    the champion's on the same posts."""
    import mlflow

    from lakehouse.registry import configure_mlflow, promote_if_better

    configure_mlflow(settings, EXPERIMENT)
    name = model_name(head.encoder)
    value, evaluations = held_out_macro_f1(head.model, head.encoder, settings.models_dir)
    champion = _champion_model(name)
    champion_value = (
        None
        if champion is None
        else held_out_macro_f1(champion, head.encoder, settings.models_dir)[0]
    )
    calibration = calibration_report(head, settings.models_dir)
    with mlflow.start_run(run_name=f"sentiment_head_{head.encoder}"):
        mlflow.log_params(
            {
                "encoder": head.encoder,
                "train_rows": head.train_rows,
                "temperature": round(head.temperature, 6),
            }
        )
        mlflow.log_metric("held_out_macro_f1", value)
        for e in evaluations:
            mlflow.log_metric(f"macro_f1_{e.lang}", e.macro_f1)
        for c in calibration:
            mlflow.log_metric(f"ece_{c.lang}_before", c.before.ece)
            mlflow.log_metric(f"ece_{c.lang}_after", c.after.ece)
        if champion_value is not None:
            mlflow.log_metric("champion_held_out_macro_f1", champion_value)
        info = mlflow.sklearn.log_model(head.model, name="model")
    promotion = promote_if_better(
        info.model_uri, name, "held_out_macro_f1", value, champion_value, higher_is_better=True
    )
    serving = (Path(settings.models_dir) / "sentiment" / head.encoder / "head.joblib").exists()
    served = promotion.promoted or not serving
    if served:
        save_head(head, settings.models_dir)
    return HeadRegistration(promotion, evaluations, calibration, served)


def train_and_register(settings: Settings, encoder: str) -> HeadRegistration:
    """The nightly retraining: train a challenger (not served yet), then `register_head`."""
    head = train_head(settings.models_dir, encoder, save=False)  # type: ignore[arg-type]
    return register_head(settings, head)
