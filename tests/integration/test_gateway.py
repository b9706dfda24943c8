"""The token gateway in front of the web UIs, over real HTTP: 401 without a token, 403 for a
role the policy does not list for the service, the request forwarded otherwise (pages, API
posts, websockets), and `lakehouse ui` beyond loopback serving the real Dagster UI through it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import WSMsgType, web
from testkit import free_port

from governance.gateway import RunningGateway, start_gateway
from governance.tokens import hash_token, new_token
from ingestion.broker import EmbeddedBroker
from lakehouse.config import Settings
from lakehouse.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {role: new_token(f"{role}-user", role)[0] for role in ("data_engineer", "analyst")}


def _env(home: Path, tokens: dict[str, str]) -> dict[str, str]:
    entries = ",".join(f"{hash_token(t)}={role}-user:{role}" for role, t in tokens.items())
    return {"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_API_TOKENS": entries}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A real HTTP + websocket server on loopback that says what it received."""
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode(),
                "authorization": request.headers.get("Authorization"),
                "user": request.headers.get("X-Forwarded-User"),
                "users": request.headers.getall("X-Forwarded-User", []),
                "proof": request.headers.getall("X-Lakehouse-Gateway-Proof", []),
                "role": request.headers.get("X-Forwarded-Role"),
                "accept_encoding": request.headers.get("Accept-Encoding"),
                "forwarded_proto": request.headers.get("X-Forwarded-Proto"),
            }
        )

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["graphql-ws"])
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    app.router.add_route("*", "/{tail:.*}", echo)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    port = free_port()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        seen["up"] = True
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while "up" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, tokens: dict[str, str], upstream: str
) -> Iterator[RunningGateway]:
    settings = Settings.from_env(_env(tmp_path_factory.mktemp("gateway"), tokens))
    # 0.0.0.0: the address the gateway exists for (reached here through loopback)
    running = start_gateway(settings, "dagster_ui", "0.0.0.0", free_port(), upstream)
    yield running
    running.stop()


def _url(gateway: RunningGateway) -> str:
    return gateway.url.replace("0.0.0.0", "127.0.0.1")


