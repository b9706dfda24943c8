"""`lakehouse bi check`: every dashboard opened in headless Chromium, every chart checked.

Logs in through Superset's login form (the session cookie is then given to the browser),
opens each dashboard of the bundle and waits until every chart has either rendered with data
(an ECharts canvas with drawn pixels, a word-cloud SVG with words, a table with rows) or
failed (an error box, "No results"). The browser is Debian's `chromium`, driven over the
Chrome DevTools protocol (websockets + httpx, no Selenium); it resolves no host but
127.0.0.1, so a dashboard that tried to reach the internet would show it. The chart data API
(/api/v1/chart/<id>/data/, what alerts, reports and cache warm-up call) is checked for every
chart as well.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse import bi
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
RENDER_TIMEOUT_S = 60.0
VIEWPORT = (1600, 2400)

# Run in the page: one entry per chart holder with its state. A chart is "ok" when it drew
# something: an ECharts canvas with non-transparent pixels, an SVG with shapes or words, or a
# table with body rows.
_PROBE = r"""
(() => {
  const holders = [...document.querySelectorAll('.dashboard-component-chart-holder')];
  return holders.map(h => {
    const title = (h.querySelector('.header-title, [data-test="slice-header"] .editable-title, [data-test="editable-title"]') || {}).innerText || '';
    const text = h.innerText || '';
    const error = h.querySelector('.alert-danger, .ant-alert-error, [data-test="error-tooltip"], .error-alert');
    if (error) return {title, state: 'error', detail: (error.innerText || 'error box').slice(0, 200)};
    if (/No results were returned|No results|No data/.test(text) && !h.querySelector('canvas, table tbody tr'))
      return {title, state: 'empty', detail: 'No results'};
    if (h.querySelector('.loading, [data-test="loading-indicator"], .ant-skeleton'))
      return {title, state: 'loading', detail: ''};
    for (const c of h.querySelectorAll('canvas')) {
      if (!c.width || !c.height) continue;
      try {
        const ctx = c.getContext('2d');
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        let drawn = 0;
        for (let i = 3; i < data.length; i += 64) if (data[i] > 0) drawn++;
        if (drawn > 50) return {title, state: 'ok', detail: 'canvas ' + c.width + 'x' + c.height};
      } catch (e) { return {title, state: 'ok', detail: 'canvas (not readable)'}; }
    }
    for (const s of h.querySelectorAll('svg')) {
      const shapes = s.querySelectorAll('text, path, rect, circle').length;
      const box = s.getBoundingClientRect();
      if (shapes > 3 && box.width > 0 && box.height > 0)
        return {title, state: 'ok', detail: 'svg ' + shapes + ' shapes'};
    }
    const rows = h.querySelectorAll('table tbody tr').length;
    if (rows > 0 && !/No records found/.test(text)) return {title, state: 'ok', detail: rows + ' table rows'};
    return {title, state: 'loading', detail: ''};
  });
})()
"""

# Bottom of the last chart: the screenshot stops there, not at the end of the viewport.
_CONTENT_BOTTOM = (
    "Math.max(0, ...[...document.querySelectorAll('.dashboard-component-chart-holder')]"
    ".map(h => h.getBoundingClientRect().bottom + window.scrollY))"
)


@dataclass
class ChartState:
    title: str
    state: str  # ok, error, empty, loading (timed out)
    detail: str = ""


@dataclass
class DashboardCheck:
    slug: str
    title: str
    seconds: float
    charts: list[ChartState] = field(default_factory=list)
    expected_charts: int = 0
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return (
            len(self.charts) == self.expected_charts
            and bool(self.charts)
            and all(c.state == "ok" for c in self.charts)
        )

    def problem(self) -> str:
        if len(self.charts) != self.expected_charts:
            return f"{self.slug}: {len(self.charts)} charts shown, {self.expected_charts} expected"
        bad = [c for c in self.charts if c.state != "ok"]
        return f"{self.slug}: " + ", ".join(
            f"{c.title!r} {c.state} {c.detail}".strip() for c in bad
        )

    def line(self) -> str:
        ok = sum(c.state == "ok" for c in self.charts)
        return (
            f"{self.title:<16} {ok}/{self.expected_charts} charts rendered in {self.seconds:.1f} s"
            + (f"  ({self.screenshot})" if self.screenshot else "")
            + ("" if self.ok else f"  FAILED: {self.problem()}")
        )


def chromium_path() -> str:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise LakehouseError(
        "no Chromium found: install Debian's `chromium` package "
        "(apt-get install -y chromium chromium-driver)"
    )


def login(settings: Settings) -> Any:
    """An httpx client logged in through Superset's login form (session cookie set)."""
    import httpx

    password, _ = bi.admin_password(settings)
    client = httpx.Client(base_url=bi.local_url(settings), timeout=60)
    page = client.get("/login/")
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
        r'"csrf_token":\s*"([^"]+)"', page.text
    )
    form = {"username": settings.bi_admin_user, "password": password}
    if match:
        form["csrf_token"] = match.group(1)
    done = client.post("/login/", data=form, follow_redirects=False)
    if "session" not in client.cookies or done.status_code not in (302, 303):
        raise LakehouseError(
            f"logging in to Superset as {settings.bi_admin_user} failed (HTTP {done.status_code}):"
            " check LAKEHOUSE_BI_ADMIN_PASSWORD, or run `lakehouse bi up` again"
        )
    return client


