"""Dashboard artefacts that are not SQL: the negative wordcloud PNG (from gold)."""

from __future__ import annotations

import os
from pathlib import Path

from lake.gold import gold_db_path, read_gold
from lakehouse.config import Settings


def wordcloud_path(settings: Settings) -> Path:
    return gold_db_path(settings).parent / "sentiment_negative_wordcloud.png"


def render_negative_wordcloud(settings: Settings, top: int = 150) -> tuple[Path, int]:
    """Render gold `sentiment_negative_words` (all brands, last 7 days) as a PNG, replaced
    atomically. Returns the path and the number of distinct words drawn."""
    frequencies = read_gold(
        settings,
        "SELECT word, sum(occurrences) AS n FROM sentiment_negative_words "
        "GROUP BY word ORDER BY n DESC, word LIMIT ?",
        [top],
    ).to_pylist()
    return render_wordcloud({r["word"]: int(r["n"]) for r in frequencies}, wordcloud_path(settings))


def render_wordcloud(frequencies: dict[str, int], path: Path) -> tuple[Path, int]:
    from wordcloud import WordCloud

    path.parent.mkdir(parents=True, exist_ok=True)
    cloud = WordCloud(
        width=800, height=400, background_color="white", colormap="Reds", random_state=7
    )
    image = cloud.generate_from_frequencies(frequencies or {"(no negative posts)": 1}).to_image()
    tmp = path.with_suffix(".tmp.png")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path, len(frequencies)
