"""The demo, end to end on small data, twice on the same lake (as `make demo` re-run would)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import DemoLake, run_demo
from deltalake import DeltaTable
from testkit import check_counts

pytestmark = pytest.mark.e2e


def test_demo_runs_twice_and_leaves_no_broker(demo_lake: DemoLake, tmp_path: Path) -> None:
    first = demo_lake.stdout
    for expected in (
        "Top 5 SKUs over the last 7 days",
        "5 lowest stock cover",
        "make ui",
        "gold.daily_sales",
    ):
        assert expected in first
    assert check_counts(first)[1] == 0, first
    gold = demo_lake.home / "lake" / "gold" / "gold.duckdb"
    with duckdb.connect(str(gold), read_only=True) as con:
        units_first = con.execute("SELECT sum(units) FROM daily_sales").fetchall()[0][0]
        assert units_first > 0
    # no process left behind: the broker's pid file is gone
    assert not (demo_lake.home / "broker" / "tansu.pid").exists()

    # The second run works on a copy: the session's demo lake stays as the first run left it.
    copy = demo_lake.copy_to(tmp_path)
    home = copy.home
    second = run_demo(copy.env)  # a fresh broker: the lake records a new epoch, nothing breaks
    assert "epoch 1" in second
    raw = DeltaTable(str(home / "lake" / "raw" / "orders")).to_pyarrow_table()
    assert set(raw.column("epoch").to_pylist()) == {0, 1}
    silver = DeltaTable(str(home / "lake" / "silver" / "orders")).to_pyarrow_table()
    keys = set(
        zip(silver.column("order_id").to_pylist(), silver.column("line").to_pylist(), strict=True)
    )
    assert len(keys) == silver.num_rows  # re-sent events did not duplicate silver rows