def test_every_request_needs_a_token_of_an_allowed_role(
    gateway: RunningGateway, tokens: dict[str, str]
) -> None:
    url = _url(gateway)
    for method, path in (("GET", "/"), ("GET", "/runs?x=1"), ("POST", "/graphql")):
        missing = httpx.request(method, url + path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic realm=")
    wrong = httpx.get(url + "/", headers={"Authorization": "Bearer not-a-token"})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "unknown token")
    analyst = httpx.get(url + "/", headers={"Authorization": f"Bearer {tokens['analyst']}"})
    assert analyst.status_code == 403
    assert "role analyst may not use dagster_ui" in analyst.json()["detail"]

    engineer = {"Authorization": f"Bearer {tokens['data_engineer']}"}
    got = httpx.post(url + "/graphql?op=q", content=b'{"query": "{ version }"}', headers=engineer)
    assert got.status_code == 200
    echoed = got.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/graphql?op=q"
    assert echoed["body"] == '{"query": "{ version }"}'
    assert echoed["authorization"] is None  # the token stops at the gateway
    assert (echoed["user"], echoed["role"]) == ("data_engineer-user", "data_engineer")

    # a browser: the token as the password of HTTP Basic credentials
    basic = base64.b64encode(f"me:{tokens['data_engineer']}".encode()).decode()
    assert httpx.get(url + "/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    analyst_basic = base64.b64encode(f"me:{tokens['analyst']}".encode()).decode()
    assert (
        httpx.get(url + "/", headers={"Authorization": f"Basic {analyst_basic}"}).status_code == 403
    )


def test_the_caller_cannot_say_who_it_is(
    tmp_path: Path, tokens: dict[str, str], upstream: str
) -> None:
    """Identity headers come from the gateway alone: what the caller sends under
    X-Forwarded-* or X-Lakehouse-* is dropped, in any letter case; the proof shared with the
    upstream goes with every request."""
    settings = Settings.from_env(_env(tmp_path, tokens))
    running = start_gateway(settings, "bi", "0.0.0.0", free_port(), upstream, proof="s3cret")
    try:
        forged = {
            "Authorization": f"Bearer {tokens['analyst']}",
            "x-forwarded-user": "admin",
            "X-FORWARDED-ROLE": "data_engineer",
            "X-Lakehouse-Gateway-Proof": "guess",
        }
        echoed = httpx.get(_url(running) + "/", headers=forged).json()
    finally:
        running.stop()
    assert (echoed["users"], echoed["role"]) == (["analyst-user"], "analyst")
    assert echoed["proof"] == ["s3cret"]


def test_websockets_are_checked_and_forwarded(
    gateway: RunningGateway, tokens: dict[str, str]
) -> None:
    from aiohttp import ClientSession, WSServerHandshakeError

    ws_url = _url(gateway) + "/ws"

    async def talk() -> str:
        async with ClientSession() as session:
            with pytest.raises(WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url)
            assert refused.value.status == 401
            headers = {"Authorization": f"Bearer {tokens['data_engineer']}"}
            async with session.ws_connect(ws_url, headers=headers, protocols=["graphql-ws"]) as ws:
                await ws.send_str("hello")
                message = await ws.receive(timeout=10)
                return str(message.data)

    assert asyncio.run(talk()) == "echo:hello"


def test_beyond_loopback_without_tokens_is_refused(tmp_path: Path, upstream: str) -> None:
    settings = Settings.from_env({"LAKEHOUSE_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="set LAKEHOUSE_API_TOKENS"):
        start_gateway(settings, "bi", "0.0.0.0", free_port(), upstream)


def test_lakehouse_ui_beyond_loopback_serves_dagster_through_the_gateway(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= _env(tmp_path / "home", tokens) | {"LAKEHOUSE_BROKER_PORT": str(free_port())}
    env["PYTHONPATH"] = os.getcwd()
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "ui", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    engineer = {"Authorization": f"Bearer {tokens['data_engineer']}"}
    try:
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(url + "/server_info", headers=engineer, timeout=5).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break  # (502 while Dagster loads its code location)
            time.sleep(1)
        assert status == 200, (status, (tmp_path / "ui.log").read_text()[-3000:])
        info = httpx.get(url + "/server_info", headers=engineer).json()
        assert "dagster_webserver_version" in info  # the real Dagster UI answered
        assert httpx.get(url + "/server_info").status_code == 401
        analyst = {"Authorization": f"Bearer {tokens['analyst']}"}
        assert httpx.get(url + "/server_info", headers=analyst).status_code == 403
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        # the embedded broker the UI's sensors started outlives the UI by design
        EmbeddedBroker(Settings.from_env(env)).stop()


def test_lakehouse_ui_beyond_loopback_needs_tokens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {"LAKEHOUSE_HOME": str(tmp_path), "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse", "ui", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "set LAKEHOUSE_API_TOKENS" in done.stderr and "Traceback" not in done.stderr


def test_the_upstream_is_asked_for_the_encodings_the_caller_accepts(
    gateway: RunningGateway, tokens: dict[str, str]
) -> None:
    """A caller that names no encoding gets the body as is (not gzip the proxy's own client
    library would otherwise ask for); one that names some has them passed on."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(_url(gateway))
    plain = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    plain.request("GET", "/page", headers={"Authorization": f"Bearer {tokens['data_engineer']}"})
    answer = plain.getresponse()
    seen = json.loads(answer.read())
    assert answer.status == 200 and seen["accept_encoding"] == "identity"
    assert seen["forwarded_proto"] == "http"
    browser = httpx.get(
        f"{_url(gateway)}/page",
        headers={"Authorization": f"Bearer {tokens['data_engineer']}", "Accept-Encoding": "br"},
        timeout=30,
    )
    assert browser.json()["accept_encoding"] == "br"
