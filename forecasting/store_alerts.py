"""Store alerts for shipments at risk (ETA risk, cold chain), through the same delivery as the
sentiment alerts (monitoring/delivery.py): the webhook receives a Slack payload then a PagerDuty
Events v2 payload, every alert is MERGEd into the `alerts` Delta table on its id, and a
cooldown keeps one shipment from alerting its store more than once per `COOLDOWN_HOURS`.

An `alerts` row from the supply chain: kind `eta_risk` or `cold_chain`, brand = the
destination store (who is alerted), aspect = the shipment id, window_start = the lake time of
the nightly run (the latest shipment event), window_end = the predicted arrival, score = P(late)
(or the worst excursion in °C for cold_chain), neg_threshold = the P(late) threshold,
posts/neg/mean_7d_neg/std_7d_neg = 0 (sentiment fields). The alert id hashes kind, store,
shipment and the run's day: re-running the same data sends nothing new.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from lakehouse.config import Settings
from monitoring.delivery import post_payloads, store_alert_rows, stored_alerts

COOLDOWN_HOURS = 24


def _alert_id(kind: str, store: str, shipment: str, at: datetime) -> str:
    return hashlib.sha1(f"{kind}|{store}|{shipment}|{at:%Y-%m-%d}".encode()).hexdigest()[:16]


def _summary(row: dict[str, Any], kind: str, threshold: float) -> str:
    if kind == "cold_chain":
        return (
            f"Cold chain breach on shipment {row['shipment_id']} ({row['sku']}) to "
            f"{row['destination']}: readings {row['min_c']:.1f}..{row['max_c']:.1f} °C outside "
            f"the product's range since {row['first_excursion_at']:%Y-%m-%d %H:%M} UTC; "
            "check the goods on arrival"
        )
    text = (
        f"Shipment {row['shipment_id']} ({row['sku']}, {row['carrier']}) to "
        f"{row['destination']} is likely late: P(late) {row['p_late']:.0%} ≥ {threshold:.0%}, "
        f"predicted arrival {row['eta']:%Y-%m-%d %H:%M} UTC (promised "
        f"{row['promised_at']:%Y-%m-%d %H:%M})"
    )
    if row["lands_after_stockout"]:
        text += f", after the store's predicted stock-out on {row['predicted_stockout_date']}"
    if row["reroute_carrier"]:
        text += (
            f"; re-route: {row['reroute_carrier']} is predicted "
            f"{row['reroute_saves_h']:.1f} h faster on this lane"
        )
    return text


def payloads(alert_id: str, kind: str, store: str, summary: str, critical: bool) -> list[dict]:
    slack = {
        "text": f":truck: {summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"Store alert: {store}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
        ],
    }
    pagerduty = {
        "routing_key": "lakehouse-supply-chain",
        "event_action": "trigger",
        "dedup_key": f"{kind}:{alert_id}",
        "payload": {
            "summary": summary[:1024],
            "source": "lakehouse.forecasting",
            "severity": "critical" if critical else "warning",
            "component": store,
            "class": kind,
            "custom_details": {"alert_id": alert_id},
        },
    }
    return [slack, pagerduty]


def raise_store_alerts(
    settings: Settings, risk: pl.DataFrame, run_at: datetime, threshold: float
) -> list[dict[str, Any]]:
    """Deliver and store the alerts of `risk` (forecasting.actions.eta_risk rows with
    alert = true) outside the cooldown; returns the stored rows."""
    previous = pl.from_arrow(stored_alerts(settings))
    assert isinstance(previous, pl.DataFrame)
    recent = set(
        previous.filter(
            pl.col("kind").is_in(["eta_risk", "cold_chain"])
            & (pl.col("window_start") > run_at - timedelta(hours=COOLDOWN_HOURS))
        )
        .select(pl.concat_str("kind", "brand", "aspect", separator="|"))
        .to_series()
        .to_list()
    )
    known = set(previous["alert_id"].to_list())
    rows = []
    now = datetime.now(UTC)
    for row in risk.filter(pl.col("alert")).iter_rows(named=True):
        kind = "cold_chain" if row["cold_chain_breach"] else "eta_risk"
        store, shipment = row["destination"], row["shipment_id"]
        alert_id = _alert_id(kind, store, shipment, run_at)
        if alert_id in known or f"{kind}|{store}|{shipment}" in recent:
            continue
        summary = _summary(row, kind, threshold)
        critical = bool(row["lands_after_stockout"] or row["cold_chain_breach"])
        delivered, status = post_payloads(
            settings.alert_webhook_url,
            alert_id,
            payloads(alert_id, kind, store, summary, critical),
        )
        score = float(row["max_c"]) if kind == "cold_chain" else float(row["p_late"])
        rows.append(
            {
                "alert_id": alert_id,
                "kind": kind,
                "brand": store,
                "aspect": shipment,
                "window_start": run_at,
                "window_end": row["eta"],
                "posts": 0,
                "neg": 0,
                "score": score,
                "neg_threshold": threshold,
                "mean_7d_neg": 0.0,
                "std_7d_neg": 0.0,
                "summary": summary,
                "delivered": delivered,
                "delivery_status": status,
                "created_at": now,
            }
        )
    if rows:
        store_alert_rows(settings, rows)
    return rows
