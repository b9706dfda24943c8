"""raw_social_raw → silver_social → social_sentiment (Delta) and → social_clean / social_sentiment
(Kafka).

Same pattern as lake/silver.py: each target table records, as a Delta transaction identifier
in its own commits, the source table version it has processed, so a run reads only the files
the source gained since, and the MERGE (on post_id) plus that marker land in one atomic
commit. Re-running is harmless. Publication to Kafka goes through `sentiment.outbox`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from governance import pii
from lake.silver import rows_added_since
from lake.tables import insert_new_rows, open_table, raw_uri
from lakehouse.config import Settings
from sentiment import preprocess
from sentiment.tables import (
    SILVER_SOCIAL_SCHEMA,
    SOCIAL_SENTIMENT_SCHEMA,
    silver_social_uri,
    social_sentiment_uri,
)
from sentiment.text import clean_text

log = logging.getLogger(__name__)
SILVER_MARKER = "silver<-raw_social_raw"
SENTIMENT_MARKER = "sentiment<-silver_social"
DEDUP_HISTORY_HOURS = 48
CLASSIFIED_LANGS = ("fr", "en")


@dataclass
class StepResult:
    table: str
    source_version_from: int | None
    source_version_to: int | None
    rows_read: int = 0
    rows_written: int = 0
    table_version: int | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return (
            f"{self.table}: {self.rows_written} rows from {self.rows_read} source rows "
            f"in {self.seconds:.1f}s" + (f" ({extra})" if extra else "")
        )


def parse_raw(raw_batch: pa.Table) -> pa.Table:
    """Typed posts from raw rows (JSON already validated against social_raw v1 or v2), first
    occurrence per post_id kept; a v1 event's author is a customer."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw_batch", raw_batch)
        posts = con.sql(
            """
            WITH parsed AS (
                SELECT from_json(value, '{"post_id":"VARCHAR","ts":"VARCHAR","source":"VARCHAR",
                    "lang":"VARCHAR","text":"VARCHAR","engagement":{"likes":"BIGINT",
                    "replies":"BIGINT","shares":"BIGINT"},"author_type":"VARCHAR",
                    "in_reply_to_post_id":"VARCHAR"}') AS j,
                    epoch::INTEGER AS source_epoch, "partition"::INTEGER AS source_partition,
                    "offset" AS source_offset, ingested_at
                FROM raw_batch
            )
            SELECT j.post_id AS post_id, j.ts::TIMESTAMPTZ AS ts,
                   (j.ts::TIMESTAMPTZ)::DATE AS event_date, j.source AS source,
                   j.lang AS lang_declared, j.text AS text,
                   coalesce(j.engagement.likes, 0) AS likes,
                   coalesce(j.engagement.replies, 0) AS replies,
                   coalesce(j.engagement.shares, 0) AS shares,
                   coalesce(j.author_type, 'customer') AS author_type,
                   j.in_reply_to_post_id AS in_reply_to_post_id,
                   source_epoch, source_partition, source_offset, ingested_at
            FROM parsed
            QUALIFY row_number() OVER (PARTITION BY post_id
                                       ORDER BY source_epoch, source_partition, source_offset) = 1
            ORDER BY ts, post_id
            """
        ).to_arrow_table()
    finally:
        con.close()
    return redact_free_text(posts)


def redact_free_text(posts: pa.Table) -> pa.Table:
    """Free-text fields the contract classifies `redact_contacts` (governance.pii) with their
    e-mail addresses and phone numbers replaced, before anything derives from them."""
    for cls in pii.personal_fields("social_raw"):
        if cls.treatment == "redact_contacts" and cls.silver_name in posts.column_names:
            index = posts.column_names.index(cls.silver_name)
            posts = posts.set_column(index, cls.silver_name, pii.redact_contacts(posts[index]))
    return posts


