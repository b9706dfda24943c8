"""Sentiment benchmarks: classification throughput (2 threads), end-to-end latency, evaluation.

    .venv/bin/python bench/sentiment.py [--posts 8000] [--transformer-posts 1000] [--skip-latency]

1. Throughput on generated posts (fr/en, emojis, URLs), batched, torch limited to 2 threads:
   - peer: naive MiniLM (sentence-transformers defaults: max_seq_length 256, batch 32,
     every post encoded, no dedup);
   - transformer path: max_seq_length 64, batch 64, length-sorted, duplicates encoded once;
   - static path: the distilled token table (Model2Vec-style), no attention;
   each as embeddings only and as the full classification (features + head + aspects).
   Then the cold cache: in a fresh process (no in-process cache filled), the static path's
   full classification (`sentiment.pipeline.classify_posts`' calls) on posts generated with
   a seed and a period no other step uses, then the same posts again (warm), then other
   unseen posts in the now-warm process, and the held-out posts (written by hand, not by the
   generator's templates).
2. End-to-end latency on the embedded broker: posts produced on `social_raw` (a crisis
   burst) → sensor tick → `ingest_social_raw` run in-process → first row in
   social_sentiment, and → the crisis alert on a local HTTP receiver.
3. The evaluation table: model heads (static, transformer) vs lexicon baseline per language.

Models come from LAKEHOUSE_HOME/models (trained on first need if missing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _posts(n: int) -> tuple[list[str], list[str]]:
    from sentiment.generator import generate_social

    start = datetime(2026, 11, 2, tzinfo=UTC)
    stream = generate_social(start, start + timedelta(hours=max(1, n // 1500 + 1)), seed=11)
    organic = [(e["text"], t["lang"]) for e, t in zip(stream.events, stream.truth, strict=True)]
    organic = organic[:n]
    return [str(t) for t, _ in organic], [str(lang) for _, lang in organic]


def _rate(label: str, n: int, seconds: float) -> float:
    rate = n / seconds
    print(f"  {label:<58} {n:>6} posts {seconds:7.2f} s {rate:9.0f} posts/s")
    return rate


def throughput(models_dir: Path, n: int, n_transformer: int) -> None:
    import torch

    from sentiment import aspects
    from sentiment.classifier import ensure_head
    from sentiment.embedding import encode_transformer, sentence_model, static_model
    from sentiment.text import model_text

    torch.set_num_threads(2)
    texts, langs = _posts(n)
    model = sentence_model()
    static = static_model(models_dir)
    heads = {e: ensure_head(models_dir, e) for e in ("static", "transformer")}  # type: ignore[arg-type]
    print(
        f"\n## Throughput (torch threads: {torch.get_num_threads()}, {len(texts)} generated posts)"
    )
    sample = [model_text(t) for t in texts[:n_transformer]]
    unique = len(set(sample))
    print(f"  transformer sample: {len(sample)} posts, {unique} distinct after model_text")

    model.max_seq_length = 256
    started = time.perf_counter()
    model.encode(sample, batch_size=32, show_progress_bar=False)
    naive = _rate(
        "peer: naive MiniLM (seq 256, batch 32, no dedup)",
        len(sample),
        time.perf_counter() - started,
    )
    model.max_seq_length = 64
    started = time.perf_counter()
    encode_transformer(sample)
    _rate(
        "transformer: seq 64, batch 64, sorted, dedup (embedding)",
        len(sample),
        time.perf_counter() - started,
    )
    started = time.perf_counter()
    heads["transformer"].predict(texts[:n_transformer], langs[:n_transformer], models_dir)
    aspects.extract(texts[:n_transformer], langs[:n_transformer], models_dir)  # static space
    full_t = _rate(
        "transformer: full classification (+head, aspects)",
        len(sample),
        time.perf_counter() - started,
    )

    all_model_texts = [model_text(t) for t in texts]
    started = time.perf_counter()
    static.encode(all_model_texts)
    _rate("static (distilled): embedding", len(texts), time.perf_counter() - started)
    started = time.perf_counter()
    _, _, vectors = heads["static"].predict_with_embeddings(texts, langs, models_dir)
    aspects.extract(texts, langs, models_dir, doc_vectors=vectors)
    full_s = _rate(
        "static (distilled): full classification (+head, aspects)",
        len(texts),
        time.perf_counter() - started,
    )
    print(
        f"  speed-up vs naive peer: transformer {full_t / naive:.1f}x, static {full_s / naive:.1f}x (target 2,000 posts/s)"
    )


def _classify_static(models_dir: Path, texts: list[str], langs: list[str]) -> None:
    """What `classify_posts` does for the static encoder: head + aspects on its vectors."""
    from sentiment import aspects
    from sentiment.classifier import ensure_head

    head = ensure_head(models_dir, "static")
    _, _, vectors = head.predict_with_embeddings(texts, langs, models_dir)
    aspects.extract(texts, langs, models_dir, doc_vectors=vectors)


def _cold_cache_child(models_dir: str, n: int) -> list[tuple[str, int, float, float]]:
    """Runs in a spawned process: nothing cached in memory yet."""
    from datetime import UTC, datetime, timedelta

    from sentiment import datasets
    from sentiment.classifier import ensure_head
    from sentiment.embedding import static_model
    from sentiment.generator import generate_social

    folder = Path(models_dir)
    rows: list[tuple[str, int, float, float]] = []
    started, cpu = time.perf_counter(), time.process_time()
    ensure_head(folder, "static")
    static_model(folder)
    rows.append(
        (
            "load the head and the token table (once per process)",
            0,
            time.perf_counter() - started,
            time.process_time() - cpu,
        )
    )

    def posts(seed: int, day: int) -> tuple[list[str], list[str]]:
        start = datetime(2027, 3, day, tzinfo=UTC)
        stream = generate_social(start, start + timedelta(hours=max(1, n // 1500 + 1)), seed=seed)
        pairs = [
            (str(e["text"]), str(t["lang"]))
            for e, t in zip(stream.events, stream.truth, strict=True)
        ]
        return [t for t, _ in pairs[:n]], [lang for _, lang in pairs[:n]]

    unseen, unseen_langs = posts(2027, 3)
    other, other_langs = posts(2028, 17)
    held = [datasets.evaluation_set(lang) for lang in ("fr", "en")]
    held_texts = [t for h in held for t in h.texts]
    held_langs = [lang for h in held for lang in h.langs]
    for label, texts, langs in [
        ("cold cache, unseen generated posts (seed 2027)", unseen, unseen_langs),
        ("warm: the same posts again", unseen, unseen_langs),
        ("warm process, other unseen posts (seed 2028)", other, other_langs),
        ("held-out posts (hand-written, never seen by this process)", held_texts, held_langs),
    ]:
        started, cpu = time.perf_counter(), time.process_time()
        _classify_static(folder, texts, langs)
        rows.append((label, len(texts), time.perf_counter() - started, time.process_time() - cpu))
    return rows


def cold_cache(models_dir: Path, n: int) -> None:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from sentiment.classifier import ensure_head

    ensure_head(models_dir, "static")  # trained here if missing: the child only loads it
    print(f"\n## Static path, cold cache on unseen text (fresh process, {os.getloadavg()} load)")
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        rows = pool.submit(_cold_cache_child, str(models_dir), n).result()
    print(
        "| static full classification (head + aspects) | posts | wall s | posts/s | CPU s "
        "| posts per CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, count, seconds, cpu in rows:
        rate = f"{count / seconds:,.0f}" if count else "—"
        per_cpu = f"{count / cpu:,.0f}" if count else "—"
        print(f"| {label} | {count:,} | {seconds:.2f} | {rate} | {cpu:.2f} | {per_cpu} |")
    print(f"load average at the end: {os.getloadavg()}")


def latency(models_dir: Path) -> None:
    import shutil

    import dagster as dg
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from ingestion import kafka_client
    from ingestion.broker import EmbeddedBroker
    from lakehouse.config import Settings
    from sentiment.generator import Crisis, generate_social
    from sentiment.tables import alerts_uri, social_sentiment_uri

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from sentiment_kit import Receiver
    from testkit import free_port

    home = Path(tempfile.mkdtemp(prefix="bench-sentiment-"))
    shutil.copytree(models_dir, home / "models", dirs_exist_ok=True)
    with Receiver() as hook:
        os.environ.update(
            LAKEHOUSE_HOME=str(home),
            LAKEHOUSE_BROKER_PORT=str(free_port()),
            LAKEHOUSE_ALERT_WEBHOOK_URL=hook.url,
        )
        os.environ.pop("LAKEHOUSE_LAKE_ROOT", None)
        settings = Settings.from_env()
        broker = EmbeddedBroker(settings)
        broker.start()
        broker.ensure_topics()
        try:
            from dagster_project.definitions import defs
            from dagster_project.resources import LakehouseResource

            sensor = defs.get_sensor_def("social_raw_new_offsets")
            job = defs.resolve_job_def("ingest_social_raw")
            now = datetime.now(UTC).replace(microsecond=0)
            # an hour of normal traffic first (warms the process: models, lingua, dagster)
            warm = generate_social(
                now - timedelta(hours=2), now - timedelta(hours=1), seed=3, scale=0.2
            )
            kafka_client.produce(broker.bootstrap, "social_raw", warm.messages())
            cursor = None
            with dg.DagsterInstance.ephemeral() as instance:

                def tick() -> None:
                    nonlocal cursor
                    result = sensor(
                        dg.build_sensor_context(
                            cursor=cursor, resources={"lakehouse": LakehouseResource()}
                        )
                    )
                    if isinstance(result, dg.SensorResult) and result.run_requests:
                        cursor = result.cursor
                        job.execute_in_process(
                            run_config=result.run_requests[0].run_config, instance=instance
                        )

                tick()
                crisis = generate_social(
                    now - timedelta(minutes=50),
                    now - timedelta(minutes=20),
                    seed=4,
                    scale=0.5,
                    crisis=Crisis(now - timedelta(minutes=50), 30, "delivery", extra_per_minute=20),
                )
                burst = [
                    m for m, t in zip(crisis.messages(), crisis.truth, strict=True) if t["crisis"]
                ]
                before = DeltaTable(social_sentiment_uri(settings)).to_pyarrow_table().num_rows
                produced = time.perf_counter()
                kafka_client.produce(broker.bootstrap, "social_raw", burst)
                first_row = alert_at = None
                while time.perf_counter() - produced < 120 and (
                    first_row is None or alert_at is None
                ):
                    tick()
                    if (
                        first_row is None
                        and DeltaTable(social_sentiment_uri(settings)).to_pyarrow_table().num_rows
                        > before
                    ):
                        first_row = time.perf_counter() - produced
                    try:
                        if (
                            alert_at is None
                            and DeltaTable(alerts_uri(settings)).to_pyarrow_table().num_rows
                        ):
                            alert_at = time.perf_counter() - produced
                    except TableNotFoundError:
                        pass
            print(
                f"\n## End-to-end latency ({len(burst)} crisis posts produced at once, sensor tick + in-process run)"
            )
            print(f"  produce on social_raw → rows in social_sentiment: {first_row:.2f} s")
            print(
                f"  produce on social_raw → alert stored and webhook called: {alert_at:.2f} s ({len(hook.bodies)} POSTs)"
            )
        finally:
            broker.stop()
            shutil.rmtree(home, ignore_errors=True)


def daemon_latency(models_dir: Path, timeout_s: float = 150) -> None:
    """The same path under `dagster dev` (daemon + sensor every 5 s + run launch)."""
    import shutil
    import signal
    import subprocess

    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from ingestion import kafka_client
    from ingestion.broker import EmbeddedBroker
    from lakehouse.config import Settings
    from lakehouse.instance import ensure_dagster_home
    from sentiment.generator import Crisis, generate_social
    from sentiment.tables import alerts_uri, social_sentiment_uri

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from sentiment_kit import Receiver
    from testkit import free_port

    root = Path(__file__).resolve().parent.parent
    home = Path(tempfile.mkdtemp(prefix="bench-sentiment-daemon-"))
    shutil.copytree(models_dir, home / "models", dirs_exist_ok=True)

    def rows(uri: str) -> int:
        try:
            return DeltaTable(uri).to_pyarrow_table().num_rows
        except TableNotFoundError:
            return 0

    with Receiver() as hook:
        os.environ.update(
            LAKEHOUSE_HOME=str(home),
            LAKEHOUSE_BROKER_PORT=str(free_port()),
            LAKEHOUSE_ALERT_WEBHOOK_URL=hook.url,
        )
        settings = Settings.from_env()
        broker = EmbeddedBroker(settings)
        broker.start()
        broker.ensure_topics()
        ensure_dagster_home(settings)
        env = {**os.environ, "PYTHONPATH": str(root)}
        dagster = Path(sys.executable).absolute().parent / "dagster"
        cmd = [
            str(dagster),
            "dev",
            "-w",
            str(root / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(free_port()),
        ]
        log = open(home / "dagster-dev.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            now = datetime.now(UTC).replace(microsecond=0)
            warm = generate_social(
                now - timedelta(hours=2), now - timedelta(hours=1), seed=3, scale=0.2
            )
            kafka_client.produce(broker.bootstrap, "social_raw", warm.messages())
            started = time.perf_counter()
            while (
                rows(social_sentiment_uri(settings)) == 0
                and time.perf_counter() - started < timeout_s
            ):
                time.sleep(0.5)
            warm_s = time.perf_counter() - started
            time.sleep(6)  # let the warm-up run finish
            before = rows(social_sentiment_uri(settings))
            crisis = generate_social(
                now - timedelta(minutes=50),
                now - timedelta(minutes=20),
                seed=4,
                scale=0.5,
                crisis=Crisis(now - timedelta(minutes=50), 30, "delivery", extra_per_minute=20),
            )
            burst = [m for m, t in zip(crisis.messages(), crisis.truth, strict=True) if t["crisis"]]
            produced = time.perf_counter()
            kafka_client.produce(broker.bootstrap, "social_raw", burst)
            first_row = alert_at = None
            while time.perf_counter() - produced < timeout_s and (
                first_row is None or alert_at is None
            ):
                if first_row is None and rows(social_sentiment_uri(settings)) > before:
                    first_row = time.perf_counter() - produced
                if alert_at is None and rows(alerts_uri(settings)):
                    alert_at = time.perf_counter() - produced
                time.sleep(0.25)
            print(
                "\n## End-to-end latency under `dagster dev` (daemon, sensor ≥ 5 s, run launched per range)"
            )
            print(f"  first warm-up range (dagster start + first run): {warm_s:.1f} s")
            print(
                f"  produce on social_raw → rows in social_sentiment: {first_row if first_row is None else round(first_row, 1)} s"
            )
            print(
                f"  produce on social_raw → alert stored and webhook called: {alert_at if alert_at is None else round(alert_at, 1)} s"
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
            broker.stop()
            kept = Path(tempfile.gettempdir()) / "bench-sentiment-dagster-dev.log"
            shutil.copy(home / "dagster-dev.log", kept)
            shutil.rmtree(home, ignore_errors=True)
            print(f"  (dagster dev log: {kept})")


def evaluation(models_dir: Path) -> None:
    from sentiment import aspects, datasets
    from sentiment.classifier import evaluate

    print("\n## Evaluation on the held-out set (150 per language, 50 per class)")
    print(
        "| method | lang | macro-F1 | acc | P/R neg | P/R neu | P/R pos | confusion (rows true neg/neu/pos) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for e in evaluate(models_dir, ("static", "transformer")):
        pr = " | ".join(
            f"{e.per_class[c]['precision']:.2f}/{e.per_class[c]['recall']:.2f}"
            for c in ("neg", "neu", "pos")
        )
        print(
            f"| {e.method} | {e.lang} | {e.macro_f1:.3f} | {e.accuracy:.3f} | {pr} | {e.confusion} |"
        )
    for lang in ("fr", "en"):
        held = datasets.evaluation_set(lang)
        s = aspects.evaluate(held.texts, held.langs, held.aspects, models_dir)
        print(
            f"  aspects [{lang}]: accuracy {s['accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f} (n={int(s['n'])})"
        )


def ablation(models_dir: Path) -> None:
    """What each feature group brings: static-path heads refitted on embeddings only and on
    the lexicon score + cues only (same data, same regression)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sentiment import datasets
    from sentiment.classifier import evaluate_labels, features
    from sentiment.text import CUE_NAMES

    train = datasets.training_set()
    x = features(train.texts, train.langs, "static", models_dir)
    side = 2 + len(CUE_NAMES)
    langs = np.asarray(train.langs)
    weights = np.where(langs == "fr", (langs == "en").sum() / (langs == "fr").sum(), 1.0)
    print("\n## Ablation (static path, macro-F1 on the held-out sets)")
    for name, columns in (
        ("embedding only", slice(0, -side)),
        ("lexicon score + cues only", slice(-side, None)),
    ):
        model = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
        )
        model.fit(x[:, columns], train.labels, logisticregression__sample_weight=weights)
        scores = []
        for lang in ("fr", "en"):
            held = datasets.evaluation_set(lang)
            predicted = model.predict(
                features(held.texts, held.langs, "static", models_dir)[:, columns]
            )
            scores.append(
                f"{lang} {evaluate_labels(name, lang, held.labels, list(predicted)).macro_f1:.3f}"
            )
        print(f"  {name:<28} " + ", ".join(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=8000)
    parser.add_argument("--transformer-posts", type=int, default=1000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--daemon", action="store_true", help="also measure under `dagster dev`")
    parser.add_argument("--only-daemon", action="store_true")
    parser.add_argument(
        "--only-cold", action="store_true", help="only the cold-cache measurement (static path)"
    )
    args = parser.parse_args()
    from lakehouse.config import Settings

    models_dir = Settings.from_env().models_dir
    print(f"models: {models_dir}; cpus: {os.cpu_count()}; load average {os.getloadavg()}")
    if args.only_daemon:
        daemon_latency(models_dir)
        return
    if args.only_cold:
        cold_cache(models_dir, args.posts)
        return
    throughput(models_dir, args.posts, args.transformer_posts)
    cold_cache(models_dir, args.posts)
    evaluation(models_dir)
    ablation(models_dir)
    if not args.skip_latency:
        latency(models_dir)
    if args.daemon:
        daemon_latency(models_dir)


if __name__ == "__main__":
    main()
