"""Batch pre-processing steps, each a pure function of its inputs (tested one by one).

- `exact_hashes`: SHA-1 of the normalised text (`text.dedup_key`): reposts that differ only by
  URL, mention, case, accents, punctuation or emojis collide.
- `minhash_signatures` + `lsh_bands`: MinHash over character 5-grams of the normalised text
  (64 permutations, 16 bands × 4 rows) for near-duplicates ("RT …", an added "+1").
- `find_duplicates`: first occurrence wins; a post is a duplicate of an earlier post (this
  batch or the `history` of already-seen posts) with the same exact hash, or sharing an LSH
  band and an estimated Jaccard ≥ `NEAR_DUP_JACCARD`.
- `detect_languages`: lingua (offline, models in the wheel), restricted to a few languages;
  the connector's declared `lang` is not trusted.
- `spam_scores`: rule hits + a small character n-gram logistic model (trained on
  data/spam_train.tsv the first time it is used in a process).
- `brands_in`: which known brand a post mentions (ours or a competitor).
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from sentiment.text import URL_RE, cues, dedup_key

NUM_PERM = 64
BANDS = 16
ROWS = NUM_PERM // BANDS
NEAR_DUP_JACCARD = 0.8
_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(20251116)
_A = _rng.integers(1, _PRIME, NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, NUM_PERM, dtype=np.uint64)
_MAX = np.uint64((1 << 32) - 1)


def exact_hashes(texts: list[str]) -> list[str]:
    return [hashlib.sha1(dedup_key(t).encode()).hexdigest() for t in texts]


def _shingles(text: str, k: int = 5) -> np.ndarray:
    key = dedup_key(text)
    grams = {key} if len(key) <= k else {key[i : i + k] for i in range(len(key) - k + 1)}
    return np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64)


def minhash_signatures(texts: list[str]) -> np.ndarray:
    """(n, NUM_PERM) uint32 MinHash signatures of character 5-grams."""
    out = np.empty((len(texts), NUM_PERM), dtype=np.uint64)
    for i, text in enumerate(texts):
        hashed = _shingles(text)
        # (a * x + b) mod p on 61-bit values, truncated to 32 bits
        perm = (np.outer(hashed, _A) + _B) % np.uint64(_PRIME) & _MAX
        out[i] = perm.min(axis=0)
    return out.astype(np.uint32)


def lsh_bands(signatures: np.ndarray) -> np.ndarray:
    """(n, BANDS) int64 band keys: posts sharing any band key are near-duplicate candidates."""
    n = signatures.shape[0]
    bands = signatures.reshape(n, BANDS, ROWS).astype(np.uint64)
    mixed = np.zeros((n, BANDS), dtype=np.uint64)
    for r in range(ROWS):
        mixed = mixed * np.uint64(1_000_003) ^ bands[:, :, r]
    keys = (mixed ^ (np.arange(BANDS, dtype=np.uint64) << np.uint64(56))).astype(np.int64)
    return keys


@dataclass(frozen=True)
class SeenPosts:
    """Posts already in silver (recent window): their ids, exact hashes and MinHash rows."""

    post_ids: list[str]
    hashes: list[str]
    signatures: np.ndarray  # (m, NUM_PERM) uint32

    @staticmethod
    def empty() -> SeenPosts:
        return SeenPosts([], [], np.zeros((0, NUM_PERM), dtype=np.uint32))


def find_duplicates(
    post_ids: list[str],
    hashes: list[str],
    signatures: np.ndarray,
    history: SeenPosts | None = None,
) -> tuple[list[str | None], list[str | None]]:
    """For each post: (duplicate_of post_id or None, kind 'exact' | 'near' | None)."""
    history = history or SeenPosts.empty()
    all_ids = history.post_ids + post_ids
    all_hashes = history.hashes + hashes
    all_sigs = np.vstack([history.signatures, signatures]) if len(history.post_ids) else signatures
    offset = len(history.post_ids)
    first_by_hash: dict[str, int] = {}
    band_index: dict[int, list[int]] = {}
    bands = lsh_bands(all_sigs) if len(all_ids) else np.zeros((0, BANDS), dtype=np.int64)
    duplicate_of: list[str | None] = []
    kind: list[str | None] = []
    for j in range(len(all_ids)):
        found: tuple[int, str] | None = None
        if all_hashes[j] in first_by_hash:
            found = (first_by_hash[all_hashes[j]], "exact")
        else:
            candidates = {c for b in bands[j].tolist() for c in band_index.get(b, ())}
            best, best_j = 0.0, -1
            for c in candidates:
                jaccard = float(np.mean(all_sigs[c] == all_sigs[j]))
                if jaccard > best:
                    best, best_j = jaccard, c
            if best >= NEAR_DUP_JACCARD:
                found = (best_j, "near")
        if found is None:
            first_by_hash.setdefault(all_hashes[j], j)
            for b in bands[j].tolist():
                band_index.setdefault(b, []).append(j)
        if j >= offset:
            duplicate_of.append(None if found is None else all_ids[found[0]])
            kind.append(None if found is None else found[1])
    return duplicate_of, kind


# ---- language identification -----------------------------------------------------------------
_lock = threading.Lock()


@cache
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    languages = [
        Language.FRENCH,
        Language.ENGLISH,
        Language.SPANISH,
        Language.GERMAN,
        Language.ITALIAN,
    ]
    return (
        LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()
    )


def detect_languages(texts: list[str], ignore: tuple[str, ...] = ()) -> list[str]:
    """ISO 639-1 code per text ('und' when lingua cannot tell). URLs, mentions, hashtags, "RT"
    and the `ignore` words (brand names: "Nordline" reads as German) are removed first. When
    lingua's best guess is neither French nor English but one of them is close (confidence ≥
    0.3), that one wins: short product posts are mostly fr/en here."""
    if not texts:
        return []
    names = (
        re.compile(r"\b(?:" + "|".join(map(re.escape, ignore)) + r")\b", re.I) if ignore else None
    )
    stripped = []
    for text in texts:
        text = URL_RE.sub(" ", re.sub(r"@\w+|#|\bRT\b", " ", text))
        stripped.append(names.sub(" ", text) if names else text)
    with _lock:
        detector = _detector()
    found = detector.detect_languages_in_parallel_of(stripped)
    codes = ["und" if lang is None else lang.iso_code_639_1.name.lower() for lang in found]
    for i, code in enumerate(codes):
        if code not in ("fr", "en"):
            values = detector.compute_language_confidence_values(stripped[i])
            best = next((v for v in values if v.language.iso_code_639_1.name in ("FR", "EN")), None)
            if best is not None and best.value >= 0.3:
                codes[i] = best.language.iso_code_639_1.name.lower()
    return codes


# ---- spam ------------------------------------------------------------------------------------
SPAM_PATTERNS = re.compile(
    r"gagne[zr]?|gratuit|cliquez|clique ici|concours|abonn[ée]s pas chers|free (?:gift|followers|iphone)"
    r"|click here|claim|giveaway|promo code|code promo|bit\.ly|casino|crypto|telegram|dm (?:me|moi)"
    r"|follow for follow|earn money|make \$|-\d{2}%|\d{2}% off|hot singles|rencontres",
    re.IGNORECASE,
)


def spam_rule_hits(text: str) -> int:
    c = cues(text)
    return (
        len(SPAM_PATTERNS.findall(text))
        + (c.urls >= 2)
        + (c.caps_ratio > 0.5)
        + (c.exclamations >= 3 and c.urls >= 1)
    )


@cache
def _spam_model() -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sentiment import datasets

    spam = datasets._read("spam_train.tsv")
    ham = datasets.training_set()
    texts = [r["text"] for r in spam] + ham.texts[-400:]  # project-written posts as ham
    labels = [r["label"] == "spam" for r in spam] + [False] * 400
    model = make_pipeline(
        HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=1 << 15, alternate_sign=False
        ),
        LogisticRegression(C=4.0, solver="liblinear", class_weight="balanced"),
    )
    model.fit([URL_RE.sub(" url ", t.lower()) for t in texts], labels)
    return model


def spam_scores(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(model probability, rule hits) per text."""
    if not texts:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    proba = _spam_model().predict_proba([URL_RE.sub(" url ", t.lower()) for t in texts])[:, 1]
    rules = np.asarray([spam_rule_hits(t) for t in texts], dtype=np.int64)
    return proba, rules


def is_spam(proba: np.ndarray, rule_hits: np.ndarray) -> np.ndarray:
    """Spam when two rules fire, or one rule and the model agrees, or the model is sure."""
    return (rule_hits >= 2) | ((rule_hits >= 1) & (proba >= 0.5)) | (proba >= 0.9)


# ---- brands ----------------------------------------------------------------------------------
def brands_in(texts: list[str], brands: tuple[str, ...]) -> list[str]:
    """The first known brand mentioned (word match, case-insensitive), else 'unknown'."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(b) for b in brands) + r")\b", re.IGNORECASE)
    canonical = {b.lower(): b for b in brands}
    out = []
    for text in texts:
        match = pattern.search(text)
        out.append(canonical[match.group(1).lower()] if match else "unknown")
    return out
