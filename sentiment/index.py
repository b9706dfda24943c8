"""Engagement-weighted sentiment index and the seed's crisis rule.

Index per hour × source × aspect × brand: `score = (pos − neg) / total` on counts and
`weighted_score = (Σw·pos − Σw·neg) / Σw` with the post's engagement weight w (a post with
several aspects counts once in each). Seed example: 150 posts, 60 neg, 30 neu, 60 pos → 0.0.

Crisis rule (seed), per hour × brand × aspect over all sources: weighted score < −0.25 AND
neg > mean_7d_neg + 2σ, where mean and σ are over the 7 × 24 hourly negative counts before
that hour (hours without posts count as 0). All DuckDB SQL over Arrow, no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from sentiment.tables import SENTIMENT_INDEX_SCHEMA

SCORE_THRESHOLD = -0.25
SIGMAS = 2.0
MIN_NEG = 5  # project addition: one or two negative posts are never a crisis
HISTORY_HOURS = 7 * 24


def sentiment_score(pos: float, neg: float, total: float) -> float:
    """(pos − neg) / total; 0 for an empty window."""
    return (pos - neg) / total if total else 0.0


def hourly_index(posts: pa.Table) -> pa.Table:
    """social_sentiment rows → sentiment_index rows (hour × source × aspect × brand)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("posts", posts)
        table = con.sql(
            """
            WITH exploded AS (
                SELECT date_trunc('hour', ts) AS hour, source, unnest(aspects) AS aspect, brand,
                       label, engagement_weight AS w
                FROM posts
            )
            SELECT hour, source, aspect, brand, count(*) AS posts,
                   count(*) FILTER (label = 'pos') AS pos, count(*) FILTER (label = 'neu') AS neu,
                   count(*) FILTER (label = 'neg') AS neg,
                   sum(w) AS weight_total,
                   coalesce(sum(w) FILTER (label = 'pos'), 0) AS weight_pos,
                   coalesce(sum(w) FILTER (label = 'neg'), 0) AS weight_neg,
                   (pos - neg) / count(*) AS score,
                   (weight_pos - weight_neg) / sum(w) AS weighted_score
            FROM exploded GROUP BY ALL ORDER BY hour, source, aspect, brand
            """
        ).to_arrow_table()
    finally:
        con.close()
    return table.cast(SENTIMENT_INDEX_SCHEMA)


@dataclass(frozen=True)
class Spike:
    brand: str
    aspect: str
    hour: object  # datetime (UTC)
    posts: int
    neg: int
    score: float
    mean_7d_neg: float
    std_7d_neg: float

    @property
    def neg_threshold(self) -> float:
        return self.mean_7d_neg + SIGMAS * self.std_7d_neg


def detect_spikes(index: pa.Table, hours: list[object] | None = None) -> list[Spike]:
    """Hours (optionally only `hours`) where a brand × aspect breaks the seed's rule."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("idx", index)
        rows = con.sql(
            f"""
            WITH per_hour AS (
                SELECT hour, brand, aspect, sum(posts) AS posts, sum(neg) AS neg,
                       (sum(weight_pos) - sum(weight_neg)) / sum(weight_total) AS score
                FROM idx GROUP BY ALL
            ), keys AS (SELECT DISTINCT brand, aspect FROM per_hour),
            bounds AS (SELECT min(hour) - INTERVAL {HISTORY_HOURS} HOUR AS lo, max(hour) AS hi
                       FROM per_hour),
            grid AS (
                SELECT k.brand, k.aspect, g.hour
                FROM keys k, bounds b,
                     LATERAL (SELECT unnest(generate_series(b.lo, b.hi, INTERVAL 1 HOUR)) AS hour) g
            ), filled AS (
                SELECT g.brand, g.aspect, g.hour, coalesce(p.posts, 0) AS posts,
                       coalesce(p.neg, 0) AS neg, p.score
                FROM grid g LEFT JOIN per_hour p USING (brand, aspect, hour)
            ), stats AS (
                SELECT *, avg(neg) OVER w AS mean_7d_neg, coalesce(stddev_pop(neg) OVER w, 0) AS std_7d_neg
                FROM filled
                WINDOW w AS (PARTITION BY brand, aspect ORDER BY hour
                             ROWS BETWEEN {HISTORY_HOURS} PRECEDING AND 1 PRECEDING)
            )
            SELECT brand, aspect, hour, posts, neg, score, coalesce(mean_7d_neg, 0), std_7d_neg
            FROM stats
            WHERE score < {SCORE_THRESHOLD} AND neg >= {MIN_NEG}
              AND neg > coalesce(mean_7d_neg, 0) + {SIGMAS} * std_7d_neg
            ORDER BY hour, brand, aspect
            """
        ).fetchall()
    finally:
        con.close()
    spikes = [
        Spike(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5]), float(r[6]), float(r[7]))
        for r in rows
    ]
    if hours is not None:
        wanted = set(hours)
        spikes = [s for s in spikes if s.hour in wanted]
    return spikes
