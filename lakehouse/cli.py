"""`lakehouse` command line. Heavy libraries are imported inside the commands that need them."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from forecasting.cli import rop as rop_command
from forecasting.cli import supply_app
from fraud.cli import fraud_app
from governance.cli import register as register_governance
from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.net import http_url
from sentiment.cli import app as _sentiment_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Streaming lakehouse: Kafka → raw/silver Delta → dbt gold, orchestrated by Dagster.",
)
broker_app = typer.Typer(no_args_is_help=True, help="The embedded Kafka-protocol broker (tansu).")
app.add_typer(broker_app, name="broker")
app.add_typer(fraud_app, name="fraud")
app.add_typer(_sentiment_app, name="sentiment")
app.command("rop")(rop_command)
app.add_typer(supply_app, name="supply")
register_governance(app)  # privacy, query --role, audit, token


def _settings() -> Settings:
    return Settings.from_env()


def _bootstrap(settings: Settings, start: bool = True) -> str:
    from ingestion.broker import ensure_running

    if start:
        return ensure_running(settings)
    return settings.bootstrap


# ---- broker ------------------------------------------------------------------------------
@broker_app.command("start")
def broker_start() -> None:
    """Start the embedded broker on 127.0.0.1 and create the project's topics."""
    from ingestion.broker import EmbeddedBroker, open_fresh_epochs

    settings = _settings()
    broker = EmbeddedBroker(settings)
    started = broker.start()
    created = broker.ensure_topics()
    print(("started " if started else "already running: ") + broker.status().describe())
    if created:
        print(f"created topics {', '.join(created)} ({settings.topic_partitions} partitions each)")
    if started:
        for topic, epoch in open_fresh_epochs(settings, broker.bootstrap).items():
            print(f"{topic}: the lake holds offsets of an earlier broker: new epoch {epoch}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker (its memory storage is lost; the lake keeps what was ingested)."""
    from ingestion.broker import EmbeddedBroker

    broker = EmbeddedBroker(_settings())
    print("stopped embedded broker" if broker.stop() else "embedded broker was not running")


@broker_app.command("status")
def broker_status() -> None:
    """Say whether the embedded broker runs, where, and where its log is."""
    from ingestion.broker import EmbeddedBroker

    status = EmbeddedBroker(_settings()).status()
    print(status.describe())
    raise typer.Exit(0 if status.running else 1)


# ---- generators ----------------------------------------------------------------------------
SeedOpt = Annotated[int, typer.Option(help="random seed: same seed and window, same events")]
ScaleOpt = Annotated[
    float, typer.Option(min=0.0001, help="rate multiplier (1 = Annex B: 50-200 orders/min)")
]
SUPPLY_DEFAULT_SCALE = 0.01  # daily-aggregate history: A123 in Paris sells ~400 units/day


class GenerateKind(StrEnum):
    """What `lakehouse generate` produces: orders come with the sessions they came from."""

    orders = "orders"
    inventory = "inventory"
    transactions = "transactions"
    all = "all"
    supply = "supply"
    social = "social"


GENERATED = {
    GenerateKind.orders: ("orders", "sessions"),
    GenerateKind.inventory: ("inventory",),
    GenerateKind.transactions: ("transactions", "fraud_labels"),
    GenerateKind.all: ("orders", "sessions", "inventory"),
    GenerateKind.supply: (
        "orders",
        "inventory",
        "purchase_orders",
        "receipts",
        "shipments",
        "shipment_readings",
        "weather",
    ),
    GenerateKind.social: ("social_raw",),
}


@app.command("generate")
def generate(
    kind: Annotated[
        GenerateKind,
        typer.Argument(
            help="orders (+ sessions; Annex B: 5 cities, 20 SKUs, 50-200/min), inventory "
            "(initial stock, then 5-minute updates consistent with the same orders), "
            "transactions (+ fraud_labels: card payments with labelled fraud scenarios, "
            "chargebacks days later; 20 payments/min at scale 1), all (retail topics), "
            "social (social_raw posts, Annex B: 10-50/min, 20% negative; crisis injection: "
            "`lakehouse sentiment generate`), or "
            "supply (history only: daily-aggregate orders, stock snapshots, purchase orders, "
            "receipts, shipments, readings, weather; default --scale 0.01)"
        ),
    ],
    minutes: Annotated[
        float | None, typer.Option(min=0.01, help="live: simulated minutes of traffic from now")
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.01, help="live: simulated minutes per real minute")
    ] = 1.0,
    seed: SeedOpt = 42,
    scale: Annotated[
        float | None,
        typer.Option(
            min=0.0001,
            help="rate multiplier (1 = Annex B: 50-200 orders/min; default 1, supply 0.01)",
        ),
    ] = None,
    backfill_days: Annotated[
        float | None,
        typer.Option(min=0.01, help="history: days ending now, sent as fast as possible"),
    ] = None,
    fraud_rate: Annotated[
        float, typer.Option(min=0.002, max=0.02, help="transactions: share of fraudulent payments")
    ] = 0.01,
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle",
            help="live: stop once the lake consumed nothing of these topics for "
            "LAKEHOUSE_IDLE_EXIT_SECONDS (nobody reads the traffic)",
        ),
    ] = False,
) -> None:
    """Produce realistic events to Kafka: live (--minutes, --speed) or history (--backfill-days)."""
    from lakehouse.generate import backfill, backfill_supply, live

    if (minutes is None) == (backfill_days is None):
        raise ConfigError("give exactly one of --minutes (live) or --backfill-days (history)")
    if kind is GenerateKind.supply and backfill_days is None:
        raise ConfigError("supply is a history generator: use --backfill-days (e.g. 730)")
    topics = GENERATED[kind]
    bootstrap = _bootstrap(_settings())
    if kind is GenerateKind.social:
        from sentiment.generator import produce_social

        if backfill_days is not None:
            sent = produce_social(bootstrap, backfill_days * 24 * 60, None, seed, scale or 1.0)
        else:
            print(f"sending {minutes} simulated minutes at speed x{speed} (Ctrl-C stops)")
            sent = produce_social(bootstrap, minutes or 0, speed, seed, scale or 1.0)
    elif kind is GenerateKind.supply:
        sent = backfill_supply(bootstrap, backfill_days or 0, seed, scale or SUPPLY_DEFAULT_SCALE)
    elif backfill_days is not None:
        sent = backfill(bootstrap, backfill_days, seed, scale or 1.0, topics, fraud_rate=fraud_rate)
    else:
        print(f"sending {minutes} simulated minutes at speed x{speed} (Ctrl-C stops)")
        watch = _idle_watch(topics) if exit_when_idle else None
        sent = live(
            bootstrap,
            minutes or 0,
            speed,
            seed,
            scale or 1.0,
            topics,
            fraud_rate=fraud_rate,
            stop_when=watch.expired if watch else None,
        )
        if watch is not None and watch.expired():
            print(
                f"stopped: the lake consumed nothing of {', '.join(topics)} for "
                f"{watch.timeout_s:g} s (LAKEHOUSE_IDLE_EXIT_SECONDS)"
            )
    print("sent " + ", ".join(f"{n} {t}" for t, n in sent.items()) + f" to {bootstrap}")
    print("next: `lakehouse materialize` (or `make ui` and let the sensors pick them up)")


