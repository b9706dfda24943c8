"""The French lexicon's prefix index scores every word as the longest-prefix scan did."""

from __future__ import annotations

from sentiment import datasets
from sentiment.lexicon import french_lexicon
from sentiment.text import clean_tokens, strip_accents


def _scan(token: str) -> float | None:
    lexicon = french_lexicon()
    bare = strip_accents(token)
    if bare in lexicon.exact:
        return lexicon.exact[bare]
    for prefix, score in lexicon.prefixes:  # longest first
        if bare.startswith(prefix):
            return score
    return None


def test_prefix_index_matches_the_scan_on_every_french_word() -> None:
    lexicon = french_lexicon()
    texts = datasets.load("train_fr.tsv", "fr").texts + datasets.evaluation_set("fr").texts
    words = {t for text in texts for t in clean_tokens(text, "")}
    words |= {p + "ment" for p, _ in lexicon.prefixes} | {p[:-1] for p, _ in lexicon.prefixes}
    scored = [w for w in words if _scan(w) is not None]
    assert len(words) > 1000 and len(scored) > 200
    assert all(lexicon.score_of(w) == _scan(w) for w in words)
