"""The BI layer end to end: real Superset (its own venv) over the demo's gold, real Chromium.

Superset is started once for the module (`lakehouse bi up` on a free port, on a private copy of
the session's demo lake) and stopped by the last test (`lakehouse bi down`); the test before it
restarts it behind the token gateway for one role. The browser check saves a screenshot of
each dashboard under the test's temporary folder, or into docs/screenshots (the README's) with
LAKEHOUSE_TEST_SCREENSHOTS=docs, so a test run leaves the checkout as it found it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import DemoLake
from openlineage_schema import validate_event
from testkit import free_port, lineage_upstream

from governance.tokens import new_token
from lakehouse import bi
from lakehouse.bi_check import chart_data_rows, check_dashboards, dashboard_charts, login
from lakehouse.config import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHARTS = len(list((REPO / "bi" / "charts").glob("*.yaml")))
DATASETS = len(list((REPO / "bi" / "datasets").glob("*.yaml")))


def lakehouse(
    env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class RunningBi:
    env: dict[str, str]
    settings: Settings
    up_stdout: str


@pytest.fixture(scope="module")
def running_bi(
    demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBi]:
    lake = demo_lake.copy_to(tmp_path_factory.mktemp("bi"))
    env = lake.env | {"LAKEHOUSE_BI_PORT": str(free_port())}
    env.pop("LAKEHOUSE_BI_ADMIN_PASSWORD", None)
    up = lakehouse(env, "bi", "up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    settings = Settings.from_env(env)
    try:
        yield RunningBi(env, settings, up.stdout)
    finally:
        bi.down(settings)  # the last test checks `bi down` itself; this only cleans up


def test_up_prints_url_login_and_every_dashboard(running_bi: RunningBi) -> None:
    settings = running_bi.settings
    password = (settings.home / "bi" / "admin_password").read_text().strip()
    assert oct((settings.home / "bi" / "admin_password").stat().st_mode & 0o777) == "0o600"
    assert oct((settings.home / "bi" / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert len(password) >= 16
    out = running_bi.up_stdout
    assert f"http://127.0.0.1:{settings.bi_port} (user admin, password {password})" in out
    for slug in bi.DASHBOARDS:
        assert f"http://127.0.0.1:{settings.bi_port}/superset/dashboard/{slug}/" in out
    # the metadata database lives under LAKEHOUSE_HOME, the gold file is connected read-only
    assert (settings.home / "bi" / "superset.db").exists()
    status = lakehouse(running_bi.env, "bi", "status")
    assert "healthy" in status.stdout and str(settings.bi_port) in status.stdout


def _events(settings: Settings) -> list[dict]:
    return [json.loads(line) for line in settings.lineage_file.read_text().splitlines()]


def test_the_publish_lineage_reaches_the_kafka_topics(running_bi: RunningBi) -> None:
    """`bi up` imported the bundle: one OpenLineage run per dashboard, its gold tables in, the
    dashboard out, and from the events alone a dashboard's upstream graph reaches its topics."""
    settings = running_bi.settings
    events = _events(settings)
    publish = [e for e in events if e["job"]["name"].startswith("superset.publish")]
    assert len(publish) == 2 * (1 + len(bi.DASHBOARDS))  # START + COMPLETE each
    assert all(validate_event(e) > 0 for e in publish)
    instance = f"superset://127.0.0.1:{settings.bi_port}"
    assert {
        (o["namespace"], o["name"])
        for e in publish
        if e["eventType"] == "COMPLETE"
        for o in e["outputs"]
    } == {(instance, slug) for slug in bi.DASHBOARDS}
    sales = lineage_upstream(events, (instance, "sales"))
    gold = f"duckdb://{settings.gold_db_path.resolve()}"
    assert (gold, "gold.main.sales_daily_channel") in sales
    sales_topics = {name for ns, name in sales if ns.startswith("kafka://")}
    assert "orders" in sales_topics and "transactions" not in sales_topics
    fraud = lineage_upstream(events, (instance, "fraud"))
    topics = {name for ns, name in fraud if ns.startswith("kafka://")}
    assert {"transactions", "fraud_labels"} <= topics and "orders" not in topics