def _history(target: DeltaTable | None, since: datetime) -> preprocess.SeenPosts:
    if target is None:
        return preprocess.SeenPosts.empty()
    dataset = target.to_pyarrow_dataset()
    recent = dataset.to_table(
        columns=["post_id", "text_hash", "minhash", "duplicate_of"],
        filter=(pc.field("ts") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))),
    )
    recent = recent.filter(pc.is_null(recent["duplicate_of"]))  # originals only
    if recent.num_rows == 0:
        return preprocess.SeenPosts.empty()
    sigs = np.frombuffer(b"".join(recent["minhash"].to_pylist()), dtype=np.uint32)
    return preprocess.SeenPosts(
        [str(x) for x in recent["post_id"].to_pylist()],
        [str(x) for x in recent["text_hash"].to_pylist()],
        sigs.reshape(recent.num_rows, preprocess.NUM_PERM),
    )


def preprocess_posts(
    posts: pa.Table, history: preprocess.SeenPosts, brands: tuple[str, ...]
) -> pa.Table:
    """Language, brand (the first of `brands` a post names), cleaning, duplicates and spam for
    parsed posts (the silver row)."""
    texts = [str(t) for t in posts["text"].to_pylist()]
    ids = [str(p) for p in posts["post_id"].to_pylist()]
    langs = preprocess.detect_languages(texts, brands)
    hashes = preprocess.exact_hashes(texts)
    signatures = preprocess.minhash_signatures(texts)
    duplicate_of, kind = preprocess.find_duplicates(ids, hashes, signatures, history)
    spam_proba, spam_rules = preprocess.spam_scores(texts)
    columns = {
        "lang": langs,
        "brand": preprocess.brands_in(texts, brands),
        "clean_text": [clean_text(t, lang) for t, lang in zip(texts, langs, strict=True)],
        "text_hash": hashes,
        "minhash": [row.tobytes() for row in signatures],
        "duplicate_of": duplicate_of,
        "duplicate_kind": kind,
        "spam_score": spam_proba.astype(np.float64),
        "spam_rules": spam_rules.astype(np.int32),
        "is_spam": preprocess.is_spam(spam_proba, spam_rules),
    }
    table = posts
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values, SILVER_SOCIAL_SCHEMA.field(name).type))
    return table.select(SILVER_SOCIAL_SCHEMA.names).cast(SILVER_SOCIAL_SCHEMA)


def build_silver_social(settings: Settings) -> StepResult:
    """raw_social_raw rows added since the last run → silver_social (one commit)."""
    started = time.monotonic()
    uri = silver_social_uri(settings)
    target = open_table(uri, settings)
    processed = target.transaction_version(SILVER_MARKER) if target else None
    raw, raw_version = rows_added_since(settings, raw_uri(settings, "social_raw"), processed)
    result = StepResult("silver_social", processed, raw_version, rows_read=raw.num_rows)
    if raw_version is None or (processed is not None and raw_version <= processed):
        result.seconds = time.monotonic() - started
        return result
    posts = parse_raw(raw) if raw.num_rows else SILVER_SOCIAL_SCHEMA.empty_table()
    if posts.num_rows:
        oldest = posts["ts"].to_pylist()[0] - timedelta(hours=DEDUP_HISTORY_HOURS)
        rows = preprocess_posts(posts, _history(target, oldest), settings.sentiment_brands)
    else:
        rows = SILVER_SOCIAL_SCHEMA.empty_table()
    commit = CommitProperties(app_transactions=[Transaction(SILVER_MARKER, raw_version)])
    result.rows_written = insert_new_rows(
        settings, uri, rows, "post_id", "event_date", commit, target
    )
    result.counts = {
        "duplicates": int(pc.sum(pc.is_valid(rows["duplicate_of"])).as_py() or 0),
        "spam": int(pc.sum(rows["is_spam"]).as_py() or 0),
        "not_fr_en": int(
            pc.sum(pc.invert(pc.is_in(rows["lang"], pa.array(CLASSIFIED_LANGS)))).as_py() or 0
        ),
    }
    result.table_version = open_table(uri, settings).version()  # type: ignore[union-attr]
    result.seconds = time.monotonic() - started
    return result


