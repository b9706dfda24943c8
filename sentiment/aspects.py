"""Aspects: KeyBERT-style keyphrases with the same MiniLM embeddings, mapped to business aspects.

For each post, candidate keyphrases are its 1–2-word n-grams after cleaning (stopwords out);
each candidate is embedded with the distilled static MiniLM (same model, no attention: a whole
batch of candidates costs one gather) and ranked by cosine similarity to the post's own
embedding (KeyBERT's rule); the top `TOP_K` keyphrases are then mapped to the aspect whose
prototype (a few French and English seed words per aspect, embedded the same way) is the most
similar, if that similarity reaches `MIN_SIMILARITY`. A small keyword list decides first when
a post names an aspect outright ("livraison", "refund"). No aspect found → "other".
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentiment.embedding import StaticModel, static_model
from sentiment.text import clean_tokens, model_text, strip_accents

ASPECTS = ("product", "price", "delivery", "customer_service", "other")
TOP_K = 3
MIN_SIMILARITY = 0.45
PROTOTYPES: dict[str, str] = {
    "product": "product quality battery screen broken works design produit qualité qualite panne",
    "price": "price expensive cheap cost discount sale promo prix cher tarif soldes euros",
    "delivery": "delivery parcel shipping courier late package livraison colis livreur retard",
    "customer_service": "customer service support refund hotline agent sav service client conseiller remboursement",
}
KEYWORDS: dict[str, re.Pattern[str]] = {
    "delivery": re.compile(
        r"\b(livr\w*|colis|transporteur|point relais|exp[eé]di\w*|deliver\w*|parcel|shipp\w*|courier|package|tracking|suivi)\b"
    ),
    "customer_service": re.compile(
        r"\b(sav|service client|support|hotline|conseill\w*|remboursement|refund\w*|agent|customer (?:service|care)|chat en ligne|live chat|after-sales)\b"
    ),
    "product": re.compile(
        r"\b(produit|qualit[eé]|batterie|[eé]cran|cass[eé]\w*|panne|fonctionne\w*|marche|mod[eè]le|taille|tissu|couvercle|product|quality|battery|screen|broke\w*|works?|model|size|fabric|lid|build)\b"
    ),
    "other": re.compile(
        r"\b(appli\w*|app|site|website|magasin|store|boutique|shop|pub|ad|campagne|campaign|enseigne|logo|initiative)\b"
    ),
    "price": re.compile(
        r"\b(prix|cher|ch[eè]re|tarif\w*|promo\w*|soldes?|co[uû]t\w*|€|euros?|price\w*|expensive|cheap\w*|deals?|discount\w*|sale|overpriced|bargain|rip-off)\b"
    ),
}


@dataclass(frozen=True)
class AspectResult:
    aspects: list[str]
    keyphrases: list[str]


def candidates(text: str, lang: str) -> list[str]:
    tokens = [t for t in clean_tokens(text, lang) if not t.startswith(("emoji_", "@", "url"))]
    grams = set(tokens) | {f"{a} {b}" for a, b in itertools.pairwise(tokens)}
    return sorted(g for g in grams if len(g) > 2)


_CACHE_LIMIT = 200_000
_candidate_cache: dict[tuple[int, str], np.ndarray] = {}


def _candidate_vectors(model: StaticModel, flat: list[str]) -> np.ndarray:
    """Embeddings of candidate phrases; a phrase already seen in this process is not
    re-encoded (the same words come back post after post)."""
    key = id(model.table)
    missing = sorted({c for c in flat if (key, c) not in _candidate_cache})
    if missing:
        if len(_candidate_cache) + len(missing) > _CACHE_LIMIT:
            _candidate_cache.clear()
        for phrase, vector in zip(missing, model.encode(missing), strict=True):
            _candidate_cache[key, phrase] = vector
    if not flat:
        return np.zeros((0, model.table.shape[1]), dtype=np.float32)
    return np.stack([_candidate_cache[key, c] for c in flat])


def extract(
    texts: list[str],
    langs: list[str],
    models_dir: Path,
    doc_vectors: np.ndarray | None = None,
) -> list[AspectResult]:
    """Aspects and keyphrases for a batch of posts (`doc_vectors`: the posts' static
    embeddings when the caller already has them)."""
    if not texts:
        return []
    model = static_model(models_dir)
    per_post = [candidates(t, lang) for t, lang in zip(texts, langs, strict=True)]
    flat = [c for cands in per_post for c in cands]
    if doc_vectors is None:
        doc_vectors = model.encode([model_text(t) for t in texts])
    cand_vectors = _candidate_vectors(model, flat)
    names = list(PROTOTYPES)
    proto = model.encode([PROTOTYPES[n] for n in names])
    results: list[AspectResult] = []
    start = 0
    for i, (text, cands) in enumerate(zip(texts, per_post, strict=True)):
        vectors = cand_vectors[start : start + len(cands)]
        start += len(cands)
        found: list[str] = []
        lowered = strip_accents(text.lower())
        for aspect, pattern in KEYWORDS.items():
            if pattern.search(text.lower()) or pattern.search(lowered):
                found.append(aspect)
        keyphrases: list[str] = []
        if len(cands):
            relevance = vectors @ doc_vectors[i]
            top = np.argsort(-relevance)[:TOP_K]
            keyphrases = [cands[j] for j in top]
            if not found:
                sims = vectors[top] @ proto.T  # (k, aspects)
                best = sims.max(axis=0)
                for j in np.argsort(-best):
                    if best[j] >= MIN_SIMILARITY:
                        found.append(names[j])
                        break
        results.append(AspectResult(found or ["other"], keyphrases))
    return results


def evaluate(
    texts: list[str], langs: list[str], gold: list[str], models_dir: Path
) -> dict[str, float]:
    """Primary-aspect accuracy and macro-F1 on a labelled sample (one gold aspect per post):
    a post counts as right when its gold aspect is among the predicted aspects."""
    from sklearn.metrics import f1_score

    predicted = extract(texts, langs, models_dir)
    chosen = [g if g in r.aspects else r.aspects[0] for g, r in zip(gold, predicted, strict=True)]
    return {
        "n": float(len(gold)),
        "accuracy": float(np.mean([c == g for c, g in zip(chosen, gold, strict=True)])),
        "macro_f1": float(
            f1_score(gold, chosen, labels=list(ASPECTS), average="macro", zero_division=0)
        ),
    }