def _idle_watch(topics: tuple[str, ...]) -> Any:
    from monitoring.idle import IdleWatch, lake_progress

    settings = _settings()
    if not settings.idle_exit_seconds:
        raise ConfigError(
            "--exit-when-idle needs LAKEHOUSE_IDLE_EXIT_SECONDS: set it to the idle time in "
            "seconds after which to stop"
        )
    return IdleWatch(
        settings.idle_exit_seconds, lambda: lake_progress(settings, topics), sample_every_s=2.0
    )


# ---- producing -----------------------------------------------------------------------------
@app.command("produce")
def produce(
    topic: Annotated[str, typer.Argument(help="target topic, e.g. orders")],
    file: Annotated[Path, typer.Argument(help="JSONL file: one event per line")],
) -> None:
    """Send any JSONL file to a topic, unchanged (malformed lines land in the dead-letter table)."""
    from ingestion import kafka_client
    from ingestion.contracts import contract
    from ingestion.produce_file import read_jsonl_messages

    contract(topic)
    bootstrap = _bootstrap(_settings())
    sent = kafka_client.produce(bootstrap, topic, read_jsonl_messages(topic, file), 100_000)
    print(f"sent {sent} events from {file} to {topic} on {bootstrap}")
    print("next: `lakehouse ingest --topic " + topic + "` or `lakehouse materialize`")


