"""Access policy enforced by `lakehouse query --role`, per-role gold files, and the audit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable, write_deltalake
from openlineage_schema import validate_event
from testkit import SEED_ORDER

from governance.audit import audit_uri, read_audit
from governance.policy import AccessDenied, publish_role_gold, role_gold_path, run_query
from lake.silver import SPECS, transform
from lake.tables import RAW_SCHEMA, silver_uri
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

POLICY = """
version: 1
roles:
  analyst:
    attributes: {country: FR}
    tables: ["gold.sales", "silver.orders"]
    personal: redact
    masks: {silver.orders.store_id: deny}
    row_filters: {silver.orders: "country = '{country}'", gold.sales: "country = '{country}'"}
  auditor:
    attributes: {country: "*"}
    tables: ["gold.*"]
    personal: hash
"""


@pytest.fixture
def lake(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("LAKEHOUSE_POLICY", str(policy))
    settings = Settings.from_env()
    events = [
        {
            **SEED_ORDER,
            "order_id": f"o_{i}",
            "country": "FR" if i % 2 else "BE",
            "customer_id": f"c_{i}",
        }
        for i in range(10)
    ]
    now = datetime.now(UTC)
    raw = {
        "epoch": [0] * 10,
        "topic": ["orders"] * 10,
        "partition": [0] * 10,
        "offset": list(range(10)),
        "key": [e["order_id"] for e in events],
        "value": [json.dumps(e) for e in events],
        "kafka_timestamp": [now] * 10,
        "headers": [[]] * 10,
        "ingested_at": [now] * 10,
        "batch_id": ["b"] * 10,
        "ingest_date": [now.date()] * 10,
        "schema_version": [1] * 10,
    }
    import pyarrow as pa

    rows = transform(
        SPECS["silver_orders"], pa.table(raw, schema=RAW_SCHEMA), settings.pii_hash_key
    )
    write_deltalake(silver_uri(settings, "silver_orders"), rows)
    settings.gold_db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.gold_db_path)) as con:
        con.execute(
            "CREATE TABLE sales AS SELECT * FROM (VALUES ('FR', 10), ('BE', 5)) t(country, units)"
        )
        con.execute("CREATE TABLE fraud_kpis AS SELECT 1 AS n")
    return settings


def test_masks_filters_and_refusals_are_enforced_and_audited(lake: Settings) -> None:
    result = run_query(
        lake, "analyst", "SELECT order_id, customer_id_hash, country FROM silver.orders"
    )
    assert result.table.num_rows == 10  # 5 FR orders x 2 lines
    assert set(result.table["country"].to_pylist()) == {"FR"}
    assert set(result.table["customer_id_hash"].to_pylist()) == {"[redacted]"}
    with pytest.raises(
        AccessDenied,
        match=r"table gold.fraud_kpis is not readable by role analyst \(roles.analyst.tables\)",
    ):
        run_query(lake, "analyst", "SELECT * FROM gold.fraud_kpis")
    with pytest.raises(
        AccessDenied,
        match=r"column silver.orders.store_id is denied to role analyst \(roles.analyst.masks.silver.orders.store_id\)",
    ):
        run_query(lake, "analyst", "SELECT store_id FROM silver.orders")
    for sneaky in (
        "SELECT * FROM read_parquet('/etc/hosts')",
        "SELECT * FROM _src_silver_orders",
        "SELECT * FROM _gold_src.main.fraud_kpis",
        "SELECT sql FROM duckdb_views",
        "SELECT * FROM information_schema.tables",
        "DELETE FROM gold.sales",
    ):
        with pytest.raises(AccessDenied):
            run_query(lake, "analyst", sneaky)
    auditor = run_query(lake, "auditor", "SELECT sum(units) AS u FROM gold.sales")
    assert auditor.table["u"][0].as_py() == 15  # '*' lifts the country filter

    rows = read_audit(lake, limit=100)
    assert rows.num_rows == 10
    denied = read_audit(lake, allowed=False, limit=100).to_pylist()
    assert len(denied) == 8
    assert all(r["rows_returned"] == 0 and r["reason"] for r in denied)
    assert any("fraud_kpis" in r["reason"] for r in denied)
    first = read_audit(lake, role="analyst", allowed=True).to_pylist()[0]
    assert first["tables"] == ["silver.orders"] and first["rows_returned"] == 10
    assert "silver.orders.customer_id_hash" in first["columns"]
    # statements are stored hashed, and the table refuses deletes (append-only)
    assert all(len(r["statement_sha256"]) == 64 for r in denied)
    with pytest.raises(Exception, match=r"(?i)append"):
        DeltaTable(audit_uri(lake)).delete("allowed = false")


def test_per_role_gold_files_hold_only_what_the_role_sees(lake: Settings) -> None:
    path, counts = publish_role_gold(lake, "analyst")
    assert path == role_gold_path(lake, "analyst") and counts == {"gold.sales": 1}
    with duckdb.connect(str(path), read_only=True) as con:
        names = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert names == {"sales"}
        assert con.execute("SELECT country, units FROM sales").fetchall() == [("FR", 10)]
    assert read_audit(lake, action="publish").num_rows == 1
    # lineage: a run for the publish, a child per table (gold table in, the role's table out)
    events = [json.loads(line) for line in lake.lineage_file.read_text().splitlines()]
    runs = {(e["job"]["name"], e["eventType"]): e for e in events}
    assert set(runs) == {
        (job, state)
        for job in ("governance.publish.analyst", "governance.publish.analyst.sales")
        for state in ("START", "COMPLETE")
    }
    child = runs[("governance.publish.analyst.sales", "COMPLETE")]
    assert all(validate_event(e) > 0 for e in events)
    assert [(i["namespace"], i["name"]) for i in child["inputs"]] == [
        (f"duckdb://{lake.gold_db_path.resolve()}", "gold.main.sales")
    ]
    (output,) = child["outputs"]
    assert (output["namespace"], output["name"]) == (
        f"duckdb://{path.resolve()}",
        "analyst.main.sales",
    )
    assert {"name": "country", "type": "varchar"} in [
        {"name": f["name"], "type": f["type"]} for f in output["facets"]["schema"]["fields"]
    ]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert [i["name"] for i in output["facets"]["symlinks"]["identifiers"]] == ["analyst.sales"]


def test_query_cli_prints_one_line_on_denial(lake: Settings) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse",
            "query",
            "--role",
            "analyst",
            "SELECT * FROM gold.fraud_kpis",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout.strip() == (
        "denied: table gold.fraud_kpis is not readable by role analyst (roles.analyst.tables)"
    )
    assert "Traceback" not in done.stderr


def test_dagster_asset_descriptions_say_who_may_read_gold_and_silver() -> None:
    # the Dagster UI's descriptions come from the policy: gold models (dbt translator) and
    # silver assets name the roles that may read them and what they see of personal columns
    import json

    from dagster_project.assets.gold import TRANSLATOR
    from lake.gold import MANIFEST_PATH

    nodes = json.loads(MANIFEST_PATH.read_text())["nodes"].values()
    model = {n["name"]: n for n in nodes if n["resource_type"] == "model"}
    assert TRANSLATOR.get_description(model["daily_sales"]).endswith(
        "Access (gold.daily_sales): roles analyst, data_engineer."
    )
    assert "roles data_engineer, fraud_ops." in TRANSLATOR.get_description(model["fraud_kpis"])

    from dagster_project.assets.silver import SILVER_ASSETS

    described = {a.key.to_user_string(): a.descriptions_by_key[a.key] for a in SILVER_ASSETS}
    assert "`customer_id_hash`: analyst (redact), data_engineer." in described["silver_orders"]
