"""The BI bundle as code: the repo's YAML, its import zip and the export normalisation."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from lakehouse import bi
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.ownership import owner_of


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path / "home")})


def _docs() -> dict[str, dict]:
    return {name: yaml.safe_load(text) for name, text in bi.bundle_files().items()}


def test_bundle_has_five_dashboards_whose_charts_all_exist_with_query_contexts() -> None:
    docs = _docs()
    dashboards = {d["slug"]: d for n, d in docs.items() if n.startswith("dashboards/")}
    assert set(dashboards) == set(bi.DASHBOARDS)
    charts = {d["uuid"]: d for n, d in docs.items() if n.startswith("charts/")}
    datasets = {d["uuid"]: d for n, d in docs.items() if n.startswith("datasets/")}
    databases = [d for n, d in docs.items() if n.startswith("databases/")]
    assert len(databases) == 1
    assert (
        databases[0]["sqlalchemy_uri"] == f"duckdb:///{bi.GOLD_PLACEHOLDER}?access_mode=read_only"
    )
    placed = []
    for dashboard in dashboards.values():
        for node in dashboard["position"].values():
            if isinstance(node, dict) and node.get("type") == "CHART":
                assert node["meta"]["uuid"] in charts and "chartId" in node["meta"]
                placed.append(node["meta"]["uuid"])
    assert sorted(placed) == sorted(charts)  # every chart on exactly one dashboard
    for chart in charts.values():
        assert chart["dataset_uuid"] in datasets
        context = json.loads(chart["query_context"])  # saved: the chart data API answers
        assert context["queries"] and context["form_data"]["viz_type"] == chart["viz_type"]
        table = datasets[chart["dataset_uuid"]]["table_name"]
        # the description names the KPI's gold model and links to its dbt docs definition
        assert f"model.lakehouse.{table}" in chart["description"]
    uuids = [d["uuid"] for d in docs.values() if "uuid" in d]
    assert len(uuids) == len(set(uuids))


def test_every_dataset_is_a_gold_model_with_an_owner() -> None:
    manifest = json.loads((bi.REPO / "dbt" / "target" / "manifest.json").read_text())
    gold = {
        n["name"]: n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["original_file_path"].startswith("models/gold")
    }
    for name, doc in _docs().items():
        if not name.startswith("datasets/"):
            continue
        model = gold[doc["table_name"]]
        assert model["config"]["contract"]["enforced"]
        assert {c["column_name"] for c in doc["columns"]} == set(model["columns"])
        assert model["config"]["meta"]["team"] == owner_of(doc["table_name"]).team


def test_import_zip_names_this_homes_gold_file(settings: Settings) -> None:
    archive = zipfile.ZipFile(io.BytesIO(bi.bundle_zip(settings)))
    names = archive.namelist()
    assert all(n.startswith("bundle/") for n in names) and "bundle/metadata.yaml" in names
    database = next(n for n in names if n.startswith("bundle/databases/"))
    uri = yaml.safe_load(archive.read(database))["sqlalchemy_uri"]
    assert uri == f"duckdb:///{settings.gold_db_path}?access_mode=read_only"
    assert bi.GOLD_PLACEHOLDER not in b"".join(archive.read(n) for n in names).decode()


def test_export_normalisation_restores_the_repo_bundle_from_any_ids(settings: Settings) -> None:
    """What Superset exports (folder prefix, ids of its own database in file names, params,
    query contexts and positions, the home's gold path, the label colours that viewing a
    dashboard saves) normalises back to the repo's YAML."""
    gold = str(settings.gold_db_path)
    exported: dict[str, str] = {}
    for name, text in bi.bundle_files().items():
        doc = yaml.safe_load(text.replace(bi.GOLD_PLACEHOLDER, gold))
        if name.startswith("charts/"):
            doc["params"]["datasource"] = "917__table"
            doc["params"]["slice_id"] = 4242
            context = json.loads(doc["query_context"])
            context["datasource"]["id"] = 917
            context["form_data"]["datasource"] = "917__table"
            doc["query_context"] = json.dumps(context)
        if name.startswith("dashboards/"):
            for node in doc["position"].values():
                if isinstance(node, dict) and node.get("type") == "CHART":
                    node["meta"]["chartId"] = 9000 + node["meta"]["chartId"]
            # the colours a browser assigned to the series it drew, saved by viewing it
            doc["metadata"]["map_label_colors"] = {"Our brand": "#1FA8C9"}
            doc["metadata"]["shared_label_colors"] = ["Our brand"]
            doc["metadata"]["color_scheme_domain"] = ["#1FA8C9", "#454E7C"]
        folder, _, file_name = name.partition("/")
        exported[f"dashboard_export_20260101T000000/{folder}/{file_name[:-5]}_17.yaml"] = (
            yaml.safe_dump(doc)
        )
    assert bi.normalise_export(exported, gold) == bi.bundle_files()


