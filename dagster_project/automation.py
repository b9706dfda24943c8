"""Declarative automation of the gold layer (docs/architecture.md, "Orchestration").

The dbt gold models and seeds, the platform snapshot and the negative wordcloud carry
`gold_refresh()`; the `gold_automation` sensor (running by default) evaluates it and requests
one run for every key that is due. Supply-chain models and nightly training keep their
schedules (dagster_project/forecasting.py, fraud.py, sentiment.py)."""

import dagster as dg

from lakehouse.ownership import owner_of
from monitoring.failures import AUTOMATION_TAG

# every quarter hour: gold stays well inside LAKEHOUSE_GOLD_MAX_AGE_MINUTES (30 by default)
GOLD_REFRESH_CRON = "*/15 * * * *"
GOLD_AUTOMATION_SENSOR = "gold_automation"


def gold_refresh() -> dg.AutomationCondition:
    """Once per quarter-hour tick (or as soon as a model is new), never while its previous
    build runs. Not `eager()`: silver updates on every micro-batch, eager would rebuild gold
    each time. Not `on_cron()`: it waits for *every* parent to update, and some never do
    (idle topics, tables Dagster does not see written). Details: docs/architecture.md."""
    return (
        dg.AutomationCondition.in_latest_time_window()
        & (
            dg.AutomationCondition.newly_missing()
            | dg.AutomationCondition.cron_tick_passed(GOLD_REFRESH_CRON)
        ).since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("gold_refresh")


GOLD_REFRESH = gold_refresh()

gold_automation_sensor = dg.AutomationConditionSensorDefinition(
    GOLD_AUTOMATION_SENSOR,
    # the keys carrying gold_refresh (supply-chain models are their own group, no condition)
    target=dg.AssetSelection.groups("gold", "gold_staging", "reference", "platform"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags={AUTOMATION_TAG: "gold_refresh", **owner_of("gold_dbt").tags()},
    description=f"Evaluates the gold models' automation condition (`gold_refresh`: each "
    f"`{GOLD_REFRESH_CRON}` tick, or as soon as a model is new) and requests their dbt build.",
)
