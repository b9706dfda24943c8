"""Online decision service: `POST /v1/decisions` with one transaction (seed schema) → decision.

Per request: pseudonymise the identifiers (same HMAC as silver), read the entity history from
the feature store (in-process, or Redis with LAKEHOUSE_REDIS_URL), compute the features with
the same definition as the batch path, score (calibrated LightGBM + IsolationForest), apply
the rule overrides (fraud/rules.v1.yaml), explain (TreeSHAP top 3), then record the
transaction in the store. The champion model is reloaded when the registry alias moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from fraud.api import LabelIn, TransactionIn  # module level: FastAPI resolves the hints
from fraud.champion import Champion, resolve_champion
from fraud.features import online_features
from fraud.model import FraudModel
from fraud.rules import DECISIONS, DecisionConfig, load_config
from fraud.scoring import RULES_ONLY, score_columns
from fraud.store import FeatureStore, InMemoryStore, open_store, to_silver
from governance.tokens import AuthError, TokenCheck, require_tokens_to_bind
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.net import http_url
from monitoring.idle import IdleWatch

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Prometheus text exposition, by hand (counters and one latency histogram)."""

    def __init__(self) -> None:
        self.decisions = dict.fromkeys(DECISIONS, 0)
        self.invalid = 0
        self.errors = 0
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.reloads = 0

    def observe(self, decision: str, seconds: float) -> None:
        self.decisions[decision] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def render(self, model_version: str, store: str) -> str:
        lines = [
            "# HELP fraud_decisions_total Decisions served, by outcome.",
            "# TYPE fraud_decisions_total counter",
            *(f'fraud_decisions_total{{decision="{d}"}} {n}' for d, n in self.decisions.items()),
            "# HELP fraud_invalid_requests_total Requests rejected with 422.",
            "# TYPE fraud_invalid_requests_total counter",
            f"fraud_invalid_requests_total {self.invalid}",
            "# HELP fraud_model_reloads_total Champion model reloads after the alias moved.",
            "# TYPE fraud_model_reloads_total counter",
            f"fraud_model_reloads_total {self.reloads}",
            "# HELP fraud_decision_seconds Time to decide one transaction (features+score+rules).",
            "# TYPE fraud_decision_seconds histogram",
            *(
                f'fraud_decision_seconds_bucket{{le="{b}"}} {c}'
                for b, c in zip(LATENCY_BUCKETS, self.buckets, strict=True)
            ),
            f'fraud_decision_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"fraud_decision_seconds_sum {self.latency_sum:.6f}",
            f"fraud_decision_seconds_count {self.latency_count}",
            "# HELP fraud_model_info The champion model being served.",
            "# TYPE fraud_model_info gauge",
            f'fraud_model_info{{version="{model_version}",store="{store}"}} 1',
        ]
        return "\n".join(lines) + "\n"


