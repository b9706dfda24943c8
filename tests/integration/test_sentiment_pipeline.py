"""The sentiment streaming chain on a real broker, through the sensor and the
`ingest_social_raw` job: social_raw → raw → silver_social → silver_social_sentiment (Delta and
Kafka topics social_clean / social_sentiment) → index → one crisis alert on a real webhook."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import jsonschema
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from sentiment_kit import Receiver, install_models

from ingestion import kafka_client
from ingestion.broker import EmbeddedBroker
from ingestion.contracts import load_schema
from lakehouse.config import Settings
from sentiment.generator import Crisis, generate_social
from sentiment.tables import (
    alerts_uri,
    sentiment_index_uri,
    silver_social_uri,
    social_sentiment_uri,
)

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _run_sensor_tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    from dagster_project.definitions import defs
    from dagster_project.resources import LakehouseResource

    sensor = defs.get_sensor_def("social_raw_new_offsets")
    return sensor(
        dg.build_sensor_context(cursor=cursor, resources={"lakehouse": LakehouseResource()})
    )


def _execute(request: dg.RunRequest | None) -> dg.ExecuteInProcessResult:
    from dagster_project.definitions import defs

    job = defs.resolve_job_def("ingest_social_raw")
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            run_config=request.run_config if request else {}, instance=instance
        )


def _topic_messages(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    marks = kafka_client.probe_high_watermarks(bootstrap, topic)
    out: list[tuple[bytes, bytes]] = []
    for chunk in kafka_client.read_range(bootstrap, topic, {}, marks, idle_timeout_s=5):
        out.extend(zip(chunk["key"].to_pylist(), chunk["value"].to_pylist(), strict=True))
    return out


def test_stream_to_sentiment_topics_tables_and_one_alert(
    settings: Settings, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_models(settings.models_dir)
    stream = generate_social(
        START,
        START + timedelta(hours=2),
        seed=5,
        scale=0.1,
        crisis=Crisis(START + timedelta(minutes=75), minutes=30, aspect="delivery"),
    )
    kafka_client.produce(broker.bootstrap, "social_raw", stream.messages())
    with Receiver() as hook:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", hook.url)
        tick = _run_sensor_tick(None)
        assert isinstance(tick, dg.SensorResult)
        [request] = tick.run_requests
        result = _execute(request)
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert "silver_social_sentiment_contract" in checks
        assert set(checks) <= {"silver_social_sentiment_contract", "raw_social_raw_null_rates"}
        assert all(c.passed for c in checks.values())  # declared languages: < 30 % missing
        lineage = settings.lineage_file.read_text()
        assert "silver_social_sentiment" in lineage and "silver_sentiment_index" in lineage

        silver = DeltaTable(silver_social_uri(settings)).to_pyarrow_table()
        assert silver.num_rows == len(stream.events)
        truth = {t["post_id"]: t for t in stream.truth}
        flagged = silver.filter(pc.is_valid(silver["duplicate_of"]))["post_id"].to_pylist()
        reposts = [
            p for p, t in truth.items() if t["kind"] in ("exact_duplicate", "near_duplicate")
        ]
        assert len(set(flagged) & set(reposts)) >= 0.9 * len(reposts)
        spam = set(silver.filter(silver["is_spam"])["post_id"].to_pylist())
        true_spam = {p for p, t in truth.items() if t["kind"] == "spam"}
        assert len(spam & true_spam) >= 0.9 * len(true_spam) and len(spam - true_spam) <= 2
        langs = dict(zip(silver["post_id"].to_pylist(), silver["lang"].to_pylist(), strict=True))
        assert sum(langs[p] == t["lang"] for p, t in truth.items()) >= 0.97 * len(truth)

        scored = DeltaTable(social_sentiment_uri(settings)).to_pyarrow_table()
        labels = dict(zip(scored["post_id"].to_pylist(), scored["label"].to_pylist(), strict=True))
        assert not spam & set(labels) and not set(flagged) & set(labels)
        agreement = sum(labels[p] == truth[p]["label"] for p in labels) / len(labels)
        assert agreement >= 0.75, agreement  # generator labels vs model (≈ 0.85 on 1 h)

        # Kafka outputs: keyed by post_id, valid against their schemas, one per row
        clean = _topic_messages(broker.bootstrap, "social_clean")
        sentiment = _topic_messages(broker.bootstrap, "social_sentiment")
        assert len(clean) == silver.num_rows and len(sentiment) == scored.num_rows
        for key, value in sentiment[:200]:
            event = json.loads(value)
            jsonschema.validate(event, load_schema("social_sentiment.v1.json"))
            assert key.decode() == event["post_id"]
        for _, value in clean[:200]:
            jsonschema.validate(json.loads(value), load_schema("social_clean.v1.json"))

        # the crisis fired exactly once (cooldown), to the webhook and into the alerts table
        alerts = DeltaTable(alerts_uri(settings)).to_pyarrow_table().to_pylist()
        assert [(a["brand"], a["aspect"]) for a in alerts] == [("Lumio", "delivery")]
        assert alerts[0]["delivered"] and alerts[0]["score"] < -0.25
        assert [sorted(b)[0] for b in hook.bodies] == ["blocks", "dedup_key"]
        assert hook.bodies[1]["event_action"] == "trigger"
        assert DeltaTable(sentiment_index_uri(settings)).to_pyarrow_table().num_rows > 0

        # re-running with nothing new publishes nothing and alerts nobody
        assert isinstance(_run_sensor_tick(tick.cursor), dg.SkipReason)
        assert _execute(None).success
        assert len(_topic_messages(broker.bootstrap, "social_sentiment")) == len(sentiment)
        assert len(_topic_messages(broker.bootstrap, "social_clean")) == len(clean)
        assert len(hook.bodies) == 2
    counts = Counter(labels.values())
    assert counts["neg"] > counts["neu"]  # the crisis dominates this window
    _check_gold(settings, scored.num_rows)


def _check_gold(settings: Settings, classified: int) -> None:
    """The dbt gold models of the dashboard, built from these tables, and the wordcloud PNG."""
    from lake.gold import read_gold, run_dbt
    from sentiment.dashboard import render_negative_wordcloud

    run_dbt(
        settings,
        [
            "build",
            "--select",
            "path:models/gold/sentiment",
            "--target-path",
            str(settings.home / "dbt-target"),
        ],
    )
    daily = read_gold(
        settings,
        "SELECT sum(posts) AS n, min(p5_hourly_score) <= min(p50_hourly_score) AS ordered FROM sentiment_daily",
    ).to_pylist()[0]
    assert daily == {"n": classified, "ordered": True}
    top = read_gold(
        settings,
        "SELECT aspect FROM sentiment_top_negative_aspects WHERE brand = 'Lumio' AND neg_rank = 1 ORDER BY neg_posts DESC LIMIT 1",
    )
    assert top["aspect"].to_pylist() == ["delivery"]
    words = read_gold(
        settings,
        "SELECT word FROM sentiment_negative_words WHERE brand = 'Lumio' ORDER BY occurrences DESC LIMIT 5",
    )["word"].to_pylist()
    assert words and "lumio" not in words
    voice = read_gold(
        settings,
        "SELECT round(sum(share_of_voice), 6) AS s, count(DISTINCT d) AS days FROM sentiment_competitors",
    ).to_pylist()[0]
    assert voice["s"] == voice["days"]  # shares of voice add up to 1 per day
    path, drawn = render_negative_wordcloud(settings)
    assert drawn > 5 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