def dashboard_charts(client: Any) -> dict[str, list[dict[str, Any]]]:
    """slug -> the charts of that dashboard (id, slice_name), from the REST API."""
    out: dict[str, list[dict[str, Any]]] = {}
    for slug in bi.DASHBOARDS:
        response = client.get(f"/api/v1/dashboard/{slug}/charts")
        if response.status_code != 200:
            raise LakehouseError(
                f"dashboard {slug} is not in Superset (HTTP {response.status_code}): "
                "run `lakehouse bi up` to import the bundle"
            )
        out[slug] = [
            {"id": c["id"], "slice_name": c["slice_name"]} for c in response.json()["result"]
        ]
    return out


def chart_data_rows(client: Any, chart_id: int) -> int:
    """Rows the chart data API returns for a saved chart (its saved query context)."""
    response = client.get(f"/api/v1/chart/{chart_id}/data/")
    if response.status_code != 200:
        raise LakehouseError(
            f"chart {chart_id}: the chart data API answered HTTP {response.status_code} "
            f"({response.text[:200]}): save the chart with its query context"
        )
    return sum(int(r.get("rowcount") or 0) for r in response.json()["result"])


class _Cdp:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        wanted = self.next_id
        await self.socket.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == wanted:
                if "error" in message:
                    raise LakehouseError(f"Chromium {method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")


def _start_chromium(profile: Path) -> tuple[subprocess.Popen[bytes], int]:
    width, height = VIEWPORT
    process = subprocess.Popen(
        [
            chromium_path(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return process, int(port_file.read_text().splitlines()[0])
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise LakehouseError(
        f"Chromium did not start ({chromium_path()}): reinstall the chromium package"
    )


async def _check(
    settings: Settings,
    cookie: str,
    expected: dict[str, int],
    devtools_port: int,
    screenshots: Path | None,
) -> list[DashboardCheck]:
    import httpx
    import websockets

    async with httpx.AsyncClient() as http:
        target = (await http.put(f"http://127.0.0.1:{devtools_port}/json/new?about:blank")).json()
    async with websockets.connect(target["webSocketDebuggerUrl"], max_size=1 << 28) as socket:
        cdp = _Cdp(socket)
        await cdp.call("Page.enable")
        await cdp.call("Network.enable")
        width, height = VIEWPORT
        await cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await cdp.call(
            "Network.setCookie",
            name="session",
            value=cookie,
            domain="127.0.0.1",
            path="/",
            httpOnly=True,
        )
        results = []
        for slug, title in bi.DASHBOARDS.items():
            started = time.monotonic()
            await cdp.call(
                "Page.navigate",
                url=f"{bi.local_url(settings)}/superset/dashboard/{slug}/",
            )
            states: list[dict[str, str]] = []
            while time.monotonic() - started < RENDER_TIMEOUT_S:
                states = await cdp.evaluate(_PROBE) or []
                settled = len(states) >= expected[slug] and all(
                    s["state"] != "loading" for s in states
                )
                if settled:
                    break
                await asyncio.sleep(0.1)
            check = DashboardCheck(
                slug,
                title,
                time.monotonic() - started,
                [ChartState(s["title"], s["state"], s["detail"]) for s in states],
                expected[slug],
            )
            if screenshots is not None:
                await asyncio.sleep(0.5)  # let the last animation frames land
                bottom = await cdp.evaluate(_CONTENT_BOTTOM) or VIEWPORT[1]
                shot = await cdp.call(
                    "Page.captureScreenshot",
                    format="png",
                    clip={
                        "x": 0,
                        "y": 0,
                        "width": VIEWPORT[0],
                        "height": min(float(bottom) + 24, VIEWPORT[1]),
                        "scale": 1,
                    },
                )
                screenshots.mkdir(parents=True, exist_ok=True)
                check.screenshot = screenshots / f"bi-{slug}.png"
                check.screenshot.write_bytes(base64.b64decode(shot["data"]))
            results.append(check)
        return results


def check_dashboards(settings: Settings, screenshots: Path | None = None) -> list[DashboardCheck]:
    """Open every dashboard, wait for every chart; one result per dashboard (in order)."""
    if not bi.status(settings).healthy:
        raise LakehouseError(
            f"Superset does not answer on {bi.local_url(settings)}: run `make bi` first"
        )
    client = login(settings)
    charts = dashboard_charts(client)
    for slug, items in charts.items():
        for chart in items:
            if chart_data_rows(client, chart["id"]) == 0:
                raise LakehouseError(
                    f"chart {chart['slice_name']!r} of dashboard {slug}: the chart data API "
                    "returned no rows: is the gold file built (`make demo`)?"
                )
    cookie = client.cookies["session"]
    with tempfile.TemporaryDirectory(prefix="lakehouse-chromium-") as profile:
        process, port = _start_chromium(Path(profile))
        try:
            return asyncio.run(
                _check(settings, cookie, {s: len(c) for s, c in charts.items()}, port, screenshots)
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