class DecisionEngine:
    """Store + model + config; `decide` is the whole online path for one event."""

    def __init__(
        self,
        settings: Settings,
        model: FraudModel | None,
        store: FeatureStore,
        config: DecisionConfig,
        model_status: str = "",
    ) -> None:
        self.settings = settings
        self.model = model  # None: no champion yet, decisions are rules-only
        self.model_status = model_status or (
            f"model v{model.version}" if model is not None else "rules only, no fraud model"
        )
        self.store = store
        self.config = config
        self.metrics = Metrics()
        self.lock = threading.Lock()

    def decide(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        ts = event["timestamp"]
        ts_us = int(ts.timestamp() * 1_000_000) if isinstance(ts, datetime) else int(ts)
        row = to_silver(event, self.settings.pii_hash_key)
        with self.lock:
            model = self.model
            # read and record in one atomic step: workers sharing Redis cannot both decide on
            # the same prior state of a card (the transaction is recorded whatever is decided)
            features = online_features(row, ts_us, self.store.snapshot_and_record(row, ts_us))
            columns = {
                name: np.array([np.nan if v is None else v], dtype=np.float64)
                for name, v in features.items()
            }
            for name in ("channel", "country", "merchant_id", "merchant_category"):
                columns[name] = np.array([row[name]], dtype=object)
            # transactions v2's 3DS result (None for a v1 event): R004 reads it
            columns["three_ds_status"] = np.array([row.get("three_ds_status")], dtype=object)
            scored = score_columns(model, self.config, columns, 1, explain_all=True)
        decision = str(scored.decision[0])
        elapsed = time.perf_counter() - started
        self.metrics.observe(decision, elapsed)
        return {
            "transaction_id": event["transaction_id"],
            "decision": decision,
            "score": round(float(scored.score[0]), 6),
            "reasons": scored.reasons[0],
            "rule_ids": scored.rule_ids[0],
            "anomaly_score": round(float(scored.anomaly_score[0]), 6),
            "model_version": RULES_ONLY if model is None else model.version,
            "config_version": self.config.version,
            "latency_ms": round(elapsed * 1000, 3),
        }

    @property
    def model_version(self) -> str:
        return RULES_ONLY if self.model is None else self.model.version

    def reload_if_moved(self) -> bool:
        from mlflow import MlflowClient

        from fraud.training import MODEL_NAME, load_registered
        from lakehouse.registry import champion_version

        version = champion_version(MlflowClient(), MODEL_NAME)
        if version is None or str(version) == self.model_version:
            return False
        model = load_registered(self.settings, version)
        with self.lock:
            self.model = model
            self.model_status = f"champion {MODEL_NAME} v{version} (reloaded)"
        self.metrics.reloads += 1
        log.info("champion moved: now serving %s v%s", MODEL_NAME, version)
        return True


def create_app(
    engine: DecisionEngine,
    reload_seconds: float = 30.0,
    idle_exit_seconds: float = 0.0,
    on_idle: Callable[[], None] | None = None,
) -> Any:
    """The FastAPI app. With `idle_exit_seconds` > 0, `on_idle` is called (the server stops,
    its background registry watcher with it) after that long without any request."""
    from fastapi import FastAPI, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    requests_seen = [0]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        tasks = []
        if reload_seconds > 0:
            tasks.append(asyncio.create_task(_watch_registry(engine, reload_seconds)))
        if idle_exit_seconds > 0 and on_idle is not None:
            watch = IdleWatch(idle_exit_seconds, lambda: requests_seen[0], sample_every_s=0.5)
            tasks.append(asyncio.create_task(_exit_when_idle(watch, on_idle)))
        yield
        for task in tasks:
            task.cancel()
        engine.store.close()

    app = FastAPI(title="lakehouse fraud decisions", version="1", lifespan=lifespan)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Any:
        requests_seen[0] += 1  # activity for the idle exit
        return await call_next(request)

    tokens = TokenCheck(engine.settings, "fraud_decisions")

    if tokens.enabled:  # every request carries a token once tokens are configured

        @app.middleware("http")
        async def authenticate(request: Request, call_next: Any) -> Any:
            try:
                tokens.caller(request.headers.get("authorization"))
            except AuthError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
                return JSONResponse(
                    status_code=exc.status, content={"detail": exc.reason}, headers=headers
                )
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        engine.metrics.invalid += 1
        reasons = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": reasons})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 400:  # FastAPI could not parse the body at all (nested too deep)
            engine.metrics.invalid += 1
            return JSONResponse(
                status_code=422,
                content={"detail": [f"body: {exc.detail} (undecodable or too deeply nested JSON)"]},
            )
        return await http_exception_handler(request, exc)

    @app.post("/v1/decisions")
    def decisions(tx: TransactionIn) -> dict[str, Any]:
        return engine.decide(tx.model_dump())

    @app.post("/v1/labels")
    def labels(label: LabelIn) -> dict[str, Any]:
        with engine.lock:
            engine.store.record_label(
                label.transaction_id, label.is_fraud, int(label.reported_at.timestamp() * 1e6)
            )
        return {"recorded": True}

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_version": engine.model_version,
            "model_status": engine.model_status,  # why rules-only, or which champion
            "config_version": engine.config.version,
            "store": "memory" if isinstance(engine.store, InMemoryStore) else "redis",
        }

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        store = "memory" if isinstance(engine.store, InMemoryStore) else "redis"
        return PlainTextResponse(
            engine.metrics.render(engine.model_version, store),
            media_type="text/plain; version=0.0.4",
        )

    return app


async def _exit_when_idle(watch: IdleWatch, on_idle: Callable[[], None]) -> None:
    while not watch.expired():
        await asyncio.sleep(min(1.0, watch.timeout_s / 4))
    # the configured limit, not the measured idle time: a busy machine wakes the watch late
    print(f"no request for {watch.timeout_s:g} s (LAKEHOUSE_IDLE_EXIT_SECONDS): exiting")
    on_idle()


