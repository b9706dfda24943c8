"""The demo, end to end on small data, twice on the same lake (as `make demo` re-run would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable
from testkit import check_counts, free_port

from governance.scan import scan
from lakehouse.config import Settings

pytestmark = pytest.mark.e2e

SMALL = [
    "--history-days",
    "3",
    "--history-scale",
    "0.005",
    "--live-minutes",
    "20",
    "--live-speed",
    "120",
    "--seed",
    "11",
]


def run_demo(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse", "demo", *SMALL],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_demo_runs_twice_and_leaves_no_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {"LAKEHOUSE_HOME": str(tmp_path / "home"), "LAKEHOUSE_BROKER_PORT": str(free_port())}
    first = run_demo(env)
    for expected in (
        "Top 5 SKUs over the last 7 days",
        "5 lowest stock cover",
        "make ui",
        "gold.daily_sales",
    ):
        assert expected in first
    assert check_counts(first)[1] == 0, first
    gold = tmp_path / "home" / "lake" / "gold" / "gold.duckdb"
    with duckdb.connect(str(gold), read_only=True) as con:
        units_first = con.execute("SELECT sum(units) FROM daily_sales").fetchall()[0][0]
        assert units_first > 0
    # no silver or gold table holds a personal value that raw received (ids, device ids, IPs,
    # coordinates at full precision, contacts in posts)
    scanned = scan(Settings.from_env(env))
    assert scanned.hits == [], scanned.hits
    for produced in ("orders.customer_id", "transactions.account_id", "transactions.ip"):
        assert scanned.values_checked[produced] > 10, scanned.values_checked
    assert any(t.startswith("gold.duckdb:") for t in scanned.tables_scanned)
    assert "silver/transactions" in scanned.tables_scanned
    # no process left behind: the broker's pid file is gone
    assert not (tmp_path / "home" / "broker" / "tansu.pid").exists()

    second = run_demo(env)  # a fresh broker: the lake records a new epoch, nothing breaks
    assert "epoch 1" in second
    raw = DeltaTable(str(tmp_path / "home" / "lake" / "raw" / "orders")).to_pyarrow_table()
    assert set(raw.column("epoch").to_pylist()) == {0, 1}
    silver = DeltaTable(str(tmp_path / "home" / "lake" / "silver" / "orders")).to_pyarrow_table()
    keys = set(
        zip(silver.column("order_id").to_pylist(), silver.column("line").to_pylist(), strict=True)
    )
    assert len(keys) == silver.num_rows  # re-sent events did not duplicate silver rows