# ---- ingestion ---------------------------------------------------------------------------
@app.command("ingest")
def ingest(
    topic: Annotated[
        list[str] | None, typer.Option("--topic", "-t", help="topic(s); default all")
    ] = None,
    max_records: Annotated[int | None, typer.Option(min=1, help="cap on records read")] = None,
    new_epoch: Annotated[
        bool,
        typer.Option(
            "--new-epoch",
            help="the broker lost its log (restart): record a new epoch and read its log from 0",
        ),
    ] = False,
) -> None:
    """Run one exactly-once micro-batch per topic from Kafka into raw Delta."""
    from ingestion.broker import TOPICS
    from ingestion.contracts import contract
    from ingestion.raw import ingest_batch, start_new_epoch

    settings = _settings()
    topics = topic or list(TOPICS)
    for name in topics:
        contract(name)
    bootstrap = _bootstrap(settings)
    for name in topics:
        if new_epoch:
            epoch = start_new_epoch(settings, name, bootstrap, "requested with --new-epoch")
            print(f"{name}: new epoch {epoch} recorded in raw_{name}")
        print(ingest_batch(settings, name, bootstrap, max_records=max_records).summary())
    print(f"raw tables under {settings.table_uri('raw', '')}")


@app.command("materialize")
def materialize(
    selection: Annotated[
        str | None,
        typer.Argument(help="Dagster asset selection, e.g. 'key:raw_orders+' or 'group:gold'"),
    ] = None,
    until_caught_up: Annotated[
        bool,
        typer.Option(
            "--until-caught-up",
            help="run again while a micro-batch stopped at the batch cap with records left",
        ),
    ] = False,
) -> None:
    """Materialize assets through Dagster (default: the whole streaming graph up to the current
    offsets; nightly assets such as the supply-chain forecasts only when selected)."""
    from lakehouse.runner import materialize_selection, materialize_until_caught_up

    settings = _settings()
    _bootstrap(settings)
    if not until_caught_up:
        print(materialize_selection(settings, selection))
        return
    for n, outcome in enumerate(materialize_until_caught_up(settings, selection), start=1):
        print(f"[{n}] {outcome.text}", flush=True)
    print("caught up: every topic's micro-batch reached the high-water marks it saw")


@app.command("demo")
def demo(
    history_days: Annotated[float, typer.Option(min=0.01, help="days of history")] = 60,
    history_scale: Annotated[
        float, typer.Option(min=0.0001, help="history rate as a fraction of Annex B's")
    ] = 0.006,
    live_minutes: Annotated[float, typer.Option(min=0.1, help="simulated live minutes")] = 60,
    live_speed: Annotated[float, typer.Option(min=0.1, help="live acceleration")] = 60,
    seed: SeedOpt = 42,
    keep_broker: Annotated[bool, typer.Option(help="leave the embedded broker running")] = False,
    use_cases: Annotated[
        bool,
        typer.Option(
            "--use-cases/--retail-only",
            help="also run fraud decisions, social sentiment and the nightly supply-chain job",
        ),
    ] = True,
) -> None:
    """End-to-end demo: broker, history, a live minute, Dagster raw → silver → gold, summary."""
    from lakehouse.demo import DemoOptions, run_demo

    run_demo(
        _settings(),
        DemoOptions(
            history_days, history_scale, live_minutes, live_speed, seed, keep_broker, use_cases
        ),
    )


