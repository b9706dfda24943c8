"""Fraud metrics on a labelled window: ranking quality and business outcomes of decisions."""

from __future__ import annotations

import numpy as np
import polars as pl

from fraud.rules import ALLOW, BLOCK

FPR_TARGET = 0.01


def card_precision_at_k(
    score: np.ndarray, y: np.ndarray, card: np.ndarray, day: np.ndarray, k: int = 100
) -> float:
    """Card Precision@k per day, averaged over days: each day, the k cards with the highest
    score (max over their transactions) are 'investigated'; precision = share of them with a
    fraud that day."""
    per_card = (
        pl.DataFrame({"score": score, "y": y.astype(bool), "card": card, "day": day})
        .group_by("day", "card")
        .agg(pl.col("score").max(), pl.col("y").any())
    )
    daily = (
        per_card.sort("score", descending=True)
        .group_by("day")
        .agg(pl.col("y").head(k).sum().alias("hits"), pl.len().alias("cards"))
        .with_columns((pl.col("hits") / pl.min_horizontal(pl.col("cards"), pl.lit(k))).alias("p"))
    )
    return float(daily["p"].mean()) if daily.height else float("nan")


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr_target: float = FPR_TARGET) -> float:
    from sklearn.metrics import roc_curve

    if y.sum() == 0 or y.sum() == y.size:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    return float(tpr[fpr <= fpr_target].max())


def evaluate(
    y: np.ndarray,
    score: np.ndarray,
    decision: np.ndarray,
    amount: np.ndarray,
    card: np.ndarray,
    day: np.ndarray,
) -> dict[str, float]:
    """AUC ROC, Average Precision, CP@100/day, recall at 1 % FPR, € fraud prevented (fraud
    BLOCKed or CHALLENGEd — a fraudster fails 3DS), € legitimate blocked, friction rate
    (share of legitimate transactions not simply allowed)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = y.astype(bool)
    both = 0 < y.sum() < y.size
    stopped = decision != ALLOW
    legit = ~y
    return {
        "auc_roc": float(roc_auc_score(y, score)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, score)) if both else float("nan"),
        "card_precision_at_100": card_precision_at_k(score, y, card, day),
        "recall_at_1pct_fpr": recall_at_fpr(y, score),
        "recall_decisions": float(stopped[y].mean()) if y.any() else float("nan"),
        "fpr_decisions": float(stopped[legit].mean()) if legit.any() else float("nan"),
        "fraud_eur_prevented": float(amount[y & stopped].sum()),
        "fraud_eur_missed": float(amount[y & ~stopped].sum()),
        "legit_eur_blocked": float(amount[legit & (decision == BLOCK)].sum()),
        "friction_rate": float(stopped[legit].mean()) if legit.any() else float("nan"),
        "transactions": float(y.size),
        "frauds": float(y.sum()),
    }


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per scorer."""
    columns = [
        ("auc_roc", "AUC ROC", "{:.4f}"),
        ("average_precision", "AP", "{:.4f}"),
        ("card_precision_at_100", "CP@100/day", "{:.4f}"),
        ("recall_at_1pct_fpr", "recall@1%FPR", "{:.4f}"),
        ("fraud_eur_prevented", "€ fraud prevented", "{:,.0f}"),
        ("legit_eur_blocked", "€ legit blocked", "{:,.0f}"),
        ("friction_rate", "friction", "{:.2%}"),
    ]
    lines = [
        "| scorer | " + " | ".join(c[1] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | " + " | ".join(fmt.format(m[key]) for key, _, fmt in columns) + " |"
        )
    return "\n".join(lines)