def test_secrets_are_created_once_with_mode_0600(settings: Settings) -> None:
    password, generated = bi.admin_password(settings)
    assert generated and len(password) >= 16
    assert bi.admin_password(settings) == (password, True)
    paths = bi.write_config(settings)
    for secret in (paths.password_file, paths.secret_key):
        assert secret.stat().st_mode & 0o777 == 0o600
    key = paths.secret_key.read_text()
    bi.write_config(settings)
    assert paths.secret_key.read_text() == key
    config = paths.config.read_text()
    assert str(paths.metadata_db) in config and "SUPERSET_LOAD_EXAMPLES = False" in config
    assert "scarf" not in config  # no analytics host allowed by the content-security policy
    assert "AUTH_REMOTE_USER" not in config and not paths.gateway_proof.exists()
    # behind the token gateway: users signed in by the gateway's proof (kept 0600, once)
    bi.write_config(settings, behind_gateway=True)
    proof = paths.gateway_proof.read_text()
    assert paths.gateway_proof.stat().st_mode & 0o777 == 0o600 and len(proof.strip()) >= 32
    gateway = paths.config.read_text()
    assert "AUTH_TYPE = AUTH_REMOTE_USER" in gateway and str(paths.gateway_proof) in gateway
    assert f"AUTH_USER_REGISTRATION_ROLE = {bi.VIEWER_ROLE!r}" in gateway
    assert proof.strip() not in gateway  # the secret is read from its file, never copied
    bi.write_config(settings, behind_gateway=True)
    assert paths.gateway_proof.read_text() == proof
    assert "AUTH_REMOTE_USER" not in bi.write_config(settings).config.read_text()


def test_platform_dashboard_shows_alerts_and_finops_usage() -> None:
    platform = bi.dashboard_tables()["platform"]
    assert {"platform_alerts_daily", "finops_usage_daily"} <= set(platform)
    assert ("fired", "bigint") in platform["platform_alerts_daily"]
    assert ("cpu_seconds", "double") in platform["finops_usage_daily"]


def _gold_file(settings: Settings, *tables: str) -> Path:
    """A gold file holding `tables` (empty, with the columns the bundle's datasets read)."""
    import duckdb

    columns = {t: c for used in bi.dashboard_tables().values() for t, c in used.items()}
    settings.gold_db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.gold_db_path)) as con:
        for table in tables:
            spec = ", ".join(f'"{name}" {kind}' for name, kind in columns[table])
            con.execute(f'CREATE TABLE "{table}" ({spec})')
    return settings.gold_db_path


def _events(settings: Settings) -> list[dict]:
    return [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]


def test_publish_lineage_reads_gold_tables_and_writes_dashboards(settings: Settings) -> None:
    from openlineage_schema import validate_event

    gold = _gold_file(settings, "sales_daily_channel", "top_products_7d", "platform_alerts_daily")
    with bi.publish_lineage(settings, gold, "127.0.0.1:8088"):
        pass
    events = _events(settings)
    assert all(validate_event(e) > 0 for e in events)
    runs = {(e["job"]["name"], e["eventType"]): e for e in events}
    jobs = {"superset.publish", *(f"superset.publish.{slug}" for slug in bi.DASHBOARDS)}
    assert set(runs) == {(job, state) for job in jobs for state in ("START", "COMPLETE")}
    parent = runs[("superset.publish", "COMPLETE")]["run"]["runId"]
    sales = runs[("superset.publish.sales", "COMPLETE")]
    assert sales["run"]["facets"]["parent"]["run"]["runId"] == parent
    (output,) = sales["outputs"]
    assert (output["namespace"], output["name"]) == ("superset://127.0.0.1:8088", "sales")
    fields = {(f["name"], f["type"]) for f in output["facets"]["schema"]["fields"]}
    assert ("top_products_7d.revenue_7d", "double") in fields
    # named as the dbt gold models' outputs are (lakehouse.lineage.duckdb_dataset); only the
    # tables the connected file holds, only those the dashboard reads
    assert {(i["namespace"], i["name"]) for i in sales["inputs"]} == {
        (f"duckdb://{gold.resolve()}", "gold.main.sales_daily_channel"),
        (f"duckdb://{gold.resolve()}", "gold.main.top_products_7d"),
    }
    platform = runs[("superset.publish.platform", "COMPLETE")]
    assert [i["name"] for i in platform["inputs"]] == ["gold.main.platform_alerts_daily"]


