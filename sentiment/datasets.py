"""The shipped labelled data (origin and licence: sentiment/data/README.md)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

LABELS = ("neg", "neu", "pos")


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[str]
    langs: list[str]
    aspects: list[str]  # one gold aspect per text ("" when not annotated)

    def __len__(self) -> int:
        return len(self.texts)

    def __add__(self, other: Labelled) -> Labelled:
        return Labelled(
            self.texts + other.texts,
            self.labels + other.labels,
            self.langs + other.langs,
            self.aspects + other.aspects,
        )


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("sentiment").joinpath("data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def load(name: str, lang: str) -> Labelled:
    rows = _read(name)
    return Labelled(
        [r["text"] for r in rows],
        [r["label"] for r in rows],
        [lang] * len(rows),
        [r.get("aspects", "") or "" for r in rows],
    )


def evaluation_set(lang: str) -> Labelled:
    """The held-out set (50 per class), written independently of the generator's templates."""
    return load(f"eval_{lang}.tsv", lang)


def training_set() -> Labelled:
    """English: VADER's human-rated tweets and Amazon snippets (MIT) + project-written posts;
    French: project-written posts. Never the evaluation sentences."""
    return (
        load("vader_tweets.tsv", "en")
        + load("vader_amazon.tsv", "en")
        + load("train_en.tsv", "en")
        + load("train_fr.tsv", "fr")
    )
