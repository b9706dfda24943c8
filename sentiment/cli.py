"""`lakehouse sentiment …`: classify stdin, train/evaluate the head, generate posts with a crisis."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Social-media sentiment: classify, train, evaluate.")


def _settings():  # type: ignore[no-untyped-def]
    from lakehouse.config import Settings

    return Settings.from_env()


def _encoder(value: str | None) -> str:
    from lakehouse.errors import ConfigError

    encoder = value or _settings().sentiment_encoder
    if encoder not in ("static", "transformer"):
        raise ConfigError(f"--encoder {encoder!r} is invalid: use static or transformer")
    return encoder


EncoderOpt = Annotated[
    str | None,
    typer.Option(
        help="static (distilled MiniLM) or transformer; default LAKEHOUSE_SENTIMENT_ENCODER"
    ),
]


@app.command("classify")
def classify(
    encoder: EncoderOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="lines classified per batch")] = 512,
) -> None:
    """Read posts on stdin (one per line, or JSONL with a `text` field) and print one JSON
    object per line: text, label, confidence, lang, aspects, keyphrases."""
    import json
    import sys

    from lakehouse.errors import ConfigError

    chosen = _encoder(encoder)
    settings = _settings()
    pending: list[str] = []

    def flush() -> None:
        from sentiment.aspects import extract
        from sentiment.classifier import ensure_head
        from sentiment.preprocess import detect_languages

        langs = detect_languages(pending, settings.sentiment_brands)
        model_langs = [lang if lang in ("fr", "en") else "en" for lang in langs]
        head = ensure_head(settings.models_dir, chosen)  # type: ignore[arg-type]
        labels, confidence, vectors = head.predict_with_embeddings(
            pending, model_langs, settings.models_dir
        )
        reuse = vectors if chosen == "static" else None  # aspects work in the static space
        found = extract(pending, model_langs, settings.models_dir, doc_vectors=reuse)
        for text, lang, label, conf, aspects in zip(
            pending, langs, labels, confidence, found, strict=True
        ):
            record = {
                "text": text,
                "label": label,
                "confidence": round(float(conf), 4),
                "lang": lang,
                "aspects": aspects.aspects,
                "keyphrases": aspects.keyphrases,
            }
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        pending.clear()

    for number, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        text = line
        if line.lstrip().startswith("{"):
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(
                    f"stdin line {number} is not JSON with a `text` field: give plain text "
                    'lines or JSONL objects like {"text": "..."}'
                ) from None
            if not isinstance(text, str):
                raise ConfigError(f"stdin line {number}: `text` must be a string")
        pending.append(text)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()


@app.command("prepare")
def prepare() -> None:
    """Build the distilled embedding table into the environment (`make venv` runs this), so
    the first `classify` or sentiment run on any LAKEHOUSE_HOME starts at once."""
    from sentiment.embedding import PREBUILT_TABLE, build_static_table

    if PREBUILT_TABLE.exists():
        print(f"sentiment embedding table ready: {PREBUILT_TABLE}")
        return
    build_static_table(PREBUILT_TABLE)
    print(f"sentiment embedding table built: {PREBUILT_TABLE}")


@app.command("train")
def train(encoder: EncoderOpt = None) -> None:
    """Train a head on the shipped data (sentiment/data) with its confidence temperature,
    register it in MLflow, serve it (LAKEHOUSE_HOME/models) only if its held-out macro-F1
    beats the champion's, and print the held-out evaluation and calibration."""
    from sentiment.classifier import evaluate
    from sentiment.model_registry import train_and_register

    chosen = _encoder(encoder)
    settings = _settings()
    registration = train_and_register(settings, chosen)
    print(registration.promotion.describe())
    print("served" if registration.served else "not served: the champion stays in use")
    for report in registration.calibration:
        print(report.table())
    for evaluation in evaluate(settings.models_dir, (chosen,)):  # type: ignore[arg-type]
        print(evaluation.table())


@app.command("evaluate")
def evaluate_cmd(
    encoder: Annotated[
        list[str] | None, typer.Option("--encoder", help="encoders to evaluate (repeatable)")
    ] = None,
) -> None:
    """Held-out evaluation per language: macro-F1, per-class precision/recall, confusion
    matrix, for the model head(s) and the lexicon baseline; plus aspect accuracy."""
    from sentiment import aspects, datasets
    from sentiment.classifier import evaluate

    settings = _settings()
    chosen = tuple(_encoder(e) for e in (encoder or [None]))  # type: ignore[list-item]
    for evaluation in evaluate(settings.models_dir, chosen):  # type: ignore[arg-type]
        print(evaluation.table())
    for lang in ("fr", "en"):
        held_out = datasets.evaluation_set(lang)
        scores = aspects.evaluate(
            held_out.texts, held_out.langs, held_out.aspects, settings.models_dir
        )
        print(
            f"aspects [{lang}] n={int(scores['n'])} accuracy={scores['accuracy']:.3f} "
            f"macro-F1={scores['macro_f1']:.3f}"
        )


@app.command("generate")
def generate(
    minutes: Annotated[float, typer.Option(min=0.01, help="simulated minutes of posts")] = 60,
    speed: Annotated[
        float,
        typer.Option(min=0.0, help="simulated minutes per real minute (0 = as fast as possible)"),
    ] = 0,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    scale: Annotated[float, typer.Option(min=0.001, help="rate multiplier (1 = 10-50/min)")] = 1.0,
    crisis_at: Annotated[
        float | None,
        typer.Option(help="inject a crisis this many simulated minutes after the start"),
    ] = None,
    crisis_minutes: Annotated[float, typer.Option(min=1, help="crisis length")] = 30,
    crisis_aspect: Annotated[str, typer.Option(help="aspect of the crisis")] = "delivery",
    truth_file: Annotated[
        str | None, typer.Option(help="write the ground truth (JSONL) here, for evaluation only")
    ] = None,
) -> None:
    """Produce social posts to `social_raw`, optionally with a crisis (for the alert path)."""
    import json
    from datetime import UTC, datetime, timedelta

    from ingestion import kafka_client
    from ingestion.broker import ensure_running
    from ingestion.generators.live import paced
    from lakehouse.errors import ConfigError
    from sentiment.generator import ASPECTS, Crisis, generate_social, timed, window

    if crisis_aspect not in ASPECTS:
        raise ConfigError(f"--crisis-aspect {crisis_aspect!r}: use one of {', '.join(ASPECTS)}")
    if speed > 0:  # live: from now on
        start, end = window(minutes)
    else:  # history: the window ending now
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(minutes=minutes)
    crisis = (
        Crisis(start + timedelta(minutes=crisis_at), crisis_minutes, crisis_aspect)
        if crisis_at is not None
        else None
    )
    stream = generate_social(start, end, seed, scale, crisis)
    bootstrap = ensure_running(_settings())
    if speed > 0:
        sent = kafka_client.produce_records(bootstrap, paced(timed(stream), start, speed))
    else:
        sent = {"social_raw": kafka_client.produce(bootstrap, "social_raw", stream.messages())}
    if truth_file:
        with open(truth_file, "w", encoding="utf-8") as out:
            for row in stream.truth:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"sent {sent.get('social_raw', 0)} posts to social_raw on {bootstrap}")