def test_every_dashboard_renders_every_chart_with_data(
    running_bi: RunningBi, tmp_path: Path
) -> None:
    readme = os.environ.get("LAKEHOUSE_TEST_SCREENSHOTS") == "docs"
    screenshots = REPO / "docs" / "screenshots" if readme else tmp_path
    results = check_dashboards(running_bi.settings, screenshots)
    assert [r.slug for r in results] == list(bi.DASHBOARDS)
    assert sum(r.expected_charts for r in results) == CHARTS
    for result in results:
        assert result.ok, result.problem()
        assert all(c.state == "ok" for c in result.charts)
        png = result.screenshot.read_bytes() if result.screenshot else b""
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, result.slug
    # every saved chart answers the chart data API with rows (alerts, reports, cache warm-up)
    client = login(running_bi.settings)
    charts = [c for items in dashboard_charts(client).values() for c in items]
    assert len(charts) == CHARTS
    assert all(chart_data_rows(client, c["id"]) > 0 for c in charts)


def _counts(client: httpx.Client) -> dict[str, int]:
    return {
        kind: client.get(f"/api/v1/{kind}/", params={"q": "(page_size:100)"}).json()["count"]
        for kind in ("dashboard", "chart", "dataset", "database")
    }


def test_provisioning_twice_gives_the_same_objects(running_bi: RunningBi) -> None:
    client = login(running_bi.settings)
    before = _counts(client)
    assert before == {"dashboard": 5, "chart": CHARTS, "dataset": DATASETS, "database": 1}
    ids = {c["slice_name"]: c["id"] for items in dashboard_charts(client).values() for c in items}
    bi.import_bundle(running_bi.settings)  # the import `bi up` does when the bundle changed
    again = lakehouse(running_bi.env, "bi", "up")  # running: nothing to redo
    assert again.returncode == 0 and "already running" in again.stdout, again.stderr
    assert _counts(client) == before
    after = {c["slice_name"]: c["id"] for items in dashboard_charts(client).values() for c in items}
    assert after == ids


def test_export_then_import_round_trips_to_the_same_yaml(
    running_bi: RunningBi, tmp_path: Path
) -> None:
    exported = tmp_path / "bundle"
    done = lakehouse(running_bi.env, "bi", "export", "--folder", str(exported))
    assert done.returncode == 0, done.stderr
    assert bi.bundle_files(exported) == bi.bundle_files(bi.BUNDLE_DIR)
    # and what was exported imports again into the same objects
    bi.import_bundle(running_bi.settings, exported)
    assert _counts(login(running_bi.settings))["chart"] == CHARTS


def test_errors_are_one_line_naming_the_fix(running_bi: RunningBi, tmp_path: Path) -> None:
    other = running_bi.env | {"LAKEHOUSE_HOME": str(tmp_path / "home")}
    no_gold = lakehouse(other, "bi", "up", timeout=60)
    assert no_gold.returncode == 2
    assert no_gold.stderr.strip().endswith("run `make demo` first"), no_gold.stderr
    assert len(no_gold.stderr.strip().splitlines()) == 1
    taken = other | {
        "LAKEHOUSE_GOLD_DB": str(running_bi.settings.gold_db_path),
        "LAKEHOUSE_BI_PORT": str(running_bi.settings.bi_port),  # Superset listens there
    }
    busy = lakehouse(taken, "bi", "up", timeout=60)
    assert busy.returncode == 2 and len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    assert "is taken" in busy.stderr and "LAKEHOUSE_BI_PORT" in busy.stderr


