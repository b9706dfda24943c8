"""Alert delivery shared by every alert kind: the webhook and the `alerts` Delta table.

The webhook (`LAKEHOUSE_ALERT_WEBHOOK_URL`, Slack-compatible) receives one POST per payload of
an alert, in order: the Slack one (`text` + `blocks`), then the PagerDuty Events v2 one
(`routing_key`, `event_action`, `dedup_key`, `payload`). Without a URL the alert is only
stored (delivery_status 'not configured'). Every alert is MERGEd into `alerts` on its id, so
re-running the same evaluation stores nothing twice.

`alerts` columns are shared by the kinds: `brand` is who or what the alert is about (a brand,
a store, a topic, a table, a job), `aspect` the detail (an aspect, a shipment, a column),
`score` the measured value and `neg_threshold` the threshold it crossed. `event_action` is
`trigger` or `resolve` for the operational alerts (monitoring/alerts.py), null for the
business alerts, which are never resolved.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

from lake.tables import UTC_TS, open_table
from lakehouse.config import Settings

log = logging.getLogger(__name__)

ALERTS_SCHEMA = pa.schema(
    [
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("brand", pa.string(), nullable=False),
        pa.field("aspect", pa.string(), nullable=False),
        pa.field("window_start", UTC_TS, nullable=False),
        pa.field("window_end", UTC_TS, nullable=False),
        pa.field("posts", pa.int64(), nullable=False),
        pa.field("neg", pa.int64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("neg_threshold", pa.float64(), nullable=False),
        pa.field("mean_7d_neg", pa.float64(), nullable=False),
        pa.field("std_7d_neg", pa.float64(), nullable=False),
        pa.field("summary", pa.string(), nullable=False),
        pa.field("delivered", pa.bool_(), nullable=False),
        pa.field("delivery_status", pa.string(), nullable=False),
        pa.field("created_at", UTC_TS, nullable=False),
        # trigger / resolve (operational alerts); null for business alerts
        pa.field("event_action", pa.string()),
    ]
)
_COMMIT_RETRIES = 5


def alerts_uri(settings: Settings) -> str:
    return settings.table_uri("silver", "alerts")


def stored_alerts(settings: Settings) -> pa.Table:
    """Every stored alert, with the columns of ALERTS_SCHEMA (event_action null in tables
    written before the column existed)."""
    table = open_table(alerts_uri(settings), settings)
    if table is None:
        return ALERTS_SCHEMA.empty_table()
    rows = table.to_pyarrow_table()
    if "event_action" not in rows.column_names:
        rows = rows.append_column("event_action", pa.nulls(rows.num_rows, pa.string()))
    return rows


def post_payloads(
    url: str | None, alert_id: str, payloads: list[dict[str, Any]], timeout_s: float = 5.0
) -> tuple[bool, str]:
    """POST each payload to the webhook in turn; (delivered, status)."""
    if not url:
        return False, "not configured"
    import httpx

    try:
        with httpx.Client(timeout=timeout_s) as client:
            statuses = []
            for payload in payloads:
                response = client.post(url, json=payload)
                statuses.append(str(response.status_code))
                response.raise_for_status()
        return True, "http " + ",".join(statuses)
    except httpx.HTTPError as exc:
        log.warning("alert %s not delivered to %s: %s", alert_id, url, exc)
        return False, f"error: {type(exc).__name__}: {exc}"[:300]


def store_alert_rows(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """MERGE alert rows into the `alerts` table on alert_id (a re-run inserts nothing).

    Sensors, checks and runs may store alerts at the same moment: a lost commit race is
    retried (the MERGE only inserts unknown ids, so a retry never duplicates)."""
    table = pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA)
    for attempt in range(_COMMIT_RETRIES):
        target = open_table(alerts_uri(settings), settings)
        try:
            if target is None:
                write_deltalake(
                    alerts_uri(settings),
                    table,
                    mode="append",
                    storage_options=settings.storage_options or None,
                )
            else:
                target.merge(
                    table,
                    "t.alert_id = s.alert_id",
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,  # tables written before event_action existed
                ).when_not_matched_insert_all().execute()
            return
        except CommitFailedError:
            if attempt == _COMMIT_RETRIES - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
