"""Sentiment index (seed example), crisis rule, cooldown, payloads, webhook delivery, table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from sentiment_kit import Receiver

from lakehouse.config import Settings
from sentiment import alerts, index
from sentiment.pipeline import engagement_weight
from sentiment.tables import SOCIAL_SENTIMENT_SCHEMA

H0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def _posts(
    hour: datetime,
    pos: int,
    neu: int,
    neg: int,
    brand: str = "Lumio",
    aspect: str = "delivery",
    likes: int = 0,
) -> list[dict[str, object]]:
    rows = []
    for label, n in (("pos", pos), ("neu", neu), ("neg", neg)):
        for i in range(n):
            rows.append(
                {
                    "post_id": f"{hour:%H}-{label}-{i}-{brand}-{aspect}",
                    "ts": hour + timedelta(seconds=i),
                    "event_date": hour.date(),
                    "source": "twitter",
                    "lang": "fr",
                    "brand": brand,
                    "label": label,
                    "confidence": 0.9,
                    "aspects": [aspect],
                    "keyphrases": [],
                    "clean_text": "x",
                    "likes": likes if label == "neg" else 0,
                    "replies": 0,
                    "shares": 0,
                    "engagement_weight": float(
                        engagement_weight(
                            np.array([likes if label == "neg" else 0]), np.zeros(1), np.zeros(1)
                        )[0]
                    ),
                    "model": "m",
                    "classified_at": hour,
                }
            )
    return rows


def test_seed_example_scores_zero() -> None:
    assert index.sentiment_score(pos=60, neg=60, total=150) == 0.0
    table = index.hourly_index(
        pa.Table.from_pylist(_posts(H0, 60, 30, 60), schema=SOCIAL_SENTIMENT_SCHEMA)
    )
    [row] = table.to_pylist()
    assert (row["posts"], row["pos"], row["neu"], row["neg"]) == (150, 60, 30, 60)
    assert row["score"] == 0.0 and row["weighted_score"] == 0.0


def test_engagement_weights_the_score() -> None:
    table = index.hourly_index(
        pa.Table.from_pylist(_posts(H0, 60, 30, 60, likes=50), schema=SOCIAL_SENTIMENT_SCHEMA)
    )
    [row] = table.to_pylist()
    assert row["score"] == 0.0
    assert row["weighted_score"] < -0.4  # the liked complaints weigh more
    assert float(engagement_weight(np.array([0.0]), np.array([0.0]), np.array([0.0]))[0]) == 1.0


def _history(hours: int, neg_per_hour: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for h in range(hours):
        rows += _posts(H0 - timedelta(hours=hours - h), 10, 5, neg_per_hour)
    return rows


def test_spike_needs_both_a_low_score_and_unusual_negatives() -> None:
    base = _history(48, 3)
    # low score but as many negatives as usual: no spike
    calm = index.hourly_index(
        pa.Table.from_pylist(base + _posts(H0, 0, 0, 3), schema=SOCIAL_SENTIMENT_SCHEMA)
    )
    assert index.detect_spikes(calm, hours=[H0]) == []
    # many negatives but a positive score: no spike
    busy = index.hourly_index(
        pa.Table.from_pylist(base + _posts(H0, 100, 0, 20), schema=SOCIAL_SENTIMENT_SCHEMA)
    )
    assert index.detect_spikes(busy, hours=[H0]) == []
    # both: spike, with the 7-day statistics that justified it
    crisis = index.hourly_index(
        pa.Table.from_pylist(base + _posts(H0, 5, 5, 40), schema=SOCIAL_SENTIMENT_SCHEMA)
    )
    [spike] = index.detect_spikes(crisis, hours=[H0])
    assert (spike.brand, spike.aspect, spike.neg) == ("Lumio", "delivery", 40)
    assert spike.score < -0.25 and spike.neg > spike.neg_threshold
    # 48 hours of 3 negatives, then 120 empty hours (zeros count) in the 7-day window
    assert abs(spike.mean_7d_neg - 48 * 3 / 168) < 1e-9


def _spike(hour: datetime) -> index.Spike:
    return index.Spike("Lumio", "delivery", hour, 50, 40, -0.6, 1.0, 1.0)


def test_cooldown_fires_once_per_crisis() -> None:
    spikes = [_spike(H0), _spike(H0 + timedelta(hours=1)), _spike(H0 + timedelta(hours=7))]
    raised = alerts.apply_cooldown(spikes, alerts.ALERTS_SCHEMA.empty_table())
    assert [a.window_start for a in raised] == [H0, H0 + timedelta(hours=7)]


def test_payloads_are_slack_and_pagerduty_shaped() -> None:
    alert = alerts.alert_of(_spike(H0))
    slack = alerts.slack_payload(alert)
    assert slack["text"].startswith(":rotating_light: Negative spike on Lumio / delivery")
    assert slack["blocks"][0]["type"] == "header"
    pager = alerts.pagerduty_payload(alert)
    assert pager["event_action"] == "trigger" and pager["payload"]["severity"] == "critical"
    assert set(pager["payload"]) >= {"summary", "source", "severity", "timestamp"}


def test_alerts_delivered_to_a_real_webhook_and_stored_once(
    settings: Settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    with Receiver() as hook:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", hook.url)
        live = Settings.from_env()
        first = alerts.raise_alerts(live, [_spike(H0)])
        again = alerts.raise_alerts(live, [_spike(H0), _spike(H0 + timedelta(hours=2))])
    assert (
        len(first) == 1 and first[0]["delivered"] and first[0]["delivery_status"] == "http 200,200"
    )
    assert again == []  # same alert id, then within the cooldown
    assert [sorted(body)[0] for body in hook.bodies] == ["blocks", "dedup_key"]
    assert alerts.stored_alerts(live).num_rows == 1


def test_failed_delivery_is_recorded(settings: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with Receiver(status=500) as hook:
        monkeypatch.setenv("LAKEHOUSE_ALERT_WEBHOOK_URL", hook.url)
        [row] = alerts.raise_alerts(Settings.from_env(), [_spike(H0)])
    assert not row["delivered"] and row["delivery_status"].startswith("error: HTTPStatusError")
    [stored] = alerts.raise_alerts(settings, [_spike(H0 + timedelta(days=1))])
    assert stored["delivery_status"] == "not configured"
