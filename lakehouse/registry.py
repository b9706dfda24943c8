"""The project's one MLflow registry (fraud models, demand forecasters, sentiment heads).

Local SQLite backend under `LAKEHOUSE_HOME/mlflow` by default (`LAKEHOUSE_MLFLOW_TRACKING_URI`
points elsewhere). A registered model becomes `champion` only when it beats the current
champion on the same validation metric: `promote_if_better` is that rule, in one place.
`mlflow` is imported inside the functions (≈ 4 s import): callers stay light.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.config import Settings
from lakehouse.errors import PromotionRefused

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"


def configure_mlflow(settings: Settings, experiment: str) -> str:
    """Point MLflow at the project's registry, telemetry off; return the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        db = settings.mlflow_tracking_uri.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(db) or ".", exist_ok=True)
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        artifacts = settings.home / "mlflow" / "artifacts" / experiment
        experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    metric: str
    value: float
    champion_value: float | None  # the previous champion's value on the same metric
    promoted: bool

    def describe(self) -> str:
        before = "no champion yet" if self.champion_value is None else f"{self.champion_value:.4f}"
        verdict = "promoted to champion" if self.promoted else "kept as challenger"
        return (
            f"{self.model_name} v{self.version}: {self.metric}={self.value:.4f} "
            f"(champion: {before}) → {verdict}"
        )


def champion_version(client: MlflowClient, model_name: str) -> str | None:
    """Version the `champion` alias points at, or None on a fresh registry."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION).version
    except MlflowException:
        return None


def check_comparable(
    model_name: str, metric: str, value: float | None, champion_value: float | None
) -> None:
    """Raise PromotionRefused when the challenger's metric, or the champion's on the same
    window (None: no champion), is missing or NaN: `NaN > x` is always false, so such a
    comparison would silently keep or replace a champion on no evidence."""
    if value is None or not math.isfinite(value):
        raise PromotionRefused(
            f"{model_name}: the challenger's {metric} is {value} on its validation window "
            "(no labelled fraud there yet?): not registered; wait for labels or move the window "
            "(LAKEHOUSE_FRAUD_VAL_DAYS / _MATURITY_DAYS)"
        )
    if champion_value is not None and not math.isfinite(champion_value):
        raise PromotionRefused(
            f"{model_name}: the champion's {metric} is {champion_value} on the same validation "
            "window: the models cannot be compared, challenger not registered"
        )


def promote_if_better(
    model_uri: str,
    model_name: str,
    metric: str,
    value: float,
    champion_value: float | None,
    higher_is_better: bool = True,
) -> Promotion:
    """Register `model_uri` and move the `champion` alias to it only if it beats the champion.

    `champion_value` is the current champion evaluated on the *same* validation window as the
    challenger (the caller computes it: a metric stored at the champion's own training time
    would compare different windows). Ties keep the current champion. A missing or NaN
    metric on either side raises PromotionRefused before anything is registered.
    """
    check_comparable(model_name, metric, value, champion_value)
    import mlflow
    from mlflow import MlflowClient

    version = mlflow.register_model(model_uri, model_name).version
    client = MlflowClient()
    client.set_model_version_tag(model_name, version, metric, f"{value:.6f}")
    if champion_value is None or champion_version(client, model_name) is None:
        promoted = True
    else:
        promoted = value > champion_value if higher_is_better else value < champion_value
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return Promotion(model_name, str(version), metric, value, champion_value, promoted)
