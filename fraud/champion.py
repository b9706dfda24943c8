"""Which model decides: the registry's champion, or none.

On a fresh registry the first champion is trained on the lake's own labelled history when it
holds enough of it (`MIN_LAKE_FRAUDS` fraud labels and the days the temporal split needs);
otherwise there is no model and decisions are rules-only (`model_version` = `rules-only`),
with the reason in the batch asset's metadata and the service's `/healthz`. Training on the
project's simulator happens only when asked (`lakehouse fraud train --source simulated`,
`train_simulated_champion`, the demo): never behind the user's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from fraud.model import FraudModel
from fraud.scoring import RULES_ONLY
from lakehouse.config import Settings
from lakehouse.errors import ConfigError, PromotionRefused

MIN_LAKE_FRAUDS = 20  # fewer fraud labels than this in the lake: no (re)training on it
TRAINED_ON_LAKE = "(trained on the lake)"  # in the status of a first champion trained here


@dataclass(frozen=True)
class Champion:
    """The model that decides (None: rules only) and, in words, where it comes from."""

    model: FraudModel | None
    status: str

    @property
    def version(self) -> str:
        return RULES_ONLY if self.model is None else self.model.version


def _too_few_frauds(frauds: int) -> str | None:
    if frauds >= MIN_LAKE_FRAUDS:
        return None
    return (
        f"the lake holds {frauds} fraud labels (a model needs at least {MIN_LAKE_FRAUDS}): "
        "send chargebacks to the fraud_labels topic, or train on simulated data with "
        "`lakehouse fraud train --source simulated`"
    )


def lake_training_blocker(
    settings: Settings, transactions: pl.DataFrame, labels: pl.DataFrame
) -> str | None:
    """Why the lake cannot train a model yet (None: it can try), checked on counts and time
    spans only, before any feature is computed."""
    from fraud.training import DAY_US, split_options

    blocker = _too_few_frauds(int(labels["is_fraud"].sum()) if labels.height else 0)
    if blocker is not None or transactions.height == 0:
        return blocker or "silver_transactions is empty"
    options = split_options(settings)
    needed = options.val_days + options.gap_days + options.maturity_days + 1
    ts = transactions["ts"].dt.epoch("us")
    span = (int(ts.max()) - int(ts.min())) / DAY_US  # type: ignore[arg-type]
    if span < needed:
        return (
            f"the lake's transactions span {span:.1f} days, the temporal split needs at least "
            f"{needed:g} (LAKEHOUSE_FRAUD_VAL_DAYS + _GAP_DAYS + _MATURITY_DAYS + 1 of fit)"
        )
    return None


def _lake_frauds(settings: Settings) -> int:
    """Fraud labels in silver_fraud_labels (read alone: cheap on every micro-batch)."""
    from lake.tables import open_table, silver_uri

    table = open_table(silver_uri(settings, "silver_fraud_labels"), settings)
    if table is None:
        return 0
    column = table.to_pyarrow_dataset().to_table(columns=["is_fraud"])["is_fraud"]
    return int(column.to_numpy(zero_copy_only=False).sum())


def resolve_champion(settings: Settings, say: Callable[[str], object] = print) -> Champion:
    """The registry's champion; on a fresh registry, a first one trained on the lake when it
    holds enough labelled history; else rules-only, saying why."""
    from fraud.training import (
        MODEL_NAME,
        champion_model,
        lake_as_of,
        load_lake_history,
        split_options,
        train_and_register,
    )

    model = champion_model(settings)
    if model is not None:
        return Champion(model, f"champion {MODEL_NAME} v{model.version}")
    blocker = _too_few_frauds(_lake_frauds(settings))
    if blocker is None:
        tx, labels = load_lake_history(settings)
        blocker = lake_training_blocker(settings, tx, labels)
    if blocker is None:
        say("no fraud model in the registry yet: training a first champion on the lake's history")
        try:
            result = train_and_register(
                settings, tx, labels, lake_as_of(tx, labels), split_options(settings), "lake"
            )
            say(result.promotion)
            blocker = result.promotion
        except (ConfigError, PromotionRefused) as exc:  # too few frauds in a window
            blocker = str(exc)
        model = champion_model(settings)
        if model is not None:
            return Champion(model, f"champion {MODEL_NAME} v{model.version} {TRAINED_ON_LAKE}")
    status = f"rules only, no fraud model: {blocker}"
    say(status)
    return Champion(None, status)


def train_simulated_champion(
    settings: Settings,
    say: Callable[[str], object] = print,
    days: float = 35,
    scale: float = 0.1,
    seed: int = 42,
    end: datetime | None = None,
) -> FraudModel:
    """Train and register a model on the project's simulator (explicitly asked for: the demo,
    `lakehouse fraud train --source simulated`, tests and benchmarks) and return the champion."""
    from fraud.training import champion_model, simulated_history, train_and_register

    say(f"training a fraud model on {days:g} days of simulated transactions (asked for)")
    tx, labels, end = simulated_history(settings, days, scale, seed, end)
    result = train_and_register(settings, tx, labels, end, source="simulated")
    say(result.promotion)
    model = champion_model(settings)
    if model is None:
        raise ConfigError(f"no champion after training on simulated data: {result.promotion}")
    return model