def test_a_failed_import_emits_fail(settings: Settings) -> None:
    gold = _gold_file(settings, "top_products_7d")
    with pytest.raises(RuntimeError), bi.publish_lineage(settings, gold, "h:1"):
        raise RuntimeError("import failed")
    failed = [e for e in _events(settings) if e["eventType"] == "FAIL"]
    assert {e["job"]["name"] for e in failed} == {
        "superset.publish",
        *(f"superset.publish.{slug}" for slug in bi.DASHBOARDS),
    }
    assert all("import failed" in e["run"]["facets"]["errorMessage"]["message"] for e in failed)


def test_gateway_roles_never_reach_more_than_the_connection_holds(settings: Settings) -> None:
    from lakehouse.errors import ConfigError, LakehouseError

    # the whole gold file: only roles that may read every table the dashboards read
    assert bi.gateway_roles(settings, None) == ["data_engineer"]
    assert bi.gateway_roles(settings, "analyst") == ["analyst"]
    with pytest.raises(ConfigError, match="unknown role 'nobody'"):
        bi.gateway_roles(settings, "nobody")
    policy = settings.home / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    text = (bi.REPO / "governance" / "policy.yaml").read_text()
    policy.write_text(
        text.replace("bi: [analyst, fraud_ops, supply_planner, data_engineer]", "bi: [analyst]")
    )
    narrow = Settings.from_env(
        {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_POLICY": str(policy)}
    )
    with pytest.raises(LakehouseError, match="role fraud_ops may not use the BI server"):
        bi.gateway_roles(narrow, "fraud_ops")
    with pytest.raises(LakehouseError, match="--role ROLE"):
        bi.gateway_roles(narrow, None)


def test_bi_beyond_loopback_without_tokens_is_refused_before_any_work(settings: Settings) -> None:
    from lakehouse.errors import ConfigError

    with pytest.raises(ConfigError, match="LAKEHOUSE_API_TOKENS"):
        bi.up(settings, host="0.0.0.0")
    assert not bi.bi_paths(settings).home.exists()
    with pytest.raises(ConfigError, match="LAKEHOUSE_BI_HOST"):
        Settings.from_env({"LAKEHOUSE_BI_HOST": "http://example.org:80"})


def test_printed_addresses_are_ones_users_can_open(settings: Settings) -> None:
    import socket

    from lakehouse.net import http_url

    here = socket.getfqdn()
    assert here not in ("", "0.0.0.0")
    assert http_url("0.0.0.0", 8088) == f"http://{here}:8088"  # listens everywhere: this machine
    assert http_url("::", 3000) == (
        f"http://[{here}]:3000" if ":" in here else f"http://{here}:3000"
    )
    assert http_url("10.0.0.5", 8088) == "http://10.0.0.5:8088"
    assert http_url("fd00::5", 8088) == "http://[fd00::5]:8088"
    assert bi.public_url(settings, "0.0.0.0") == f"http://{here}:{settings.bi_port}"
    behind_proxy = Settings.from_env(
        {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_BI_PUBLIC_URL": "https://bi.example.com/"}
    )
    assert bi.public_url(behind_proxy, "0.0.0.0") == "https://bi.example.com"
    for wrong in ("bi.example.com", "http://0.0.0.0:8088", "https:///path"):
        with pytest.raises(ConfigError, match="LAKEHOUSE_BI_PUBLIC_URL"):
            Settings.from_env({"LAKEHOUSE_BI_PUBLIC_URL": wrong})
