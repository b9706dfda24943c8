"""Who owns what: the one place that maps every table and asset to its domain, the team that
answers for it and the cost center its compute is charged to.

Dagster assets and runs carry these as tags (`domain`, `team`, `cost_center`), every dbt gold
model declares the same owner in its `meta` (checked by `lakehouse contracts check`), and the
FinOps usage table groups by them. Kernel module: no import from above."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    domain: str
    team: str
    cost_center: str
    contact: str  # where an alert or a breaking change goes first

    def tags(self) -> dict[str, str]:
        return {"domain": self.domain, "team": self.team, "cost_center": self.cost_center}


OWNERS: dict[str, Owner] = {
    o.domain: o
    for o in (
        Owner("retail", "retail-analytics", "CC-1100-RETAIL", "retail-analytics@lakehouse.local"),
        Owner("fraud", "fraud-risk", "CC-2100-RISK", "fraud-risk@lakehouse.local"),
        Owner("sentiment", "brand-insights", "CC-3100-MARKETING", "brand-insights@lakehouse.local"),
        Owner(
            "supply_chain", "supply-planning", "CC-4100-SUPPLY", "supply-planning@lakehouse.local"
        ),
        Owner("platform", "data-platform", "CC-9000-PLATFORM", "data-platform@lakehouse.local"),
    )
}

# Kafka topics (and so raw_<topic>, silver_<topic>) by domain; anything else is retail's.
_TOPIC_DOMAINS = {
    "transactions": "fraud",
    "fraud_labels": "fraud",
    "social_raw": "sentiment",
    "purchase_orders": "supply_chain",
    "receipts": "supply_chain",
    "shipments": "supply_chain",
    "shipment_readings": "supply_chain",
    "weather": "supply_chain",
}
# name prefixes of derived tables, assets and gold models
_PREFIX_DOMAINS = (
    ("fraud_", "fraud"),
    ("sentiment_", "sentiment"),
    ("social_", "sentiment"),
    ("sc_", "supply_chain"),
    ("finops_", "platform"),
    ("platform_", "platform"),
    ("_", "platform"),  # _dead_letter, _usage, _alerts
)
# supply-chain assets whose names carry no prefix (dagster_project/forecasting.py)
_NAMED_DOMAINS = {
    "forecast_backtest": "supply_chain",
    "demand_forecast": "supply_chain",
    "safety_stock": "supply_chain",
    "reorder_point": "supply_chain",
    "reorder_proposals": "supply_chain",
    "eta_predictions": "supply_chain",
    "supply_chain_kpis": "supply_chain",
    "bi_dashboards": "platform",
    "gold_dbt": "platform",  # the dbt build of every gold model (its usage row)
    "alerts": "sentiment",
}


def domain_of(name: str) -> str:
    """The domain of a topic, table, asset or gold model name (`raw_orders`, `fraud_kpis`)."""
    if name in _NAMED_DOMAINS:
        return _NAMED_DOMAINS[name]
    for layer in ("raw_", "silver_"):
        if name.startswith(layer):
            name = name.removeprefix(layer)
            break
    if name in _TOPIC_DOMAINS:
        return _TOPIC_DOMAINS[name]
    for prefix, domain in _PREFIX_DOMAINS:
        if name.startswith(prefix):
            return domain
    return "retail"


def owner_of(name: str) -> Owner:
    return OWNERS[domain_of(name)]
