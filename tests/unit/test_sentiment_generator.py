"""The social_raw generator: Annex B rates and mix, the seed's event shape, truth kept apart."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import jsonschema
import numpy as np

from ingestion.contracts import contract
from sentiment.generator import BRANDS, SOURCES, Crisis, generate_social

START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def test_rates_mix_and_event_shape() -> None:
    stream = generate_social(START, START + timedelta(hours=24), seed=1)
    # Annex B's rate is the customers' posts (our care team's replies come on top)
    customers = np.array([e["author_type"] == "customer" for e in stream.events])
    seconds = stream.event_seconds()[customers]
    per_minute = np.bincount(((seconds - START.timestamp()) // 60).astype(int))
    assert 10 <= per_minute.mean() <= 50
    hourly = per_minute[: 24 * 60].reshape(24, 60).mean(axis=1)
    assert hourly.min() >= 8 and hourly.max() <= 55  # a daily wave between ~10 and ~50/min
    organic = [t for t in stream.truth if t["kind"] == "organic"]
    labels = Counter(t["label"] for t in organic)
    assert 0.17 <= labels["neg"] / len(organic) <= 0.23
    kinds = Counter(t["kind"] for t in stream.truth)
    assert kinds["exact_duplicate"] and kinds["near_duplicate"] and kinds["spam"]
    assert any(t.get("sarcasm") for t in organic)
    assert {t["lang"] for t in stream.truth} == {"fr", "en"}
    assert {e["source"] for e in stream.events} == set(SOURCES)
    assert {t["brand"] for t in stream.truth} == set(BRANDS)
    texts = " ".join(str(e["text"]) for e in stream.events)
    assert "http" in texts and "😡" in texts
    schema = contract("social_raw").schema
    shape = {"post_id", "ts", "source", "lang", "text", "engagement", "author_type"}
    for event in stream.events[:500]:
        jsonschema.validate(event, schema)
        reply = event["author_type"] == "brand"
        assert set(event) == (shape | {"in_reply_to_post_id"} if reply else shape)
        assert set(event["engagement"]) == {"likes", "replies", "shares"}  # type: ignore[arg-type]
    # the declared language is sometimes wrong or missing, like real connectors
    declared = [e["lang"] for e in stream.events]  # replies declare their true language
    assert None in declared
    assert sum(d != t["lang"] for d, t in zip(declared, stream.truth, strict=True)) > 0


def test_same_seed_same_posts_and_crisis_burst() -> None:
    a = generate_social(START, START + timedelta(hours=1), seed=9)
    b = generate_social(START, START + timedelta(hours=1), seed=9)
    assert a.events == b.events
    crisis = generate_social(
        START,
        START + timedelta(hours=1),
        seed=9,
        crisis=Crisis(START + timedelta(minutes=10), 20, "price"),
    )
    burst = [t for t in crisis.truth if t["crisis"]]
    assert len(burst) > 600  # ≈ 40 extra posts/min for 20 minutes
    assert {(t["label"], t["aspect"], t["brand"]) for t in burst} == {("neg", "price", "Lumio")}
    assert all(
        START + timedelta(minutes=10)
        <= datetime.fromtimestamp(float(t["epoch_s"]), UTC)
        < START + timedelta(minutes=30)  # type: ignore[arg-type]
        for t in burst
    )


def test_brand_replies_answer_earlier_posts_of_our_brand() -> None:
    """Customer care answers our brand's organic posts on the same network, after them, more
    often the negative ones; replies are in event-time order with the posts, and none falls
    after the window."""
    end = START + timedelta(hours=6)
    stream = generate_social(START, end, seed=3)
    seconds = stream.event_seconds()
    assert (np.diff(seconds) >= 0).all() and seconds.max() < end.timestamp()
    by_id = {e["post_id"]: (e, t) for e, t in zip(stream.events, stream.truth, strict=True)}
    replies = [e for e in stream.events if e["author_type"] == "brand"]
    assert len(replies) > 50
    answered = Counter()
    for reply in replies:
        post, truth = by_id[reply["in_reply_to_post_id"]]
        assert post["author_type"] == "customer" and truth["brand"] == "Lumio"
        assert truth["kind"] == "organic" and post["source"] == reply["source"]
        assert reply["ts"] > post["ts"]
        answered[truth["label"]] += 1
    ours = Counter(
        t["label"] for t in stream.truth if t["kind"] == "organic" and t["brand"] == "Lumio"
    )
    assert answered["neg"] / ours["neg"] > answered["pos"] / ours["pos"]
    assert len({e["in_reply_to_post_id"] for e in replies}) == len(replies)  # first reply only
