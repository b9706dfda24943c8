"""The demo's lake holds no personal value outside raw's encrypted columns."""

from __future__ import annotations

import pytest
from conftest import DemoLake

from governance.scan import scan
from lakehouse.config import Settings

pytestmark = pytest.mark.e2e


def test_no_silver_or_gold_table_holds_a_personal_value(demo_lake: DemoLake) -> None:
    # no silver or gold table holds a personal value that raw received (ids, device ids, IPs,
    # coordinates at full precision, contacts in posts)
    scanned = scan(Settings.from_env(demo_lake.env))
    assert scanned.hits == [], scanned.hits
    for produced in ("orders.customer_id", "transactions.account_id", "transactions.ip"):
        assert scanned.values_checked[produced] > 10, scanned.values_checked
    assert any(t.startswith("gold.duckdb:") for t in scanned.tables_scanned)
    assert "silver/transactions" in scanned.tables_scanned
