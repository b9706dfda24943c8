"""Delta tables and Kafka topics of the sentiment use case (schemas are the contract)."""

from __future__ import annotations

import pyarrow as pa

from lake.tables import LINEAGE_FIELDS, UTC_TS
from lakehouse.config import Settings

# the `alerts` table every alert kind shares (monitoring/delivery.py)
from monitoring.delivery import ALERTS_SCHEMA, alerts_uri  # noqa: F401

CLEAN_TOPIC = "social_clean"
SENTIMENT_TOPIC = "social_sentiment"
OUTPUT_TOPICS = (CLEAN_TOPIC, SENTIMENT_TOPIC)

# silver_social: every post once (MERGE on post_id), cleaned and flagged; partitioned by day.
SILVER_SOCIAL_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("lang_declared", pa.string()),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("brand", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("clean_text", pa.string(), nullable=False),
        pa.field("likes", pa.int64(), nullable=False),
        pa.field("replies", pa.int64(), nullable=False),
        pa.field("shares", pa.int64(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
        pa.field("minhash", pa.binary(), nullable=False),
        pa.field("duplicate_of", pa.string()),
        pa.field("duplicate_kind", pa.string()),
        pa.field("spam_score", pa.float64(), nullable=False),
        pa.field("spam_rules", pa.int32(), nullable=False),
        pa.field("is_spam", pa.bool_(), nullable=False),
        # social_raw v2: 'customer' (also for v1 events, which carry no author) or 'brand' (a
        # brand's own account), and the post a reply answers
        pa.field("author_type", pa.string()),
        pa.field("in_reply_to_post_id", pa.string()),
        *LINEAGE_FIELDS,
    ]
)

# social_sentiment: one row per classified post (not spam, not a duplicate, fr/en).
SOCIAL_SENTIMENT_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("brand", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("aspects", pa.list_(pa.string()), nullable=False),
        pa.field("keyphrases", pa.list_(pa.string()), nullable=False),
        pa.field("clean_text", pa.string(), nullable=False),
        pa.field("likes", pa.int64(), nullable=False),
        pa.field("replies", pa.int64(), nullable=False),
        pa.field("shares", pa.int64(), nullable=False),
        pa.field("engagement_weight", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("classified_at", UTC_TS, nullable=False),
    ]
)

# sentiment_index: hour × source × aspect × brand (a post counts once per aspect).
SENTIMENT_INDEX_SCHEMA = pa.schema(
    [
        pa.field("hour", UTC_TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("aspect", pa.string(), nullable=False),
        pa.field("brand", pa.string(), nullable=False),
        pa.field("posts", pa.int64(), nullable=False),
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("neu", pa.int64(), nullable=False),
        pa.field("neg", pa.int64(), nullable=False),
        pa.field("weight_total", pa.float64(), nullable=False),
        pa.field("weight_pos", pa.float64(), nullable=False),
        pa.field("weight_neg", pa.float64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("weighted_score", pa.float64(), nullable=False),
    ]
)


def silver_social_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "social")


def social_sentiment_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "social_sentiment")


def sentiment_index_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "sentiment_index")


def outbox_uri(settings: Settings) -> str:
    """Publication log: which table version each output topic has been sent up to."""
    return settings.table_uri("_outbox", "")
