"""Lexicon/rule baseline: VADER for English, the project's French lexicon for French.

Both return a compound score in [-1, 1] (VADER's normalisation x / sqrt(x² + 15)); the label
rule is VADER's: ≥ 0.05 positive, ≤ -0.05 negative, else neutral. The French scorer flips
(and damps) a term's score when a negation precedes it within three tokens, boosts it after an
intensifier, and adds the emoji polarities of `sentiment.text.EMOJIS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from sentiment.text import EMOJIS, NEGATIONS, SARCASM, clean_tokens, strip_accents

POS_THRESHOLD = 0.05
INTENSIFIERS = frozenset({"tres", "trop", "vraiment", "super", "hyper", "ultra", "tellement"})
INTENSIFIERS_EN = frozenset({"very", "really", "so", "extremely", "super", "totally"})
_EMOJI_SCORE = {
    token: float(pol if pol != SARCASM else -1) * 1.5 for token, _, pol in EMOJIS.values()
}


@dataclass(frozen=True)
class FrenchLexicon:
    exact: dict[str, float]
    prefixes: tuple[tuple[str, float], ...]  # longest first
    # the prefixes by text, and their lengths longest first: a word is looked up once per
    # length instead of tried against every prefix (that scan was 60 % of a cold batch)
    _by_prefix: dict[str, float] = field(init=False, repr=False, compare=False)
    _lengths: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_prefix: dict[str, float] = {}
        for prefix, score in self.prefixes:
            by_prefix.setdefault(prefix, score)  # the first listed wins, as in a scan
        object.__setattr__(self, "_by_prefix", by_prefix)
        lengths = sorted({len(p) for p in by_prefix}, reverse=True)
        object.__setattr__(self, "_lengths", tuple(lengths))

    def score_of(self, token: str) -> float | None:
        """Exact entry, else the longest prefix entry the word starts with."""
        bare = strip_accents(token)
        if bare in self.exact:
            return self.exact[bare]
        for length in self._lengths:
            if length <= len(bare):
                score = self._by_prefix.get(bare[:length])
                if score is not None:
                    return score
        return None


@cache
def french_lexicon() -> FrenchLexicon:
    text = resources.files("sentiment").joinpath("data").joinpath("fr_lexicon.tsv").read_text()
    exact: dict[str, float] = {}
    prefixes: list[tuple[str, float]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        term, score = line.split("\t")
        term = strip_accents(term.strip().lower())
        if term.endswith("*"):
            prefixes.append((term[:-1], float(score)))
        else:
            exact[term] = float(score)
    prefixes.sort(key=lambda p: -len(p[0]))
    return FrenchLexicon(exact, tuple(prefixes))


def _normalise(total: float, alpha: float = 15.0) -> float:
    return total / math.sqrt(total * total + alpha) if total else 0.0


def french_compound(text: str) -> float:
    """Compound polarity of a French post in [-1, 1]."""
    lexicon = french_lexicon()
    tokens = clean_tokens(text, "")  # keep every word: "ne ... pas" needs its position
    total = 0.0
    for i, token in enumerate(tokens):
        if token in _EMOJI_SCORE:
            total += _EMOJI_SCORE[token]
            continue
        score = lexicon.score_of(token)
        if score is None:
            continue
        window = tokens[max(0, i - 3) : i]
        if any(w in NEGATIONS for w in window) or (i + 1 < len(tokens) and tokens[i + 1] == "pas"):
            score *= -0.6
        if i and strip_accents(tokens[i - 1]) in INTENSIFIERS:
            score *= 1.3
        total += score
    total += 0.3 * min(text.count("!"), 3) * (1 if total > 0 else -1 if total < 0 else 0)
    return _normalise(total)


@cache
def _vader():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def english_compound(text: str) -> float:
    """VADER's compound score (it knows emojis, caps, "!!!", "but" and negations itself)."""
    return float(_vader().polarity_scores(text)["compound"])


def compound(text: str, lang: str) -> float:
    return french_compound(text) if lang == "fr" else english_compound(text)


def label_of(score: float) -> str:
    if score >= POS_THRESHOLD:
        return "pos"
    if score <= -POS_THRESHOLD:
        return "neg"
    return "neu"


def classify(texts: list[str], langs: list[str]) -> tuple[list[str], list[float]]:
    """The lexicon baseline: labels and |compound| as a crude confidence."""
    scores = [compound(t, lang) for t, lang in zip(texts, langs, strict=True)]
    return [label_of(s) for s in scores], [abs(s) for s in scores]