def engagement_weight(likes: np.ndarray, replies: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """1 + ln(1 + likes + 2·replies + 3·shares): reach counts, one viral post does not rule."""
    return 1.0 + np.log1p(likes + 2.0 * replies + 3.0 * shares)


def classify_posts(settings: Settings, posts: pa.Table, encoder: str) -> pa.Table:
    """Label, confidence, aspects for silver rows to classify (social_sentiment rows)."""
    from sentiment import aspects
    from sentiment.classifier import ensure_head

    texts = [str(t) for t in posts["text"].to_pylist()]
    langs = [str(x) for x in posts["lang"].to_pylist()]
    head = ensure_head(settings.models_dir, encoder)  # type: ignore[arg-type]
    labels, confidence, vectors = head.predict_with_embeddings(texts, langs, settings.models_dir)
    reuse = vectors if encoder == "static" else None  # aspects work in the static space
    found = aspects.extract(texts, langs, settings.models_dir, doc_vectors=reuse)
    weights = engagement_weight(
        posts["likes"].to_numpy(zero_copy_only=False).astype(np.float64),
        posts["replies"].to_numpy(zero_copy_only=False).astype(np.float64),
        posts["shares"].to_numpy(zero_copy_only=False).astype(np.float64),
    )
    now = datetime.now(UTC)
    table = pa.table(
        {
            "post_id": posts["post_id"],
            "ts": posts["ts"],
            "event_date": posts["event_date"],
            "source": posts["source"],
            "lang": posts["lang"],
            "brand": posts["brand"],
            "label": labels,
            "confidence": np.asarray(confidence, dtype=np.float64),
            "aspects": [r.aspects for r in found],
            "keyphrases": [r.keyphrases for r in found],
            "clean_text": posts["clean_text"],
            "likes": posts["likes"],
            "replies": posts["replies"],
            "shares": posts["shares"],
            "engagement_weight": weights,
            "model": [f"minilm-{encoder}+head@{head.trained_at}"] * posts.num_rows,
            "classified_at": pa.array([now] * posts.num_rows, pa.timestamp("us", tz="UTC")),
        }
    )
    return table.cast(SOCIAL_SENTIMENT_SCHEMA)


def build_social_sentiment(settings: Settings, encoder: str = "static") -> StepResult:
    """silver_social rows added since the last run → social_sentiment (one commit). Spam,
    duplicates, languages other than fr/en and brands' own posts (customer-care replies: the
    sentiment is the customers') are not classified (counted)."""
    started = time.monotonic()
    uri = social_sentiment_uri(settings)
    target = open_table(uri, settings)
    processed = target.transaction_version(SENTIMENT_MARKER) if target else None
    silver, version = rows_added_since(settings, silver_social_uri(settings), processed)
    result = StepResult("social_sentiment", processed, version, rows_read=silver.num_rows)
    if version is None or (processed is not None and version <= processed):
        result.seconds = time.monotonic() - started
        return result
    keep = (
        pc.and_(
            pc.and_(
                pc.and_(pc.invert(silver["is_spam"]), pc.is_null(silver["duplicate_of"])),
                pc.is_in(silver["lang"], pa.array(CLASSIFIED_LANGS)),
            ),
            # a table written before social_raw v2 has no author_type column: all customers
            pc.not_equal(pc.fill_null(silver["author_type"], "customer"), "brand")
            if "author_type" in silver.column_names
            else pa.scalar(True),
        )
        if silver.num_rows
        else None
    )
    posts = silver.filter(keep) if keep is not None else silver
    rows = (
        classify_posts(settings, posts, encoder)
        if posts.num_rows
        else SOCIAL_SENTIMENT_SCHEMA.empty_table()
    )
    commit = CommitProperties(app_transactions=[Transaction(SENTIMENT_MARKER, version)])
    result.rows_written = insert_new_rows(
        settings, uri, rows, "post_id", "event_date", commit, target
    )
    result.counts = {"skipped": silver.num_rows - posts.num_rows}
    for label in ("pos", "neu", "neg"):
        result.counts[label] = (
            int(pc.sum(pc.equal(rows["label"], label)).as_py() or 0) if rows.num_rows else 0
        )
    result.table_version = open_table(uri, settings).version()  # type: ignore[union-attr]
    result.seconds = time.monotonic() - started
    return result


def clean_message(row: dict[str, object]) -> dict[str, object]:
    """social_clean value (schema ingestion/schemas/social_clean.v1.json)."""
    return {
        "post_id": row["post_id"],
        "ts": _iso(row["ts"]),
        "source": row["source"],
        "lang": row["lang"],
        "brand": row["brand"],
        "clean_text": row["clean_text"],
        "engagement": {"likes": row["likes"], "replies": row["replies"], "shares": row["shares"]},
        "duplicate_of": row["duplicate_of"],
        "is_spam": row["is_spam"],
    }


def sentiment_message(row: dict[str, object]) -> dict[str, object]:
    """social_sentiment value (schema ingestion/schemas/social_sentiment.v1.json)."""
    return {
        "post_id": row["post_id"],
        "ts": _iso(row["ts"]),
        "source": row["source"],
        "lang": row["lang"],
        "brand": row["brand"],
        "label": row["label"],
        "confidence": round(float(row["confidence"]), 4),  # type: ignore[arg-type]
        "aspects": row["aspects"],
        "engagement_weight": round(float(row["engagement_weight"]), 4),  # type: ignore[arg-type]
        "model": row["model"],
    }


def _iso(moment: object) -> str:
    assert isinstance(moment, datetime)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


INDEX_MARKER = "index<-social_sentiment"


def build_sentiment_index(settings: Settings) -> tuple[StepResult, list[dict[str, object]]]:
    """Recompute the index hours touched by new social_sentiment rows (MERGE on the grain),
    then apply the crisis rule to those hours and raise alerts (cooldown, webhook, table)."""
    from sentiment import alerts, index
    from sentiment.tables import SENTIMENT_INDEX_SCHEMA, sentiment_index_uri

    started = time.monotonic()
    uri = sentiment_index_uri(settings)
    target = open_table(uri, settings)
    processed = target.transaction_version(INDEX_MARKER) if target else None
    source_uri = social_sentiment_uri(settings)
    new, version = rows_added_since(settings, source_uri, processed)
    result = StepResult("sentiment_index", processed, version, rows_read=new.num_rows)
    if version is None or (processed is not None and version <= processed) or new.num_rows == 0:
        result.seconds = time.monotonic() - started
        return result, []
    hour_type = pa.timestamp("us", tz="UTC")
    hours = pc.unique(pc.floor_temporal(new["ts"], unit="hour"))
    lo, hi = pc.min(hours), pc.max(hours)
    source = open_table(source_uri, settings)
    assert source is not None
    touched = source.to_pyarrow_dataset().to_table(
        filter=(pc.field("ts") >= lo.cast(hour_type))
        & (pc.field("ts") < pa.scalar(hi.as_py() + timedelta(hours=1), hour_type))
    )
    touched = touched.filter(pc.is_in(pc.floor_temporal(touched["ts"], unit="hour"), hours))
    rows = index.hourly_index(touched)
    commit = CommitProperties(app_transactions=[Transaction(INDEX_MARKER, version)])
    if target is None:
        write_deltalake(
            uri,
            rows,
            mode="append",
            storage_options=settings.storage_options or None,
            commit_properties=commit,
        )
    else:
        (
            target.merge(
                rows,
                predicate="t.hour = s.hour AND t.source = s.source AND t.aspect = s.aspect AND t.brand = s.brand",
                source_alias="s",
                target_alias="t",
                commit_properties=commit,
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    result.rows_written = rows.num_rows
    refreshed = open_table(uri, settings)
    assert refreshed is not None
    history_from = lo.as_py() - timedelta(hours=index.HISTORY_HOURS)
    window = (
        refreshed.to_pyarrow_dataset()
        .to_table(
            filter=(pc.field("hour") >= pa.scalar(history_from, hour_type))
            & (pc.field("hour") <= hi.cast(hour_type))
        )
        .cast(SENTIMENT_INDEX_SCHEMA)
    )
    spikes = index.detect_spikes(window, hours=hours.to_pylist())
    raised = alerts.raise_alerts(settings, spikes)
    result.counts = {"hours": len(hours), "spikes": len(spikes), "alerts": len(raised)}
    result.table_version = refreshed.version()
    result.seconds = time.monotonic() - started
    return result, raised