@app.command("summary")
def summary() -> None:
    """Rows per table, dead letters, top SKUs and lowest stock cover, from the lake and gold."""
    from lakehouse.demo import print_summary

    print_summary(_settings())


@app.command("alerts")
def alerts(
    all_events: Annotated[
        bool, typer.Option("--all", help="every stored event, not only the open alerts")
    ] = False,
) -> None:
    """Operational alerts still open (freshness, null rates, orphan files, failed runs and
    checks), oldest first; docs/operations.md gives the fix of each kind."""
    from monitoring.alerts import KINDS, open_alerts
    from monitoring.delivery import stored_alerts

    settings = _settings()
    if all_events:
        rows = [r for r in stored_alerts(settings).to_pylist() if r["event_action"]]
        rows.sort(key=lambda r: r["created_at"])
    else:
        rows = open_alerts(settings)
    if not rows:
        print("no open operational alert" if not all_events else "no operational alert stored")
        return
    for r in rows:
        action = f"{r['event_action']:<8} " if all_events else ""
        print(f"{r['created_at']:%Y-%m-%d %H:%M:%S} {action}{r['kind']}: {r['summary']}")
    if not all_events:
        print(
            f"{len(rows)} open ({', '.join(k for k in KINDS if any(r['kind'] == k for r in rows))}); "
            "the fix of each kind: docs/operations.md"
        )


lake_app = typer.Typer(no_args_is_help=True, help="Delta table maintenance.")
app.add_typer(lake_app, name="lake")


@lake_app.command("maintain")
def lake_maintain(
    table: Annotated[
        list[str] | None, typer.Option(help="a table by its path under the lake: raw/orders")
    ] = None,
    vacuum: Annotated[bool, typer.Option(help="delete files older versions no longer need")] = True,
) -> None:
    """OPTIMIZE (compaction; z-order on the hot tables), checkpoint and VACUUM every Delta
    table; prints files and bytes before/after. Safe while ingestion and silver run."""
    from lake.maintenance import maintain_lake

    settings = _settings()
    report = maintain_lake(settings, table or None, print, vacuum=vacuum)
    print(
        f"maintenance done: {report.summary()}; VACUUM keeps "
        f"{settings.maintenance_retention_hours} h of versions "
        "(LAKEHOUSE_MAINTENANCE_RETENTION_HOURS)"
    )
    if any(t.error for t in report.tables):
        raise typer.Exit(1)


contracts_app = typer.Typer(
    no_args_is_help=True, help="Data contracts: topics' schemas, gold models."
)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("check")
def contracts_check() -> None:
    """Refuse schema versions that break their topic's compatibility mode, and gold models
    without an enforced contract or the owner lakehouse/ownership.py names (one line each)."""
    from ingestion.contracts import CONTRACTS
    from ingestion.registry import check_contracts
    from lake.gold import gold_contract_violations, prepare_manifest

    violations = check_contracts()
    violations += gold_contract_violations(prepare_manifest(_settings()))
    for line in violations:
        print(line)
    if violations:
        print(
            f"{len(violations)} contract violation(s): make the new version compatible, or "
            "publish the change as a new topic (docs/operations.md, 'Upgrading a contract')"
        )
        raise typer.Exit(1)
    versions = sum(len(c.versions) for c in CONTRACTS.values())
    print(
        f"contracts ok: {len(CONTRACTS)} topics ({versions} schema versions) keep their "
        "compatibility mode; every gold model has an enforced contract and an owner"
    )


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(ctx: typer.Context) -> None:
    """Run dbt in the project's dbt/ folder with the lakehouse's settings (e.g. `docs generate`)."""
    from lake.gold import run_dbt

    result = run_dbt(_settings(), list(ctx.args))
    print(getattr(result, "stdout", "") or "")


