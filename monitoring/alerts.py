"""Operational alerts: conditions in, trigger / resolve events out, delivered and stored.

A check (freshness, null rate, orphan files, a run, a blocking check) evaluates to
`Condition`s, one per thing it watched (a topic, a column, a table, a job), each firing or
not. `transitions` compares them with the `alerts` table: a firing condition without an open
alert triggers one; a condition that no longer fires resolves its open alert; nothing else
happens (a condition that keeps firing stays one alert, PagerDuty-style). A condition that
fires again less than `LAKEHOUSE_ALERT_COOLDOWN_MINUTES` after its previous trigger is held
back (flapping); the next evaluation after the cooldown raises it.

Each event goes through the shared delivery (monitoring/delivery.py): a Slack payload, then
a PagerDuty Events v2 payload whose `dedup_key` (kind:subject:detail) is the same for the
trigger and its resolve, so PagerDuty closes the incident it opened. Rows in `alerts`: kind,
brand = subject, aspect = detail, window_start = since when the condition holds, window_end =
the evaluation time, score = the measured value, neg_threshold = the threshold, event_action =
trigger / resolve.

Plain Python (no Dagster import).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from lakehouse.config import Settings
from monitoring.delivery import post_payloads, store_alert_rows, stored_alerts

Action = Literal["trigger", "resolve"]
ROUTING_KEY = "lakehouse-operations"
SOURCE = "lakehouse.monitoring"

# the operational alert kinds (docs/operations.md documents each one)
STREAM_FRESHNESS = "stream_freshness"
GOLD_FRESHNESS = "gold_freshness"
NULL_RATE = "null_rate"
ORPHAN_FILES = "orphan_files"
RUN_FAILURE = "run_failure"
CHECK_FAILURE = "check_failure"
KINDS = (STREAM_FRESHNESS, GOLD_FRESHNESS, NULL_RATE, ORPHAN_FILES, RUN_FAILURE, CHECK_FAILURE)


@dataclass(frozen=True)
class Condition:
    """What one evaluation found about one subject."""

    kind: str
    subject: str  # the topic, gold model, table, job or check
    detail: str  # the column (null rate), '' when the subject says it all
    firing: bool
    value: float  # the measured value (seconds, rate, files, ...)
    threshold: float
    summary: str  # one line a person understands without the dashboard
    fix: str = ""  # the command that fixes it (docs/operations.md)
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    since: datetime | None = None  # when the condition started holding, if known

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.subject, self.detail)

    @property
    def dedup_key(self) -> str:
        return ":".join(part for part in self.key if part)


@dataclass(frozen=True)
class OpenAlert:
    alert_id: str
    triggered_at: datetime


@dataclass(frozen=True)
class Transition:
    action: Action
    condition: Condition
    alert_id: str  # the new alert's id (trigger) or this resolve event's id
    resolves: str | None = None  # the trigger a resolve closes


@dataclass(frozen=True)
class AlertHistory:
    """Per condition key: the open alert (last event a trigger) and the last trigger time."""

    open: dict[tuple[str, str, str], OpenAlert]
    last_trigger: dict[tuple[str, str, str], datetime]


def history(previous: pa.Table, kinds: Iterable[str] = KINDS) -> AlertHistory:
    """What the `alerts` table says about the operational alert kinds."""
    wanted = set(kinds)
    rows = [
        r
        for r in previous.select(
            ["alert_id", "kind", "brand", "aspect", "created_at", "event_action"]
        ).to_pylist()
        if r["kind"] in wanted and r["event_action"] in ("trigger", "resolve")
    ]
    rows.sort(key=lambda r: (r["created_at"], r["event_action"] == "resolve"))
    opened: dict[tuple[str, str, str], OpenAlert] = {}
    last_trigger: dict[tuple[str, str, str], datetime] = {}
    for r in rows:
        key = (r["kind"], r["brand"], r["aspect"])
        if r["event_action"] == "trigger":
            opened[key] = OpenAlert(r["alert_id"], r["created_at"])
            last_trigger[key] = r["created_at"]
        else:
            opened.pop(key, None)
    return AlertHistory(opened, last_trigger)


def _event_id(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def transitions(
    conditions: Sequence[Condition], past: AlertHistory, now: datetime, cooldown: timedelta
) -> list[Transition]:
    """The trigger and resolve events these conditions call for (see the module doc)."""
    out: list[Transition] = []
    for c in conditions:
        open_alert = past.open.get(c.key)
        if c.firing and open_alert is None:
            last = past.last_trigger.get(c.key)
            if last is not None and now - last < cooldown:
                continue  # flapping: held back until the cooldown has passed
            out.append(Transition("trigger", c, _event_id(*c.key, "trigger", now.isoformat())))
        elif not c.firing and open_alert is not None:
            resolve_id = _event_id(open_alert.alert_id, "resolve")
            out.append(Transition("resolve", c, resolve_id, resolves=open_alert.alert_id))
    return out


def slack_payload(t: Transition) -> dict[str, Any]:
    c = t.condition
    if t.action == "resolve":
        text = f":white_check_mark: Resolved: {c.summary}"
        header = f"Resolved: {c.kind} {c.dedup_key.split(':', 1)[-1]}"
    else:
        text = f":rotating_light: {c.summary}"
        header = f"Lakehouse {c.kind}: {c.dedup_key.split(':', 1)[-1]}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": c.summary}},
    ]
    if c.fix and t.action == "trigger":
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Fix*: `{c.fix}`"}})
    return {"text": text, "blocks": blocks}


def pagerduty_payload(t: Transition, now: datetime) -> dict[str, Any]:
    """PagerDuty Events v2: a trigger opens the incident `dedup_key`, a resolve closes it."""
    c = t.condition
    if t.action == "resolve":
        return {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": c.dedup_key}
    return {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": c.dedup_key,
        "payload": {
            "summary": c.summary[:1024],
            "source": SOURCE,
            "severity": c.severity,
            "timestamp": now.isoformat(),
            "component": c.subject,
            "group": c.detail or c.subject,
            "class": c.kind,
            "custom_details": {
                "alert_id": t.alert_id,
                "value": c.value,
                "threshold": c.threshold,
                "fix": c.fix,
            },
        },
    }


def reconcile(
    settings: Settings, conditions: Sequence[Condition], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Deliver and store the events these conditions call for; returns the stored rows."""
    if not conditions:
        return []
    now = now or datetime.now(UTC)
    past = history(stored_alerts(settings), {c.kind for c in conditions})
    cooldown = timedelta(minutes=settings.alert_cooldown_minutes)
    rows = []
    for t in transitions(conditions, past, now, cooldown):
        c = t.condition
        delivered, status = post_payloads(
            settings.alert_webhook_url, t.alert_id, [slack_payload(t), pagerduty_payload(t, now)]
        )
        rows.append(
            {
                "alert_id": t.alert_id,
                "kind": c.kind,
                "brand": c.subject,
                "aspect": c.detail,
                "window_start": c.since or now,
                "window_end": now,
                "posts": 0,
                "neg": 0,
                "score": float(c.value),
                "neg_threshold": float(c.threshold),
                "mean_7d_neg": 0.0,
                "std_7d_neg": 0.0,
                "summary": c.summary if t.action == "trigger" else f"resolved: {c.summary}",
                "delivered": delivered,
                "delivery_status": status,
                "created_at": now,
                "event_action": t.action,
            }
        )
    if rows:
        store_alert_rows(settings, rows)
    return rows


def open_alerts(settings: Settings) -> list[dict[str, Any]]:
    """The operational alerts currently open (last event a trigger), oldest first."""
    table = stored_alerts(settings)
    past = history(table)
    ids = {a.alert_id for a in past.open.values()}
    rows = [r for r in table.to_pylist() if r["alert_id"] in ids]
    return sorted(rows, key=lambda r: r["created_at"])