def test_a_published_gold_file_is_read_by_the_next_query_without_restart(
    running_bi: RunningBi,
) -> None:
    """The publisher swaps gold.duckdb (os.replace) while Superset holds it open read-only:
    the swap is not blocked, and the next chart query reads the new file."""
    import duckdb

    from lake.gold import gold_build

    client = login(running_bi.settings)
    (top,) = [
        c
        for c in dashboard_charts(client)["sales"]
        if c["slice_name"] == "Top 10 products, last 7 days"
    ]
    assert chart_data_rows(client, top["id"]) == 10
    with gold_build(running_bi.settings) as build, duckdb.connect(str(build)) as con:
        con.execute(
            "CREATE OR REPLACE TABLE top_products_7d AS "
            "SELECT * FROM top_products_7d WHERE rank_revenue <= 3"
        )
    assert chart_data_rows(client, top["id"]) == 3


def test_beyond_loopback_superset_is_served_through_the_token_gateway_for_one_role(
    running_bi: RunningBi,
) -> None:
    """`bi up --host 0.0.0.0 --role analyst`: Superset on a private loopback port, the
    gateway on LAKEHOUSE_BI_PORT (401 / 403 / forwarded), the token signing its holder in as
    a Superset user of its own with the viewer role (no admin, no password sign-in through
    the gateway, no identity forged by a header), and the dashboards connected to the
    analyst's published gold, which reaches nothing else."""
    settings = running_bi.settings
    refused = lakehouse(running_bi.env, "bi", "up", "--host", "0.0.0.0", timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "LAKEHOUSE_API_TOKENS" in refused.stderr, refused.stderr
    assert bi.status(settings).healthy  # refused before touching the running server
    tokens = {role: new_token(f"{role}-user", role) for role in ("analyst", "fraud_ops")}
    env = running_bi.env | {"LAKEHOUSE_API_TOKENS": ",".join(e for _, e in tokens.values())}
    assert lakehouse(env, "bi", "down").returncode == 0
    up = lakehouse(env, "bi", "up", "--host", "0.0.0.0", "--role", "analyst")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    assert "through the token gateway: send a token of role analyst" in up.stdout
    here = f"{socket.getfqdn()}:{settings.bi_port}"  # 0.0.0.0 is no address to open
    assert f"http://{here}/" in up.stdout and "http://0.0.0.0" not in up.stdout, up.stdout
    record = json.loads((settings.home / "bi" / "superset.pid").read_text())
    assert record["port"] != settings.bi_port and record["roles"] == ["analyst"]
    assert "through the token gateway (roles analyst)" in bi.status(settings).describe()

    public = f"http://127.0.0.1:{settings.bi_port}"
    anonymous = httpx.get(f"{public}/health", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    unknown = httpx.get(f"{public}/health", auth=("x", "not-a-token"), timeout=30)
    assert unknown.status_code == 401
    # fraud_ops may use BI by the policy, but this server shows the analyst's data only
    other_role = httpx.get(f"{public}/login/", auth=("fred", tokens["fraud_ops"][0]), timeout=30)
    assert other_role.status_code == 403 and "analyst" in other_role.json()["detail"]

    # a browser: the token as the HTTP Basic password on every request; the token signs its
    # holder in (Superset's session cookie through the gateway), whatever header it adds
    with httpx.Client(base_url=public, auth=("alice", tokens["analyst"][0]), timeout=60) as browser:
        assert browser.get("/health").text.strip() == "OK"
        signed = browser.get("/login/", headers={"X-Forwarded-User": settings.bi_admin_user})
        assert signed.status_code in (302, 303) and "session" in browser.cookies
        assert f":{record['port']}" not in signed.headers["location"]  # the gateway's address
        welcome = browser.get(signed.headers["location"], follow_redirects=True)
        assert welcome.status_code == 200 and welcome.url.port == settings.bi_port
        me = browser.get("/api/v1/me/roles/").json()["result"]
        assert me["username"] == "analyst-user"  # the token's subject, not the forged header
        assert list(me["roles"]) == [bi.VIEWER_ROLE]
        dashboard = browser.get("/superset/dashboard/sales/")
        assert dashboard.status_code == 200 and "<html" in dashboard.text.lower()
        charts = {c["slice_name"]: c["id"] for c in dashboard_charts(browser)["sales"]}
        assert chart_data_rows(browser, charts["Conversion rate by channel"]) > 0
        fraud = {c["slice_name"]: c["id"] for c in dashboard_charts(browser)["fraud"]}
        denied = browser.get(
            f"/api/v1/chart/{fraud['Decisions per day (ALLOW / CHALLENGE / BLOCK)']}/data/"
        )
        assert denied.status_code != 200 and "fraud_kpis" in denied.text  # not in its file
        # a viewer: no database settings, no SQL Lab
        (listed,) = browser.get("/api/v1/database/").json()["result"]
        assert browser.get(f"/api/v1/database/{listed['id']}/connection").status_code == 403
        assert browser.get("/sqllab/").status_code == 403
        # the admin's password does not sign in through the gateway
        password, _ = bi.admin_password(settings)
        as_admin = browser.post(
            "/api/v1/security/login",
            json={"username": settings.bi_admin_user, "password": password, "provider": "db"},
        )
        assert as_admin.status_code == 403 and "access_token" not in as_admin.text

    private = f"http://127.0.0.1:{record['port']}"
    # on the private port, a forged identity without the gateway's proof signs nobody in
    forged = {"X-Forwarded-User": "analyst-user", "X-Lakehouse-Gateway-Proof": "guess"}
    with httpx.Client(base_url=private, headers=forged, timeout=30) as intruder:
        assert intruder.get("/login/").status_code in (302, 303)
        assert intruder.get("/api/v1/me/").status_code == 401
    # the connection Superset holds (its metadata database): the analyst's file, read-only
    with sqlite3.connect(bi.bi_paths(settings).metadata_db) as metadata:
        (uri,) = metadata.execute("SELECT sqlalchemy_uri FROM dbs").fetchall()
    assert uri[0].endswith("/roles/analyst.duckdb?access_mode=read_only")

    # lineage: gold -> the analyst's file (the per-role publish) -> the dashboards
    events = _events(settings)
    (published,) = [
        e
        for e in events
        if e["job"]["name"] == "governance.publish.analyst" and e["eventType"] == "COMPLETE"
    ]
    assert validate_event(published) > 0
    role_file = f"duckdb://{(settings.gold_db_path.parent / 'roles' / 'analyst.duckdb').resolve()}"
    instance = f"superset://{here}"
    sales = lineage_upstream(events, (instance, "sales"))
    assert (role_file, "analyst.main.conversion_by_channel") in sales
    assert (
        f"duckdb://{settings.gold_db_path.resolve()}",
        "gold.main.conversion_by_channel",
    ) in sales
    assert not any(ns == role_file and name.endswith("fraud_kpis") for ns, name in sales)


def test_down_stops_only_what_up_started(running_bi: RunningBi, tmp_path: Path) -> None:
    bystander = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(free_port()), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # another home's `bi down` finds nothing of its own to stop
        other = running_bi.env | {"LAKEHOUSE_HOME": str(tmp_path / "home")}
        assert "was not running" in lakehouse(other, "bi", "down").stdout
        assert bi.status(running_bi.settings).healthy
        pid = bi.status(running_bi.settings).pid
        # the test before restarted it behind the token gateway: `down` stops both
        record = json.loads((running_bi.settings.home / "bi" / "superset.pid").read_text())
        gateway = record["gateway_pid"]
        done = lakehouse(running_bi.env, "bi", "down")
        assert done.returncode == 0 and "stopped Superset" in done.stdout
        for stopped in (pid, gateway):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{stopped}").exists():
                time.sleep(0.1)
            assert (
                not Path(f"/proc/{stopped}").exists()
                or Path(f"/proc/{stopped}/stat").read_text().split()[2] == "Z"
            )
        assert bystander.poll() is None  # the unrelated server still runs
        assert "not running" in lakehouse(running_bi.env, "bi", "status").stdout
        assert "was not running" in lakehouse(running_bi.env, "bi", "down").stdout
    finally:
        os.kill(bystander.pid, signal.SIGTERM)
        bystander.wait(timeout=10)