# ---- BI (Superset) ---------------------------------------------------------------------------
bi_app = typer.Typer(
    no_args_is_help=True, help="Apache Superset over gold: dashboards as code in bi/ (make bi)."
)
app.add_typer(bi_app, name="bi")


def _say(line: str) -> None:
    print(f"    {line}", flush=True)


@bi_app.command("up")
def bi_up(
    host: Annotated[
        str | None,
        typer.Option(
            help="interface (default LAKEHOUSE_BI_HOST, 127.0.0.1); beyond loopback Superset "
            "is served through the token gateway (LAKEHOUSE_API_TOKENS, policy services.bi)"
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="connect the dashboards to this role's published gold (lakehouse privacy "
            "publish --role); through the gateway, only this role's tokens pass"
        ),
    ] = None,
) -> None:
    """Install Superset if missing (.venv-bi), provision the bundle in bi/, start it on
    127.0.0.1:LAKEHOUSE_BI_PORT (or behind the token gateway on --host) and print the URL,
    the login and the dashboards."""
    from lakehouse import bi

    report = bi.up(_settings(), _say, host=host, role=role)
    for line in report.lines():
        print(line)


@bi_app.command("down")
def bi_down() -> None:
    """Stop the Superset server `bi up` started for this LAKEHOUSE_HOME (nothing else)."""
    from lakehouse import bi

    print(
        "stopped Superset"
        if bi.down(_settings())
        else "Superset was not running (started by `bi up`)"
    )


@bi_app.command("status")
def bi_status() -> None:
    """Whether Superset runs for this LAKEHOUSE_HOME, where, and whether it is healthy."""
    from lakehouse import bi

    print(bi.status(_settings()).describe())


@bi_app.command("export")
def bi_export(
    folder: Annotated[
        Path | None, typer.Option(help="where to write the bundle (default: the repo's bi/)")
    ] = None,
) -> None:
    """Write the dashboards, charts, datasets and database as they are in Superset back into
    bi/ (normalised YAML): a UI edit becomes a diff to commit."""
    from lakehouse import bi

    written = bi.export_bundle(_settings(), folder or bi.BUNDLE_DIR)
    print(f"wrote {len(written)} files to {folder or bi.BUNDLE_DIR}")


@bi_app.command("check")
def bi_check(
    screenshots: Annotated[
        Path | None, typer.Option(help="save one PNG per dashboard in this folder")
    ] = None,
) -> None:
    """Open every dashboard in headless Chromium and check that every chart rendered with
    data; prints the time each dashboard took."""
    from lakehouse import bi_check as check

    results = check.check_dashboards(_settings(), screenshots)
    failed = [r for r in results if not r.ok]
    for result in results:
        print(result.line())
    if failed:
        raise LakehouseError(
            f"{len(failed)} dashboard(s) with a chart that did not render: "
            + "; ".join(r.problem() for r in failed)
        )


@app.command("ui")
def ui(
    port: Annotated[int, typer.Option(help="web UI port")] = 3000,
    host: Annotated[
        str,
        typer.Option(
            help="interface; beyond loopback the UI is served through the token gateway "
            "(LAKEHOUSE_API_TOKENS, roles of policy services.dagster_ui)"
        ),
    ] = "127.0.0.1",
) -> None:
    """Start the Dagster UI and daemon (sensors, schedules), on 127.0.0.1 by default."""
    from governance.tokens import is_loopback, require_tokens_to_bind
    from lake.gold import MANIFEST_PATH, prepare_manifest
    from lakehouse.instance import ensure_dagster_home

    settings = _settings()
    if not is_loopback(host):  # before any work: no tokens, no start
        require_tokens_to_bind(settings, host, "the Dagster UI")
    ensure_dagster_home(settings)
    if not MANIFEST_PATH.exists():
        prepare_manifest(settings)
    _bootstrap(settings)
    dagster = Path(sys.executable).absolute().parent / "dagster"
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    if is_loopback(host):
        print(f"Dagster UI on {http_url(host, port)} (DAGSTER_HOME={settings.dagster_home})")
        command = [str(dagster), "dev", "-w", str(root / "workspace.yaml")]
        os.execv(str(dagster), [*command, "-h", host, "-p", str(port)])
    _ui_behind_gateway(settings, dagster, root, host, port)