async def _watch_registry(engine: DecisionEngine, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(engine.reload_if_moved)
        except Exception as exc:  # registry briefly unavailable: keep serving the current model
            log.warning("champion check failed: %s", exc)


def build_engine(
    settings: Settings,
    say: Callable[[str], object] = print,
    warm: bool = False,
) -> DecisionEngine:
    from fraud.training import configure_registry

    configure_registry(settings)
    champion: Champion = resolve_champion(settings, say)
    store = open_store(settings.redis_url, settings.redis_prefix)
    if warm:
        started = time.monotonic()
        loaded = warm_store(settings, store)
        say(
            f"feature store loaded from {loaded:,} silver transactions "
            f"in {time.monotonic() - started:.1f}s"
        )
    return DecisionEngine(settings, champion.model, store, load_config(), champion.status)


def warm_store(settings: Settings, store: FeatureStore) -> int:
    """Empty the store, then load it with the state the whole of silver_transactions and
    silver_fraud_labels leave (the same values a replay would give, column-wise)."""
    from fraud.store import state_from_history
    from fraud.training import load_lake_history

    tx, labels = load_lake_history(settings)
    store.clear()
    if tx.height:
        store.load(state_from_history(tx, labels))
    return tx.height


def check_port_free(host: str, port: int) -> None:
    """Bind (host, port) as uvicorn will, before any model is loaded or trained: a port in use
    is a one-line ConfigError naming the fix, not a traceback after a minute of work."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): stop what uses the port "
            "or choose another with `lakehouse fraud serve --port P`"
        ) from None


def serve(
    settings: Settings,
    host: str,
    port: int,
    reload_seconds: float,
    warm: bool,
    exit_when_idle: bool = False,
    workers: int = 1,
) -> None:
    import uvicorn

    if workers > 1 and not settings.redis_url:
        raise ConfigError(
            f"--workers {workers} needs the Redis feature store the workers share: set "
            "LAKEHOUSE_REDIS_URL=redis://host:port/db, or serve with --workers 1"
        )
    if exit_when_idle and not settings.idle_exit_seconds:
        raise ConfigError(
            "--exit-when-idle needs LAKEHOUSE_IDLE_EXIT_SECONDS: set it to the idle time in "
            "seconds after which the service stops"
        )

    require_tokens_to_bind(settings, host, "the fraud decision service")
    check_port_free(host, port)
    # once, before any worker starts: a first champion trained on the lake, the warm store
    engine = build_engine(settings, warm=warm)
    store = "redis" if settings.redis_url else "in-process"
    print(
        f"fraud decision service on {http_url(host, port)} ({engine.model_status}, store {store}"
        f"{f', {workers} workers' if workers > 1 else ''}); POST /v1/decisions"
    )
    idle = settings.idle_exit_seconds if exit_when_idle else 0
    if workers > 1:
        engine.store.close()
        del engine  # each worker loads its own
        status = serve_workers(settings, host, port, workers, reload_seconds, idle)
        if status:
            raise SystemExit(status)
        return
    server: Any = None

    def stop() -> None:
        server.should_exit = True

    app = create_app(engine, reload_seconds, idle, stop)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    server.run()


def serve_workers(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    reload_seconds: float,
    idle_exit_seconds: float,
    stop_timeout: float = 30.0,
) -> int:
    """Pre-fork: this process binds the socket, then starts `workers` processes that accept on
    it (the kernel spreads connections over them), each with its own engine and uvicorn
    server on the shared Redis store. SIGTERM or SIGINT stops every worker gracefully
    (in-flight requests finish); a worker that stops when idle is not replaced, the service
    ends with the last one; a worker that fails stops the others. Returns the exit status
    (stopped by SIGTERM, the process ends by that signal once every worker has, as uvicorn
    does for one)."""
    import multiprocessing
    import signal
    import socket
    from multiprocessing.connection import wait

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    # spawn, not fork: each worker starts a clean interpreter (no thread pools of numpy,
    # Polars or LightGBM copied mid-state); the socket travels as a duplicated descriptor
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(
            target=_run_worker,
            args=(settings, sock, reload_seconds, idle_exit_seconds),
            name=f"fraud-worker-{i}",
        )
        for i in range(workers)
    ]
    stopping: list[int] = []  # the signal that stops the service (0: a worker failed)

    def stop_all(sig: int = 0, _frame: object = None) -> None:
        stopping.append(sig)
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)  # type: ignore[arg-type]

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for proc in procs:
            proc.start()
        sock.close()  # the workers hold it
        running = {proc.sentinel: proc for proc in procs}
        while running:
            for sentinel in wait(list(running), timeout=1.0):
                proc = running.pop(sentinel)  # type: ignore[call-overload]
                proc.join()
                if proc.exitcode and not stopping:
                    print(f"{proc.name} (pid {proc.pid}) failed with status {proc.exitcode}")
                    status = 1
                    stop_all()
        return status
    finally:
        for proc in (p for p in procs if p.pid is not None):  # started
            proc.join(stop_timeout)
            if proc.is_alive():
                proc.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopping and stopping[0] == signal.SIGTERM:  # as uvicorn does, once drained
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)


def _run_worker(
    settings: Settings, sock: Any, reload_seconds: float, idle_exit_seconds: float
) -> None:
    """One worker of `serve_workers`: its engine (champion, Redis store) and uvicorn server
    on the inherited socket; the idle exit and the registry watcher are its own."""
    import uvicorn

    _stop_with_parent()
    engine = build_engine(settings, say=log.info)
    server: Any = None

    def stop() -> None:
        server.should_exit = True

    app = create_app(engine, reload_seconds, idle_exit_seconds, stop)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


def _stop_with_parent() -> None:
    """Linux: receive SIGTERM when the supervising process dies (even by SIGKILL), so that no
    worker outlives the service."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
