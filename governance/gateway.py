"""An authenticating reverse proxy for web UIs that have no token auth of their own.

The Dagster UI (and the BI server) listen on 127.0.0.1 only. To reach one from the network,
the gateway listens on the wider address and checks every request — page, API call and
websocket upgrade — against `LAKEHOUSE_API_TOKENS` (governance.tokens): 401 without a known
token, 403 when the token's role is not listed for the service under `services:` in
governance/policy.yaml. Allowed requests are forwarded to the loopback upstream, streamed
both ways (websockets too); the caller's token and any `X-Forwarded-*` / `X-Lakehouse-*`
header it sent are stripped, and `X-Forwarded-User` / `X-Forwarded-Role` are added (with a
proof shared with the upstream, when given: Superset then signs the caller in by that name).

A token is accepted as `Authorization: Bearer <token>` (scripts) or as the password of HTTP
Basic authentication (browsers: a 401 carries a Basic challenge, so the browser asks once
and resends it on every request; the user name is free).

`start_gateway` runs it in a background thread (tests, or a server started in-process);
`serve_gateway` runs it in the foreground until interrupted (`lakehouse ui --host` calls it;
`lakehouse bi up --host` runs it as its own process, `python -m governance.gateway`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, WSMsgType, web

from governance.tokens import AuthError, Caller, TokenCheck, require_tokens_to_bind
from lakehouse.config import Settings

log = logging.getLogger(__name__)

_CLIENT = web.AppKey("client", ClientSession)

# hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; the caller's credentials neither
_DROP_REQUEST = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
}
# what the gateway itself says about the caller: never taken from the caller
_IDENTITY = ("x-forwarded-", "x-lakehouse-")
PROOF_HEADER = "X-Lakehouse-Gateway-Proof"
_DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def _token(authorization: str | None) -> str | None:
    """The bearer token, or the password of HTTP Basic credentials."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    if scheme.lower() == "bearer":
        return value.strip() or None
    return None


def check_request(check: TokenCheck, authorization: str | None) -> Caller:
    """The caller of a request, or AuthError (401/403) — one rule for every proxied service."""
    token = _token(authorization)
    return check.caller(f"Bearer {token}" if token else None)


def build_app(
    settings: Settings,
    service: str,
    upstream: str,
    roles: Collection[str] | None = None,
    proof: str | None = None,
) -> web.Application:
    """The proxy as an aiohttp application: every request checked, then forwarded. `roles`
    narrows the roles the policy allows for the service (e.g. the one role whose data a BI
    server shows); `proof`, a secret shared with the upstream, goes with every forwarded
    request (as PROOF_HEADER), so the upstream can trust X-Forwarded-User to sign the caller
    in (Superset behind `bi up --host`)."""
    check = TokenCheck(settings, service)
    if roles is not None:
        check.roles &= set(roles)
    upstream = upstream.rstrip("/")
    app = web.Application(client_max_size=64 << 20)

    async def session(app: web.Application) -> AsyncIterator[None]:
        # bodies pass through as the upstream encoded them (gzip included)
        app[_CLIENT] = ClientSession(
            timeout=ClientTimeout(total=None, sock_connect=10), auto_decompress=False
        )
        yield
        await app[_CLIENT].close()

    app.cleanup_ctx.append(session)

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            caller = check_request(check, request.headers.get("Authorization"))
        except AuthError as exc:
            headers = {}
            if exc.status == 401:
                headers["WWW-Authenticate"] = f'Basic realm="lakehouse {service}", charset="UTF-8"'
            log.info(
                "%s: %s %s denied (%d %s)",
                service,
                request.method,
                request.path,
                exc.status,
                exc.reason,
            )
            return web.json_response({"detail": exc.reason}, status=exc.status, headers=headers)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _DROP_REQUEST and not k.lower().startswith(_IDENTITY)
        }
        headers |= {"X-Forwarded-User": caller.subject, "X-Forwarded-Role": caller.role}
        if proof:
            headers[PROOF_HEADER] = proof
        # the client library would ask for gzip on its own: ask for what the caller accepts
        headers.setdefault("Accept-Encoding", "identity")
        headers["X-Forwarded-For"] = request.remote or ""
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        target = upstream + request.rel_url.raw_path_qs
        client: ClientSession = app[_CLIENT]
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await _websocket(request, client, target, headers)
            return await _forward(request, client, target, headers)
        except ClientConnectionError as exc:  # the UI is starting, or stopped
            return web.json_response(
                {"detail": f"{service} is not answering on {upstream} ({type(exc).__name__})"},
                status=502,
            )

    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _forward(
    request: web.Request, client: ClientSession, target: str, headers: dict[str, str]
) -> web.StreamResponse:
    async with client.request(
        request.method,
        target,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream_response:
        response = web.StreamResponse(status=upstream_response.status)
        for key, value in upstream_response.headers.items():
            if key.lower() not in _DROP_RESPONSE:
                response.headers.add(key, value)
        await response.prepare(request)
        async for chunk in upstream_response.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def _websocket(
    request: web.Request, client: ClientSession, target: str, headers: dict[str, str]
) -> web.StreamResponse:
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    forward = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket")}
    async with client.ws_connect(target, headers=forward, protocols=protocols) as upstream:
        downstream = web.WebSocketResponse(protocols=protocols)
        await downstream.prepare(request)

        async def pump(source, sink) -> None:  # type: ignore[no-untyped-def]
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
            await sink.close()

        await asyncio.gather(pump(downstream, upstream), pump(upstream, downstream))
        return downstream


@dataclass
class RunningGateway:
    url: str
    _runner: web.AppRunner
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


def _check_bind(settings: Settings, service: str, host: str) -> None:
    require_tokens_to_bind(settings, host, f"the {service} gateway")


def start_gateway(
    settings: Settings,
    service: str,
    host: str,
    port: int,
    upstream: str,
    proof: str | None = None,
) -> RunningGateway:
    """The gateway serving in a background thread; `.stop()` ends it."""
    _check_bind(settings, service, host)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(settings, service, upstream, proof=proof), access_log=None)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=f"gateway-{service}", daemon=True)
    thread.start()
    started.wait(timeout=30)
    if failure:
        raise failure[0]
    return RunningGateway(f"http://{host}:{port}", runner, loop, thread)


def serve_gateway(
    settings: Settings,
    service: str,
    host: str,
    port: int,
    upstream: str,
    roles: Collection[str] | None = None,
    proof: str | None = None,
) -> None:
    """The gateway in the foreground until interrupted (or SIGTERM)."""
    _check_bind(settings, service, host)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            build_app(settings, service, upstream, roles, proof),
            host=host,
            port=port,
            access_log=None,
            print=None,
            handle_signals=True,
        )


def main(argv: list[str] | None = None) -> None:
    """`python -m governance.gateway SERVICE HOST PORT UPSTREAM [--roles a,b] [--proof-file F]`:
    the process `lakehouse bi up --host` starts in front of Superset."""
    import argparse
    import sys

    from lakehouse.errors import LakehouseError

    parser = argparse.ArgumentParser(prog="python -m governance.gateway")
    parser.add_argument("service")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("upstream")
    parser.add_argument("--roles", help="comma-separated; default: the policy's for SERVICE")
    parser.add_argument("--proof-file", help="a secret sent upstream with every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    roles = [r for r in args.roles.split(",") if r] if args.roles is not None else None
    try:
        proof = Path(args.proof_file).read_text("utf-8").strip() if args.proof_file else None
        serve_gateway(
            Settings.from_env(), args.service, args.host, args.port, args.upstream, roles, proof
        )
    except (LakehouseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
