"""The demo's lake holds no personal value outside raw's encrypted columns, and nothing the
demo wrote or printed holds one of its secrets."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import DEMO_SECRETS, DemoLake

from governance.scan import scan
from lake.gold import DBT_PROJECT_DIR
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


def test_no_secret_in_the_demo_logs_or_outputs(demo_lake: DemoLake) -> None:
    # the PII key and the master key (as given, as bytes, in base64): in no byte of any file the demo left under its home (lake, logs, Dagster and
    # MLflow stores, key store), of dbt's logs and artifacts, or of what it printed
    master = bytes.fromhex(DEMO_SECRETS["LAKEHOUSE_MASTER_KEY"])
    needles = {
        "LAKEHOUSE_PII_KEY": DEMO_SECRETS["LAKEHOUSE_PII_KEY"].encode(),
        "LAKEHOUSE_MASTER_KEY": DEMO_SECRETS["LAKEHOUSE_MASTER_KEY"].encode(),
        "master key bytes": master,
        "master key base64": base64.b64encode(master),
    }
    files = [p for p in demo_lake.home.rglob("*") if p.is_file()]
    files += [
        p for d in ("logs", "target") for p in (DBT_PROJECT_DIR / d).rglob("*") if p.is_file()
    ]
    assert len(files) > 50 and any(p.suffix == ".parquet" for p in files)
    assert any(p.suffix == ".log" or "log" in p.parts[-2] for p in files), "no log file scanned"
    hits = []
    for path in files:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:  # a concurrent dbt run's artifact, removed since: holds nothing
            continue
        hits += [(name, str(path)) for name, needle in needles.items() if needle in data]
    printed = demo_lake.stdout.encode()
    hits += [(name, "stdout") for name, needle in needles.items() if needle in printed]
    assert hits == []
