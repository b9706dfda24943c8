"""`lakehouse fraud …`: train, report, serve. Heavy imports stay inside the commands."""

from __future__ import annotations

from typing import Annotated

import typer

fraud_app = typer.Typer(
    no_args_is_help=True,
    help="Card-fraud detection: train/evaluate/register the model, report, serve decisions.",
)

SourceOpt = Annotated[
    str,
    typer.Option(help="lake (silver_transactions + silver_fraud_labels) or simulated"),
]


def _history(source: str, days: float, scale: float, seed: int):
    from lakehouse.config import Settings
    from lakehouse.errors import ConfigError

    settings = Settings.from_env()
    if source == "simulated":
        from fraud.training import simulated_history

        tx, labels, as_of = simulated_history(settings, days, scale, seed)
        return settings, tx, labels, as_of
    if source != "lake":
        raise ConfigError(f"--source {source!r} is invalid: use lake or simulated")
    from fraud.training import lake_as_of, load_lake_history

    tx, labels = load_lake_history(settings)
    if tx.height == 0:
        raise ConfigError(
            "silver_transactions is empty: ingest transactions first (`lakehouse generate "
            "transactions --backfill-days 35 --scale 0.1` then `lakehouse materialize`), "
            "or use --source simulated"
        )
    return settings, tx, labels, lake_as_of(tx, labels)


ValDaysOpt = Annotated[
    float | None,
    typer.Option(min=0.5, help="validation window in days (default LAKEHOUSE_FRAUD_VAL_DAYS)"),
]
GapDaysOpt = Annotated[
    float | None,
    typer.Option(min=0, help="gap for the label delay in days (default LAKEHOUSE_FRAUD_GAP_DAYS)"),
]
MaturityDaysOpt = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="labels' maturity: validation ends this many days before as-of "
        "(default LAKEHOUSE_FRAUD_MATURITY_DAYS)",
    ),
]


def _options(settings, val_days: float | None, gap_days: float | None, maturity: float | None):
    """The configured label-delay windows, each overridable on the command line."""
    from dataclasses import replace

    from fraud.training import split_options

    options = split_options(settings)
    changes = {"val_days": val_days, "gap_days": gap_days, "maturity_days": maturity}
    return replace(options, **{k: v for k, v in changes.items() if v is not None})


def _as_of(text: str | None, default):
    """--as-of: an ISO date (midnight UTC) or date-time; the data's latest moment if unset."""
    from datetime import UTC, datetime

    from lakehouse.errors import ConfigError

    if text is None:
        return default
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is invalid: use a date (2026-11-02) or date-time (2026-11-02T12:00Z)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@fraud_app.command("train")
def train(
    source: SourceOpt = "lake",
    days: Annotated[float, typer.Option(min=1, help="simulated: days of history")] = 35,
    scale: Annotated[float, typer.Option(min=0.001, help="simulated: rate multiplier")] = 0.1,
    seed: Annotated[int, typer.Option(help="simulated: random seed")] = 42,
    val_days: ValDaysOpt = None,
    gap_days: GapDaysOpt = None,
    maturity_days: MaturityDaysOpt = None,
) -> None:
    """Train on the past, validate on a later window, register in MLflow, promote if better."""
    from fraud.training import train_and_register

    settings, tx, labels, as_of = _history(source, days, scale, seed)
    print(
        f"training on {tx.height} transactions, {labels.height} labels, as of {as_of:%Y-%m-%d %H:%M}"
    )
    result = train_and_register(
        settings, tx, labels, as_of, _options(settings, val_days, gap_days, maturity_days), source
    )
    print("split: " + ", ".join(f"{k}={v}" for k, v in result.split.bounds.items()))
    print(result.table())
    print(result.promotion)


@fraud_app.command("report")
def report(
    source: SourceOpt = "lake",
    days: Annotated[float, typer.Option(min=1, help="simulated: days of history")] = 35,
    scale: Annotated[float, typer.Option(min=0.001, help="simulated: rate multiplier")] = 0.1,
    seed: Annotated[int, typer.Option(help="simulated: random seed")] = 42,
    val_days: ValDaysOpt = None,
    gap_days: GapDaysOpt = None,
    maturity_days: MaturityDaysOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="report as of this date (labels known then; validation ends maturity days "
            "before it); default: the latest event or label in the data",
        ),
    ] = None,
) -> None:
    """Evaluate the champion against rules-only and IsolationForest-only on a validation
    window (AUC, AP, CP@100/day, recall@1%FPR, € prevented/blocked, friction)."""
    from fraud.rules import load_config
    from fraud.training import champion_model, evaluate_scorers, validation_frame
    from lakehouse.errors import ConfigError

    settings, tx, labels, latest = _history(source, days, scale, seed)
    champion = champion_model(settings)
    if champion is None:
        raise ConfigError("no champion in the registry: run `lakehouse fraud train` first")
    frame, bounds = validation_frame(
        tx,
        labels,
        _as_of(as_of, latest),
        _options(settings, val_days, gap_days, maturity_days),
    )
    frauds = int(frame["y"].sum())
    if frauds == 0:
        raise ConfigError(
            f"no fraud label known in the validation window {bounds['validate_from']} → "
            f"{bounds['validate_until']}: choose an earlier --as-of or a longer --maturity-days"
        )
    rows = evaluate_scorers(champion, load_config(), frame)
    rows[f"champion v{champion.version}"] = rows.pop("gbdt + rules (challenger)")
    from fraud.evaluation import format_table

    print(
        f"validation window {bounds['validate_from']} → {bounds['validate_until']} "
        f"({frame.height} transactions, {frauds} frauds known as of {bounds['as_of']})"
    )
    print(format_table(dict(sorted(rows.items(), key=lambda kv: not kv[0].startswith("champion")))))


@fraud_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    host: Annotated[str, typer.Option(help="interface")] = "127.0.0.1",
    reload_seconds: Annotated[
        float, typer.Option(min=0, help="how often to check whether the champion moved (0: never)")
    ] = 30,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--no-warm",
            help="load the feature store from silver first (history, windows, graph, labels)",
        ),
    ] = False,
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle",
            help="stop after LAKEHOUSE_IDLE_EXIT_SECONDS without any request",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes sharing the port and the Redis feature store "
            "(more than 1 needs LAKEHOUSE_REDIS_URL)",
        ),
    ] = 1,
) -> None:
    """Online decision service: POST /v1/decisions, /healthz, /metrics (FastAPI + uvicorn)."""
    from fraud.service import serve as run
    from lakehouse.config import Settings

    run(Settings.from_env(), host, port, reload_seconds, warm, exit_when_idle, workers)
