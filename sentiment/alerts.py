"""Crisis alerts: Slack-compatible and PagerDuty Events v2 payloads, a cooldown, a Delta table.

One crisis fires once: an alert for brand × aspect is not sent again while a previous alert
for the same brand × aspect is younger than `COOLDOWN_HOURS` (in event time), so consecutive
bad hours of one crisis stay one alert. The alert id is a hash of brand, aspect and hour, and
the `alerts` table is MERGEd on it: re-running the same data sends nothing new. Without
`LAKEHOUSE_ALERT_WEBHOOK_URL` the alert is only stored (delivery_status 'not configured').
The webhook receives one POST per payload: the Slack one (`text` + `blocks`), then the
PagerDuty Events v2 one (`routing_key`, `event_action: trigger`, `dedup_key`, `payload`);
delivery and storage are monitoring/delivery.py, shared with every other alert kind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from lakehouse.config import Settings

# the delivery every alert kind shares (webhook + `alerts` table): re-exported for callers
from monitoring.delivery import ALERTS_SCHEMA, post_payloads, store_alert_rows, stored_alerts
from sentiment.index import Spike

__all__ = ["ALERTS_SCHEMA", "post_payloads", "raise_alerts", "store_alert_rows", "stored_alerts"]
COOLDOWN_HOURS = 6
KIND = "sentiment_spike"


@dataclass(frozen=True)
class Alert:
    alert_id: str
    spike: Spike
    summary: str

    @property
    def window_start(self) -> datetime:
        return self.spike.hour  # type: ignore[return-value]

    @property
    def window_end(self) -> datetime:
        return self.window_start + timedelta(hours=1)


def alert_of(spike: Spike) -> Alert:
    key = f"{KIND}|{spike.brand}|{spike.aspect}|{spike.hour.isoformat()}"  # type: ignore[attr-defined]
    alert_id = hashlib.sha1(key.encode()).hexdigest()[:16]
    summary = (
        f"Negative spike on {spike.brand} / {spike.aspect}: {spike.neg} negative posts of "
        f"{spike.posts} between {spike.hour:%Y-%m-%d %H:00} and +1h UTC, weighted score "
        f"{spike.score:+.2f} (< -0.25), 7-day hourly mean {spike.mean_7d_neg:.1f} + 2σ = "
        f"{spike.neg_threshold:.1f}"
    )
    return Alert(alert_id, spike, summary)


def slack_payload(alert: Alert) -> dict[str, Any]:
    s = alert.spike
    return {
        "text": f":rotating_light: {alert.summary}",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"Sentiment crisis: {s.brand} / {s.aspect}"},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Negative posts*\n{s.neg} / {s.posts}"},
                    {"type": "mrkdwn", "text": f"*Weighted score*\n{s.score:+.2f}"},
                    {"type": "mrkdwn", "text": f"*Threshold (mean+2σ)*\n{s.neg_threshold:.1f}"},
                    {"type": "mrkdwn", "text": f"*Alert id*\n{alert.alert_id}"},
                ],
            },
        ],
    }


def pagerduty_payload(alert: Alert, routing_key: str = "lakehouse-sentiment") -> dict[str, Any]:
    s = alert.spike
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"{KIND}:{s.brand}:{s.aspect}",
        "payload": {
            "summary": alert.summary[:1024],
            "source": "lakehouse.sentiment",
            "severity": "critical" if s.score < -0.5 else "warning",
            "timestamp": alert.window_end.isoformat(),
            "component": s.brand,
            "group": s.aspect,
            "class": KIND,
            "custom_details": {
                "alert_id": alert.alert_id,
                "posts": s.posts,
                "negative_posts": s.neg,
                "weighted_score": round(s.score, 4),
                "mean_7d_neg": round(s.mean_7d_neg, 3),
                "std_7d_neg": round(s.std_7d_neg, 3),
            },
        },
    }


def apply_cooldown(spikes: list[Spike], previous: pa.Table) -> list[Alert]:
    """Alerts to raise: spikes not already alerted and outside the cooldown of an earlier
    alert for the same brand × aspect (earlier spikes of this same call count too)."""
    last: dict[tuple[str, str], datetime] = {}
    known = set(previous["alert_id"].to_pylist())
    for row in previous.select(["brand", "aspect", "window_start"]).to_pylist():
        key = (row["brand"], row["aspect"])
        last[key] = max(last.get(key, row["window_start"]), row["window_start"])
    raised: list[Alert] = []
    for spike in sorted(spikes, key=lambda s: s.hour):  # type: ignore[arg-type, return-value]
        alert = alert_of(spike)
        key = (spike.brand, spike.aspect)
        if alert.alert_id in known:
            continue
        if key in last and spike.hour - last[key] < timedelta(hours=COOLDOWN_HOURS):  # type: ignore[operator]
            continue
        last[key] = spike.hour  # type: ignore[assignment]
        raised.append(alert)
    return raised


def deliver(url: str | None, alert: Alert, timeout_s: float = 5.0) -> tuple[bool, str]:
    """POST the Slack and PagerDuty payloads to the webhook; (delivered, status)."""
    return post_payloads(
        url, alert.alert_id, [slack_payload(alert), pagerduty_payload(alert)], timeout_s
    )


def raise_alerts(settings: Settings, spikes: list[Spike]) -> list[dict[str, Any]]:
    """Deliver and store the alerts these spikes call for; returns the stored rows."""
    alerts = apply_cooldown(spikes, stored_alerts(settings))
    if not alerts:
        return []
    rows = []
    now = datetime.now(UTC)
    for alert in alerts:
        delivered, status = deliver(settings.alert_webhook_url, alert)
        s = alert.spike
        rows.append(
            {
                "alert_id": alert.alert_id,
                "kind": KIND,
                "brand": s.brand,
                "aspect": s.aspect,
                "window_start": alert.window_start,
                "window_end": alert.window_end,
                "posts": s.posts,
                "neg": s.neg,
                "score": s.score,
                "neg_threshold": s.neg_threshold,
                "mean_7d_neg": s.mean_7d_neg,
                "std_7d_neg": s.std_7d_neg,
                "summary": alert.summary,
                "delivered": delivered,
                "delivery_status": status,
                "created_at": now,
            }
        )
    store_alert_rows(settings, rows)
    return rows
