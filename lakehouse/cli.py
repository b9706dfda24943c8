"""`lakehouse` command line. Heavy libraries are imported inside the commands that need them."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Streaming lakehouse: Kafka → raw/silver Delta → dbt gold, orchestrated by Dagster.",
)
broker_app = typer.Typer(no_args_is_help=True, help="The embedded Kafka-protocol broker (tansu).")
generate_app = typer.Typer(no_args_is_help=True, help="Produce realistic events to Kafka.")
app.add_typer(broker_app, name="broker")
app.add_typer(generate_app, name="generate")


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
    from ingestion.broker import EmbeddedBroker

    settings = _settings()
    broker = EmbeddedBroker(settings)
    started = broker.start()
    created = broker.ensure_topics()
    print(("started " if started else "already running: ") + broker.status().describe())
    if created:
        print(f"created topics {', '.join(created)} ({settings.topic_partitions} partitions each)")


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
) -> None:
    """Materialize assets through Dagster (default: the whole graph up to the current offsets)."""
    from lakehouse.runner import materialize_selection

    settings = _settings()
    _bootstrap(settings)
    print(materialize_selection(settings, selection))


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(ctx: typer.Context) -> None:
    """Run dbt in the project's dbt/ folder with the lakehouse's settings (e.g. `docs generate`)."""
    from lake.gold import run_dbt

    result = run_dbt(_settings(), list(ctx.args))
    print(getattr(result, "stdout", "") or "")


@app.command("ui")
def ui(port: Annotated[int, typer.Option(help="web UI port")] = 3000) -> None:
    """Start the Dagster UI and daemon (sensors, schedules) on 127.0.0.1."""
    from lake.gold import MANIFEST_PATH, prepare_manifest
    from lakehouse.instance import ensure_dagster_home

    settings = _settings()
    ensure_dagster_home(settings)
    if not MANIFEST_PATH.exists():
        prepare_manifest(settings)
    _bootstrap(settings)
    dagster = Path(sys.executable).absolute().parent / "dagster"
    root = Path(__file__).resolve().parent.parent
    print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={settings.dagster_home})")
    os.chdir(root)
    os.execv(
        str(dagster),
        [str(dagster), "dev", "-w", str(root / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ingestion").setLevel(logging.INFO)
    logging.getLogger("lake").setLevel(logging.INFO)
    logging.getLogger("lakehouse").setLevel(logging.INFO)
    try:
        app()
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
