"""dbt gold layer end to end: hand-made silver Delta tables -> `dbt build` -> exact KPI values.

The silver rows below are small enough to compute every KPI by hand (comments give the sums).
Latest order date 2025-03-10, so the trailing window is [2025-03-04, 2025-03-10]; 03-05 and
03-07 have no sales; 03-03 is just outside the window.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lake.gold import (
    DBT_SILVER_SOURCES,
    GOLD_TABLES,
    GoldBuildError,
    build_db_path,
    dbt_env,
    generate_docs,
    gold_db_path,
    read_gold,
    run_dbt,
)
from lake.tables import SILVER_TABLES, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

D = date.fromisoformat
INGESTED = datetime(2025, 3, 11, 0, 0, tzinfo=UTC)
# dbt/models/gold/supply_chain/: over the Delta tables of the nightly forecasting assets
SUPPLY_CHAIN_MODELS = (
    "sc_reorder_proposals",
    "sc_transfer_proposals",
    "sc_otif_daily",
    "sc_supply_chain_kpis",
)


def _ts(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00+00:00")


def _lineage(offset: int) -> dict[str, object]:
    return {
        "source_epoch": 1,
        "source_partition": 0,
        "source_offset": offset,
        "ingested_at": INGESTED,
    }


# (order_id, line, day, time, channel, store_id, city, sku, qty, price)
ORDERS = [
    ("O1", 1, "2025-03-10", "10:00", "store", "s_paris", "Paris", "A123", 2, 19.9),
    ("O1", 2, "2025-03-10", "10:00", "store", "s_paris", "Paris", "B200", 1, 49.0),
    ("O2", 1, "2025-03-10", "12:00", "web", None, "Lyon", "A123", 3, 19.9),  # -> s_lyon
    ("O3", 1, "2025-03-08", "09:00", "app", None, "Paris", "B200", 2, 45.0),  # -> s_paris
    ("O4", 1, "2025-03-04", "00:10", "store", "s_lyon", "Lyon", "C300", 5, 15.0),  # 1st day
    ("O5", 1, "2025-03-03", "23:50", "web", None, "Paris", "A123", 10, 19.9),  # outside
    ("O6", 1, "2025-03-09", "18:00", "web", None, "Nantes", "C300", 1, 15.0),  # no store
    ("O7", 1, "2025-03-10", "16:00", "store", "s_paris", "Paris", "A123", 1, 17.9),
]

# (session_id, day, channel, city, order_id)
SESSIONS = [
    ("S1", "2025-03-10", "web", "Lyon", "O2"),
    ("S2", "2025-03-10", "web", "Lyon", None),
    ("S3", "2025-03-10", "web", "Paris", None),
    ("S4", "2025-03-10", "web", "Paris", "O404"),  # order not in silver: not converted
    ("S5", "2025-03-10", "store", "Paris", "O1"),
    ("S6", "2025-03-10", "store", "Paris", "O7"),
    ("S7", "2025-03-08", "app", "Paris", "O3"),
    ("S8", "2025-03-08", "app", "Lyon", None),
    ("S9", "2025-03-09", "web", "Nantes", None),
]

# (sku, store_id, on_hand, on_order)
INVENTORY_CURRENT = [
    ("A123", "s_paris", 30, 0),  # store O1 2 + O7 1 = 3 units (O5 is outside the window)
    ("A123", "s_lyon", 12, 5),  # web O2 3 units, attributed to the Lyon store
    ("B200", "s_paris", 0, 20),  # out of stock despite O1 1 + app O3 2 = 3 units
    ("B200", "s_lyon", 0, 0),  # out of stock, no sales
    ("C300", "s_lyon", 14, 0),  # store O4 5 units (first day of the window)
    ("C300", "s_paris", 8, 0),  # no recent sales (the Nantes web order has no store)
]


def _write_silver(settings: Settings) -> None:
    orders = [
        {
            "order_id": oid,
            "line": line,
            "ts": _ts(day, hhmm),
            "order_date": D(day),
            "customer_id_hash": f"h{i % 3}",
            "channel": channel,
            "store_id": store,
            "city": city,
            "country": "FR",
            "sku": sku,
            "qty": qty,
            "price": price,
            "line_amount": qty * price,
            **_lineage(i),
        }
        for i, (oid, line, day, hhmm, channel, store, city, sku, qty, price) in enumerate(ORDERS)
    ]
    sessions = [
        {
            "session_id": sid,
            "ts": _ts(day, "08:00"),
            "session_date": D(day),
            "customer_id_hash": f"h{i % 3}",
            "channel": channel,
            "city": city,
            "order_id": order_id,
            **_lineage(i),
        }
        for i, (sid, day, channel, city, order_id) in enumerate(SESSIONS)
    ]
    stock_ts = _ts("2025-03-10", "23:55")
    current = [
        {"sku": sku, "store_id": store, "ts": stock_ts, "on_hand": on_hand, "on_order": on_order}
        for sku, store, on_hand, on_order in INVENTORY_CURRENT
    ]
    inventory = [
        {
            "sku": sku,
            "store_id": store,
            "ts": ts,
            "update_date": ts.date(),
            "update_type": update_type,
            "on_hand": on_hand,
            "on_order": on_order,
            "sold_qty": 0,
            "received_qty": 0,
            **_lineage(i),
        }
        for i, (sku, store, on_hand, on_order) in enumerate(INVENTORY_CURRENT)
        for ts, update_type in ((_ts("2025-03-01", "00:00"), "initial"), (stock_ts, "update"))
    ]
    data = {
        "silver_orders": (orders, ["order_date"]),
        "silver_sessions": (sessions, ["session_date"]),
        "silver_inventory": (inventory, ["update_date"]),
        "silver_inventory_current": (current, None),
    }
    for name, (rows, partition_by) in data.items():
        schema = SILVER_TABLES[name][1]
        table = pa.Table.from_pylist(rows, schema=schema)
        write_deltalake(silver_uri(settings, name), table, partition_by=partition_by)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("gold")
    settings = Settings.from_env(
        {"LAKEHOUSE_HOME": str(root / "home"), "LAKEHOUSE_LAKE_ROOT": str(root / "lake")}
    )
    _write_silver(settings)
    target = root / "dbt-target"
    run_dbt(settings, ["build"], target_path=target)
    return settings, target


def _rows(settings: Settings, sql: str) -> list[dict[str, object]]:
    return read_gold(settings, sql).to_pylist()


def test_gold_file_is_plain_duckdb_with_the_four_tables(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    gold = gold_db_path(settings)
    assert gold == (Path(settings.lake_root) / "gold" / "gold.duckdb").resolve()
    assert not build_db_path(settings).exists()
    with duckdb.connect(str(gold), read_only=True) as con:
        tables = con.execute(
            "select table_name, table_type from information_schema.tables "
            "where table_catalog = current_database()"
        ).fetchall()
        # Every relation is a real table: nothing refers to the dbt-run-only silver sources.
        assert {kind for _, kind in tables} == {"BASE TABLE"}
        assert set(GOLD_TABLES) <= {name for name, _ in tables}
        # the core tables, the supply-chain models and seeds; other use cases add theirs
        assert {*GOLD_TABLES, *SUPPLY_CHAIN_MODELS, "stores", "skus"} <= {n for n, _ in tables}
        for table in GOLD_TABLES:
            con.execute(f"select * from {table}").fetchall()


def test_supply_chain_models_build_empty_before_the_nightly_job(
    built: tuple[Settings, Path],
) -> None:
    """No forecasting Delta table in this lake: the delta plugin reads each supply-chain
    source as an empty table of its declared schema, so `dbt build` passed with them."""
    settings, _ = built
    assert not (Path(settings.lake_root) / "gold" / "reorder_proposals").exists()
    for table in SUPPLY_CHAIN_MODELS:
        assert _rows(settings, f"select count(*) as n from {table}") == [{"n": 0}]
    columns = read_gold(settings, "select * from sc_reorder_proposals").schema
    assert columns.field("rop").type == pa.int64()
    assert columns.field("predicted_stockout_date").type == pa.date32()


def test_daily_sales(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    rows = _rows(settings, "select * from daily_sales order by d, city, sku")
    assert [(r["d"], r["city"], r["sku"], r["units"]) for r in rows] == [
        (D("2025-03-03"), "Paris", "A123", 10),
        (D("2025-03-04"), "Lyon", "C300", 5),
        (D("2025-03-08"), "Paris", "B200", 2),
        (D("2025-03-09"), "Nantes", "C300", 1),
        (D("2025-03-10"), "Lyon", "A123", 3),
        (D("2025-03-10"), "Paris", "A123", 3),  # O1 2 + O7 1
        (D("2025-03-10"), "Paris", "B200", 1),
    ]
    revenue = [r["revenue"] for r in rows]
    # 10*19.9; 5*15; 2*45; 1*15; 3*19.9; 2*19.9 + 1*17.9; 1*49
    assert revenue == pytest.approx([199.0, 75.0, 90.0, 15.0, 59.7, 57.7, 49.0])


def test_top_sku_7d(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    rows = _rows(settings, "select * from top_sku_7d order by rank_units")
    # Window [03-04, 03-10]. A123: 2+3+1 units, 39.8+59.7+17.9; B200: 1+2, 49+90;
    # C300: 5+1, 75+15. A123 and C300 tie on units: revenue breaks the tie (row_number).
    assert [(r["sku"], r["units_7d"], r["rank_units"], r["rank_revenue"]) for r in rows] == [
        ("A123", 6, 1, 2),
        ("C300", 6, 2, 3),
        ("B200", 3, 3, 1),
    ]
    assert [r["revenue_7d"] for r in rows] == pytest.approx([117.4, 90.0, 139.0])
    assert {(r["window_start"], r["window_end"]) for r in rows} == {
        (D("2025-03-04"), D("2025-03-10"))
    }


def test_conversion_by_channel(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    rows = _rows(settings, "select * from conversion_by_channel order by d, channel")
    got = [
        (r["d"], r["channel"], r["sessions"], r["converted_sessions"], r["orders"]) for r in rows
    ]
    assert got == [
        (D("2025-03-03"), "web", 0, 0, 1),  # O5 without any session
        (D("2025-03-04"), "store", 0, 0, 1),  # O4 without any session
        (D("2025-03-08"), "app", 2, 1, 1),
        (D("2025-03-09"), "web", 1, 0, 1),
        (D("2025-03-10"), "store", 2, 2, 2),
        (D("2025-03-10"), "web", 4, 1, 1),  # S4 points to an order silver does not have
    ]
    assert [r["conversion_rate"] for r in rows] == [None, None, 0.5, 0.0, 1.0, 0.25]


def test_sales_by_channel_basket_and_top_products(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    rows = _rows(
        settings,
        "select d, city, channel, sku, product_name, orders, units, revenue "
        "from sales_daily_channel order by d, city, channel, sku",
    )
    # summed over channel it is daily_sales; the name comes from the skus seed
    per_day = _rows(
        settings,
        "select d, city, sku, sum(units) as units, round(sum(revenue), 2) as revenue "
        "from sales_daily_channel group by all order by all",
    )
    assert per_day == _rows(
        settings, "select d, city, sku, units, revenue from daily_sales order by all"
    )
    paris_10 = [r for r in rows if r["d"] == D("2025-03-10") and r["city"] == "Paris"]
    assert [(r["channel"], r["sku"], r["orders"], r["units"]) for r in paris_10] == [
        ("store", "A123", 2, 3),  # O1 (2 units) and O7 (1 unit)
        ("store", "B200", 1, 1),
    ]
    assert paris_10[0]["product_name"] == "Organic cotton T-shirt"
    baskets = _rows(settings, "select * from sales_basket_daily order by d, channel")
    march_10 = {r["channel"]: r for r in baskets if r["d"] == D("2025-03-10")}
    # store: O1 = 2*19.9 + 49 = 88.8 (3 units), O7 = 17.9 (1 unit) -> 106.7 / 2 orders
    assert march_10["store"]["orders"] == 2 and march_10["store"]["units"] == 4
    assert march_10["store"]["avg_basket_eur"] == pytest.approx(53.35)
    assert march_10["store"]["units_per_order"] == pytest.approx(2.0)
    assert march_10["web"]["avg_basket_eur"] == pytest.approx(59.7)  # O2 alone
    top = _rows(settings, "select * from top_products_7d order by rank_revenue")
    assert (top[0]["sku"], top[0]["product_name"]) == ("B200", "Canvas sneakers")
    assert [r["rank_units"] for r in top] == [3, 1, 2]


def test_every_gold_table_is_published_as_parquet(built: tuple[Settings, Path]) -> None:
    """Tableau, Power BI or Spark read <lake>/gold/<table>/ without DuckDB: same rows."""
    import pyarrow.dataset as pads

    settings, _ = built
    gold_dir = Path(settings.lake_root) / "gold"
    with duckdb.connect(str(gold_db_path(settings)), read_only=True) as con:
        tables = [r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()]
        assert {*GOLD_TABLES, "sales_daily_channel", "social_response_time"} <= set(tables)
        for table in tables:
            folder = gold_dir / table
            assert sorted(f.name for f in folder.iterdir()) == [f"{table}.parquet"], table
            parquet = pads.dataset(folder, format="parquet").to_table()
            expected = con.table(table).to_arrow_table()
            assert parquet.num_rows == expected.num_rows, table
            assert parquet.schema.names == expected.schema.names, table
    daily = pads.dataset(gold_dir / "daily_sales", format="parquet").to_table()
    assert sorted(daily.column("units").to_pylist()) == [1, 1, 2, 3, 3, 5, 10]


def test_stock_cover_days(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    rows = _rows(settings, "select * from stock_cover_days order by sku, store_id")
    got = {(r["sku"], r["store_id"]): r for r in rows}
    assert len(rows) == len(INVENTORY_CURRENT)
    expected = {
        # (sku, store): (city, on_hand, units_7d, stock_cover_days, cover_status)
        ("A123", "s_lyon"): ("Lyon", 12, 3, 12 / (3 / 7), "ok"),  # 28 days
        ("A123", "s_paris"): ("Paris", 30, 3, 30 / (3 / 7), "ok"),  # 70 days
        ("B200", "s_lyon"): ("Lyon", 0, 0, 0.0, "out_of_stock"),
        ("B200", "s_paris"): ("Paris", 0, 3, 0.0, "out_of_stock"),
        ("C300", "s_lyon"): ("Lyon", 14, 5, 14 / (5 / 7), "ok"),  # 19.6 days
        ("C300", "s_paris"): ("Paris", 8, 0, None, "no_recent_sales"),
    }
    for key, (city, on_hand, units, cover, status) in expected.items():
        row = got[key]
        assert (row["city"], row["on_hand"], row["units_7d"], row["cover_status"]) == (
            city,
            on_hand,
            units,
            status,
        ), key
        assert row["avg_daily_units_7d"] == pytest.approx(units / 7), key
        if cover is None:
            assert row["stock_cover_days"] is None, key
        else:
            assert row["stock_cover_days"] == pytest.approx(cover), key
        assert (row["window_start"], row["window_end"]) == (D("2025-03-04"), D("2025-03-10"))
    assert got[("A123", "s_paris")]["stock_cover_days"] == pytest.approx(70.0)
    assert got[("C300", "s_lyon")]["stock_cover_days"] == pytest.approx(19.6)


def test_partial_run_keeps_other_tables_and_open_readers(built: tuple[Settings, Path]) -> None:
    settings, target = built
    gold = gold_db_path(settings)
    before = {t: _rows(settings, f"select * from {t} order by all") for t in GOLD_TABLES}
    inode = gold.stat().st_ino
    with duckdb.connect(str(gold), read_only=True) as reader:  # a BI tool holding the file
        result = run_dbt(settings, ["run", "--select", "daily_sales"], target_path=target)
        assert "PASS=1" in result.stdout
        assert reader.execute("select count(*) from daily_sales").fetchone() == (7,)
    assert gold.stat().st_ino != inode  # a new file was swapped in
    after = {t: _rows(settings, f"select * from {t} order by all") for t in GOLD_TABLES}
    assert after == before


def test_failed_build_names_the_test_and_keeps_the_published_gold(
    built: tuple[Settings, Path],
) -> None:
    settings, target = built
    gold = gold_db_path(settings)
    before = gold.read_bytes()
    # A duplicated order line breaks the silver_orders key: the source test fails and the
    # gold models depending on it are skipped; the published file must stay as it was.
    orders_uri = silver_uri(settings, "silver_orders")
    first = DeltaTable(orders_uri).to_pyarrow_table().slice(0, 1)
    write_deltalake(orders_uri, first, mode="append")
    try:
        with pytest.raises(GoldBuildError) as failure:
            run_dbt(settings, ["build"], target_path=target)
    finally:
        DeltaTable(orders_uri).restore(0)
    message = str(failure.value)
    assert "\n" not in message
    assert "test source_unique_combination_silver_orders_order_id__line (fail" in message
    assert "skipped" in message
    assert gold.read_bytes() == before
    assert not build_db_path(settings).exists()


def test_docs_site_documents_every_gold_column(built: tuple[Settings, Path]) -> None:
    settings, target = built
    gold = gold_db_path(settings)
    before = gold.stat().st_ino
    index = generate_docs(settings, target_path=target)
    assert index.exists()
    assert gold.stat().st_ino == before  # docs generate reads a copy, publishes nothing
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    assert "source.lakehouse.silver.orders" in catalog["sources"]
    silver_sources = {
        f"silver_{source['name']}"
        for source in manifest["sources"].values()
        if source["source_name"] == "silver"
    }
    assert silver_sources == set(DBT_SILVER_SOURCES)  # what docs generate checks before compiling
    for table in (*GOLD_TABLES, *SUPPLY_CHAIN_MODELS):
        node = manifest["nodes"][f"model.lakehouse.{table}"]
        columns = catalog["nodes"][f"model.lakehouse.{table}"]["columns"]
        assert node["description"], table
        assert set(columns) == set(node["columns"]), table  # every column documented
        assert all(c["description"] for c in node["columns"].values()), table


def test_dbt_env_is_absolute(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    env = dbt_env(settings)
    assert Path(env["DBT_LAKEHOUSE_LAKE_ROOT"]).is_absolute()
    assert Path(env["DBT_LAKEHOUSE_GOLD_DB"]).is_absolute()
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "False"
    assert Path(env["DBT_PROFILES_DIR"], "profiles.yml").exists()


def test_the_gold_build_runs_under_its_memory_limit(built: tuple[Settings, Path]) -> None:
    """LAKEHOUSE_GOLD_MEMORY_LIMIT reaches DuckDB inside dbt (above it DuckDB spills)."""
    settings, target = built
    limited = dataclasses.replace(settings, gold_memory_limit="256MiB")
    shown = run_dbt(
        limited,
        ["show", "--inline", "select current_setting('memory_limit') as memory_limit"],
        target_path=target,
    )
    assert "256.0 MiB" in shown.stdout
