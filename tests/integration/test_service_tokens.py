"""The fraud decision service behind API tokens, over real HTTP; bad bodies are 422, never 500."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from testkit import SEED_TRANSACTION, free_port

from fraud.service import build_engine, create_app
from governance.tokens import hash_token, new_token
from lakehouse.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {role: new_token(f"{role}-user", role)[0] for role in ("fraud_ops", "analyst")}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tokens: dict[str, str]) -> Iterator[str]:
    import uvicorn

    env = {
        "LAKEHOUSE_HOME": str(tmp_path_factory.mktemp("tokens")),
        "LAKEHOUSE_API_TOKENS": ",".join(
            f"{hash_token(t)}={role}-user:{role}" for role, t in tokens.items()
        ),
    }
    settings = Settings.from_env(env)
    engine = build_engine(settings, say=lambda _: None)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(engine, reload_seconds=0), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_tokens_are_checked_on_every_request(url: str, tokens: dict[str, str]) -> None:
    body = {**SEED_TRANSACTION, "transaction_id": "tx_tok_1"}
    for path in ("/healthz", "/metrics"):
        assert httpx.get(url + path).status_code == 401
    missing = httpx.post(url + "/v1/decisions", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(url + "/v1/decisions", json=body, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "unknown token")
    analyst = httpx.post(
        url + "/v1/decisions", json=body, headers={"Authorization": f"Bearer {tokens['analyst']}"}
    )
    assert analyst.status_code == 403
    assert "role analyst may not use fraud_decisions" in analyst.json()["detail"]
    ok = httpx.post(
        url + "/v1/decisions", json=body, headers={"Authorization": f"Bearer {tokens['fraud_ops']}"}
    )
    assert ok.status_code == 200 and ok.json()["decision"] in {"ALLOW", "CHALLENGE", "BLOCK"}


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.sampled_from(["NaN", "Infinity", "' OR 1=1 --", "\u0000", "x" * 5000]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@hsettings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(SEED_TRANSACTION)), _VALUES, min_size=1, max_size=4
    ),
    extra=st.booleans(),
)
def test_bad_bodies_are_422_with_a_reason_never_500(
    url: str, tokens: dict[str, str], changes: dict[str, object], extra: bool
) -> None:
    body: dict[str, object] = {**SEED_TRANSACTION, **changes}
    if extra:
        body["unexpected"] = 1
    response = httpx.post(
        url + "/v1/decisions",
        content=json.dumps(body, allow_nan=True),
        headers={
            "Authorization": f"Bearer {tokens['fraud_ops']}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"], response.text


def test_binding_beyond_loopback_needs_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["LAKEHOUSE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse",
            "fraud",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "set LAKEHOUSE_API_TOKENS" in done.stderr and "Traceback" not in done.stderr


def _post_all(client: httpx.AsyncClient, bodies: list[bytes | None], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    import asyncio

    async def send_all() -> list[tuple[int, str]]:
        limit = asyncio.Semaphore(16)

        async def one(body: bytes | None) -> tuple[int, str]:
            async with limit:
                response = await client.post("/v1/decisions", content=body or b"", headers=headers)
                return response.status_code, response.text

        async with client:
            return await asyncio.gather(*(one(b) for b in bodies))

    return asyncio.run(send_all())


def _check_outcomes(outcomes: list[tuple[int, str]], kinds: list[str]) -> None:
    for (status, text), kind in zip(outcomes, kinds, strict=True):
        assert status in (200, 422), (kind, status, text[:300])
        if status == 422:
            assert json.loads(text)["detail"], text[:300]
    statuses = [status for status, _ in outcomes]
    assert statuses.count(200) > len(statuses) // 10 and statuses.count(422) > len(statuses) // 10


def test_ten_thousand_generated_bodies_are_422_or_200_never_500(
    url: str, tokens: dict[str, str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The ingestion fuzzer's transactions corpus (tests/fuzzkit.py: wrong types, huge numbers,
    NaN, deep nesting, invalid UTF-8, 1 MB strings, duplicate keys, ...) as request bodies:
    a decision or a 422 naming the reason, never a 500. All 10,000 through the service's
    ASGI app in this process (its middleware, parsing and handlers, without TCP), every
    tenth of them also over real HTTP to the uvicorn server."""
    from fuzzkit import corpus

    messages, kinds = corpus("transactions", 10_000)
    bodies = [value for _, value in messages]
    headers = {
        "Authorization": f"Bearer {tokens['fraud_ops']}",
        "Content-Type": "application/json",
    }
    env = {
        "LAKEHOUSE_HOME": str(tmp_path),
        "LAKEHOUSE_API_TOKENS": f"{hash_token(tokens['fraud_ops'])}=fuzz:fraud_ops",
    }
    app = create_app(build_engine(Settings.from_env(env), say=lambda _: None), reload_seconds=0)
    in_process = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service", timeout=60
    )
    _check_outcomes(_post_all(in_process, bodies, headers), kinds)
    over_http = httpx.AsyncClient(base_url=url, timeout=60)
    _check_outcomes(_post_all(over_http, bodies[::10], headers), kinds[::10])
