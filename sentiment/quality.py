"""Contract checks of the sentiment tables (one DuckDB pass, counts of violating rows)."""

from __future__ import annotations

import duckdb

from lake.tables import open_table
from lakehouse.config import Settings
from sentiment.tables import social_sentiment_uri


def social_sentiment_violations(settings: Settings) -> dict[str, int]:
    """Rows breaking each rule of silver_social_sentiment (all zero when the table is absent)."""
    delta = open_table(social_sentiment_uri(settings), settings)
    table = None if delta is None else delta.to_pyarrow_table()
    rules = {
        "bad_label": "label NOT IN ('pos', 'neu', 'neg')",
        "bad_confidence": "NOT (confidence BETWEEN 0 AND 1)",
        "no_aspect": "len(aspects) = 0 OR NOT list_bool_and(list_transform(aspects, lambda a: a IN "
        "('product', 'price', 'delivery', 'customer_service', 'other')))",
        "bad_lang": "lang NOT IN ('fr', 'en')",
        "bad_weight": "engagement_weight < 1",
    }
    if table is None or table.num_rows == 0:
        return {**dict.fromkeys(rules, 0), "duplicate_post_id": 0}
    con = duckdb.connect()
    try:
        con.register("t", table)
        counts = ", ".join(f"count(*) FILTER ({rule}) AS {name}" for name, rule in rules.items())
        row = con.execute(f"SELECT {counts}, count(*) - count(DISTINCT post_id) FROM t").fetchone()
    finally:
        con.close()
    assert row is not None
    return {
        **dict(zip(rules, (int(v) for v in row[:-1]), strict=True)),
        "duplicate_post_id": int(row[-1]),
    }
