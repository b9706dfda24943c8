"""Schema versions keep their topic's compatibility mode (Confluent semantics), and every gold
dbt model is an enforced contract with the owner lakehouse/ownership.py names."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ingestion.contracts import CONTRACTS, contract
from ingestion.registry import check_contracts, mode_violations
from lake.gold import MANIFEST_PATH, gold_contract_violations, prepare_manifest
from lakehouse.errors import ConfigError
from lakehouse.ownership import domain_of, owner_of

V1: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "amount"],
    "properties": {
        "id": {"type": "string", "maxLength": 64},
        "amount": {"type": "number"},
        "note": {"type": ["string", "null"]},
    },
}


def _v2(**change: Any) -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    for key, value in change.items():
        if key == "drop":
            del schema["properties"][value]
            schema["required"] = [r for r in schema["required"] if r != value]
        elif key == "add":
            schema["properties"].update(value)
        elif key == "require":
            schema["required"].append(value)
        elif key == "type":
            schema["properties"][value[0]] = {"type": value[1]}
    return schema


def _lines(mode: str, new: dict[str, Any]) -> list[str]:
    return mode_violations("t", mode, (2, new), [(1, V1)])


def test_shipped_contracts_keep_their_modes() -> None:
    assert check_contracts() == []
    transactions = contract("transactions")
    assert transactions.versions == (1, 2) and transactions.compatibility == "BACKWARD"
    assert "three_ds_status" in transactions.schema["properties"]
    assert "three_ds_status" not in transactions.schema_for(1)["properties"]
    # v2 adds a field to a closed schema: readers still on v1 would reject v2 events
    assert _forward("transactions") == [
        "transactions v2 breaks FORWARD against v1: field three_ds_status of v2 is not "
        "accepted by v1 (removed from a closed schema)"
    ]
    with pytest.raises(ConfigError, match="registered versions are v1, v2"):
        transactions.schema_for(3)


def _forward(topic: str) -> list[str]:
    c = CONTRACTS[topic]
    return mode_violations(topic, "FORWARD", (2, c.schema_for(2)), [(1, c.schema_for(1))])


def test_backward_refuses_a_new_required_field_a_removal_and_a_type_change() -> None:
    assert _lines("BACKWARD", _v2(add={"x": {"type": "string"}})) == []  # optional: fine
    assert _lines("BACKWARD", _v2(add={"x": {"type": "string"}}, require="x")) == [
        "t v2 breaks BACKWARD against v1: field x is required by v2 but absent in v1"
    ]
    assert _lines("BACKWARD", _v2(drop="note")) == [
        "t v2 breaks BACKWARD against v1: field note of v1 is not accepted by v2 "
        "(removed from a closed schema)"
    ]
    assert _lines("BACKWARD", _v2(type=("amount", "string"))) == [
        "t v2 breaks BACKWARD against v1: field amount type changed: v1 number -> v2 string"
    ]
    narrowed = _v2()
    narrowed["properties"]["id"]["maxLength"] = 8
    assert _lines("BACKWARD", narrowed) == [
        "t v2 breaks BACKWARD against v1: field id: v2 narrows maxLength (64 -> 8)"
    ]


def test_forward_full_none_and_transitive() -> None:
    added = _v2(add={"x": {"type": "string"}})
    assert _lines("FORWARD", _v2(drop="note")) == []  # old readers never required it
    assert _lines("FORWARD", _v2(drop="id")) == [
        "t v2 breaks FORWARD against v1: field id is required by v1 but absent in v2"
    ]
    assert len(_lines("FORWARD", added)) == 1
    assert len(_lines("FULL", added)) == 1 and len(_lines("FULL", _v2(drop="note"))) == 1
    assert _lines("NONE", _v2(type=("amount", "string"))) == []
    # integer -> number widens (every integer is a number); number -> integer does not
    assert _lines("BACKWARD", _v2(type=("amount", "integer"))) != []
    widened = mode_violations("t", "BACKWARD", (2, V1), [(1, _v2(type=("amount", "integer")))])
    assert widened == []
    # transitive: v3 is checked against v1 too, not only v2
    v2 = _v2(add={"x": {"type": ["string", "null"]}})
    v3 = _v2(add={"x": {"type": ["string", "null"]}}, require="x")
    v3["required"].remove("x")
    v3["properties"]["note"] = {"type": "string"}  # v1 allowed null
    assert mode_violations("t", "BACKWARD", (3, v3), [(1, V1), (2, v2)]) == [
        "t v3 breaks BACKWARD against v2: field note type changed: v2 null|string -> v3 string"
    ]
    assert len(mode_violations("t", "BACKWARD_TRANSITIVE", (3, v3), [(1, V1), (2, v2)])) == 2
    with pytest.raises(ConfigError, match="unknown compatibility mode 'LOOSE'"):
        _lines("LOOSE", V1)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    if not MANIFEST_PATH.exists():
        prepare_manifest()
    return json.loads(MANIFEST_PATH.read_text("utf-8"))


def test_every_gold_model_is_an_enforced_contract_with_its_owner(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    assert gold_contract_violations(MANIFEST_PATH) == []
    node = manifest["nodes"]["model.lakehouse.fraud_kpis"]
    assert (
        node["config"]["meta"]["owner"]
        == owner_of("fraud_kpis").contact
        == ("fraud-risk@lakehouse.local")
    )
    broken = copy.deepcopy(manifest)
    sales = broken["nodes"]["model.lakehouse.daily_sales"]
    sales["config"]["contract"]["enforced"] = False
    sales["columns"]["units"]["data_type"] = None
    sales["config"]["meta"]["team"] = "someone-else"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(broken), "utf-8")
    assert gold_contract_violations(path) == [
        "gold model daily_sales: contract not enforced (set contract.enforced: true)",
        "gold model daily_sales: column(s) without data_type: units",
        "gold model daily_sales: meta team is 'someone-else', lakehouse/ownership.py says "
        "'retail-analytics' (dbt/dbt_project.yml +meta)",
    ]


def test_ownership_domains() -> None:
    assert [domain_of(n) for n in ("raw_orders", "silver_transactions", "fraud_decisions")] == [
        "retail",
        "fraud",
        "fraud",
    ]
    assert [domain_of(n) for n in ("raw_social_raw", "sc_otif_daily", "demand_forecast")] == [
        "sentiment",
        "supply_chain",
        "supply_chain",
    ]
    assert domain_of("_usage") == "platform"
    assert owner_of("daily_sales").tags() == {
        "domain": "retail",
        "team": "retail-analytics",
        "cost_center": "CC-1100-RETAIL",
    }