def _ui_behind_gateway(settings: Settings, dagster: Path, root: Path, host: str, port: int) -> None:
    """Dagster on a loopback port of its own, the token gateway on host:port in front of it."""
    import signal
    import socket
    import subprocess

    from governance.gateway import serve_gateway

    with socket.socket() as probe:  # a free loopback port for the UI itself
        probe.bind(("127.0.0.1", 0))
        inner = probe.getsockname()[1]
    command = [str(dagster), "dev", "-w", str(root / "workspace.yaml")]
    # same process group: a signal to `lakehouse ui`'s group (Ctrl-C, a supervisor) reaches it
    process = subprocess.Popen([*command, "-h", "127.0.0.1", "-p", str(inner)])
    print(
        f"Dagster UI on {http_url(host, port)} behind the token gateway (roles of policy "
        f"services.dagster_ui; the UI itself on 127.0.0.1:{inner}, DAGSTER_HOME="
        f"{settings.dagster_home})",
        flush=True,
    )
    try:
        serve_gateway(settings, "dagster_ui", host, port, f"http://127.0.0.1:{inner}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # dagster dev stops its webserver and daemon
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


prod_app = typer.Typer(
    no_args_is_help=True,
    help="The production Dagster instance: webserver + daemon on PostgreSQL (queued runs).",
)
app.add_typer(prod_app, name="prod")


@prod_app.command("up")
def prod_up(
    port: Annotated[int, typer.Option(help="web UI port")] = 3000,
    host: Annotated[str, typer.Option(help="web UI address")] = "127.0.0.1",
) -> None:
    """Start the Dagster webserver and daemon (sensors, schedules, the run queue) in the
    background on LAKEHOUSE_DAGSTER_POSTGRES_URL; returns once the UI answers."""
    from lake.gold import MANIFEST_PATH, prepare_manifest
    from lakehouse import prod

    settings = _settings()
    if not MANIFEST_PATH.exists():
        prepare_manifest(settings)
    _bootstrap(settings)
    url = prod.up(settings, host=host, port=port)
    print(f"Dagster webserver on {url} and daemon running (logs in {settings.home / 'prod'})")


@prod_app.command("down")
def prod_down() -> None:
    """Stop the webserver and daemon `lakehouse prod up` started."""
    from lakehouse import prod

    stopped = prod.down(_settings())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@prod_app.command("status")
def prod_status() -> None:
    """Say whether the webserver and the daemon are running (exit 1 if not both)."""
    from lakehouse import prod

    processes = prod.status(_settings())
    for process in processes:
        state = f"running (pid {process.pid})" if process.running else "stopped"
        print(f"{process.name}: {state}")
    raise typer.Exit(0 if all(p.running for p in processes) else 1)


@app.command("mlflow-ui")
def mlflow_ui(port: Annotated[int, typer.Option(help="web UI port")] = 5000) -> None:
    """Start the MLflow UI on the project's registry (fraud, forecasting, sentiment models)."""
    settings = _settings()
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow = Path(sys.executable).absolute().parent / "mlflow"
    print(f"MLflow UI on http://127.0.0.1:{port} (registry {settings.mlflow_tracking_uri})")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = ["ui", "--backend-store-uri", settings.mlflow_tracking_uri]
    os.execv(str(mlflow), [str(mlflow), *args, "--host", "127.0.0.1", "--port", str(port)])


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ingestion").setLevel(logging.INFO)
    logging.getLogger("lake").setLevel(logging.INFO)
    logging.getLogger("lakehouse").setLevel(logging.INFO)
    logging.getLogger("sentiment").setLevel(logging.INFO)
    try:
        app()
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
