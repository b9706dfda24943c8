"""Social-media sentiment: raw_social_raw → silver_social → silver_social_sentiment →
silver_sentiment_index (+ alerts), Kafka topics social_clean / social_sentiment, the model
head, and the negative wordcloud. Wiring only: the work is in the `sentiment` package.

The streaming assets run inside `ingest_social_raw` (everything downstream of raw_social_raw);
the head is trained on first need by the classifier, and retrained every night by
`train_sentiment_model` (schedule on by default; MLflow champion rule).
Nothing heavy is imported at module level.
"""

import dagster as dg
from openlineage.client.event_v2 import Dataset

from dagster_project.automation import GOLD_REFRESH
from dagster_project.lineage import lineage_run
from dagster_project.resources import LakehouseResource
from lakehouse.config import Settings

# the shipped labelled posts the head is trained and evaluated on (sentiment/datasets.py)
TRAINING_FILES = ("vader_tweets.tsv", "vader_amazon.tsv", "train_en.tsv", "train_fr.tsv")
EVALUATION_FILES = ("eval_en.tsv", "eval_fr.tsv")
# what a head classifies (sentiment/classifier.py): a post's text in its language
HEAD_FIELDS = [("text", "string"), ("lang", "string")]


def _topic(settings: Settings, topic: str) -> Dataset:
    """A topic the sentiment assets publish to, with its JSON Schema (ingestion/schemas/)."""
    from ingestion.contracts import load_schema
    from lakehouse.lineage import kafka_dataset

    return kafka_dataset(settings, topic, json_schema=load_schema(f"{topic}.v1.json"))


def _served_head(settings: Settings, encoder: str) -> Dataset | None:
    """The head file the classifier serves (LAKEHOUSE_HOME/models/sentiment/<encoder>/), if
    there is one."""
    from lakehouse.lineage import file_dataset
    from sentiment.classifier import head_dir

    path = head_dir(settings.models_dir, encoder) / "head.joblib"
    if not path.exists():
        return None
    return file_dataset(settings, f"sentiment_head_{encoder}", path, HEAD_FIELDS)


def _labelled_files(settings: Settings, names: tuple[str, ...]) -> list[Dataset]:
    from importlib import resources

    from lakehouse.lineage import file_dataset

    folder = resources.files("sentiment").joinpath("data")
    datasets = []
    for name in names:
        path = folder.joinpath(name)
        header = path.read_text("utf-8").split("\n", 1)[0].split("\t")  # TSV: text columns
        columns = [(column, "string") for column in header]
        datasets.append(file_dataset(settings, f"sentiment/data/{name}", str(path), columns))
    return datasets


def _metadata(result: object, uri: str) -> dict[str, object]:
    counts = getattr(result, "counts", {})
    return {
        "rows_written": getattr(result, "rows_written", 0),
        "source_rows_read": getattr(result, "rows_read", 0),
        "source_version_from": _v(getattr(result, "source_version_from", None)),
        "source_version_to": _v(getattr(result, "source_version_to", None)),
        "delta_version": _v(getattr(result, "table_version", None)),
        "seconds": round(float(getattr(result, "seconds", 0.0)), 3),
        "path": dg.MetadataValue.path(uri),
        **{k: int(v) for k, v in counts.items()},
    }


def _v(value: int | None) -> int:
    return -1 if value is None else value


@dg.asset(
    deps=["raw_social_raw"],
    group_name="silver",
    kinds={"duckdb", "delta", "kafka"},
    owners=["team:social-insights"],
    pool="silver_social",
    description=(
        "Every social post once (MERGE on post_id), partitioned by event_date: language "
        "detected with lingua (the declared lang is kept, not trusted), brand mentioned, "
        "cleaned text (URLs/emojis/mentions as tokens, stopwords out, negations kept), exact "
        "and MinHash near-duplicates (duplicate_of), spam score (rules + model). New rows are "
        "published to Kafka topic `social_clean` (key post_id; at-least-once, outbox-tracked)."
    ),
)
def silver_social(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from lake.tables import raw_schema, raw_uri
    from sentiment.outbox import publish_new_rows
    from sentiment.pipeline import build_silver_social, clean_message
    from sentiment.tables import CLEAN_TOPIC, SILVER_SOCIAL_SCHEMA, silver_social_uri

    settings = lakehouse.settings()
    uri = silver_social_uri(settings)
    inputs = [("raw_social_raw", raw_uri(settings, "social_raw"), raw_schema("social_raw"))]
    outputs = [("silver_social", uri, SILVER_SOCIAL_SCHEMA), _topic(settings, CLEAN_TOPIC)]
    with lineage_run(settings, context, inputs, outputs) as h:
        result = build_silver_social(settings)
        h.set_output_stats("silver_social", result.rows_written)
        bootstrap = lakehouse.bootstrap()
        published = publish_new_rows(settings, bootstrap, CLEAN_TOPIC, uri, clean_message)
        h.set_output_stats(CLEAN_TOPIC, published)
    context.log.info(result.summary() + f"; {published} messages to {CLEAN_TOPIC}")
    return dg.MaterializeResult(metadata={**_metadata(result, uri), "published": published})


@dg.asset(
    deps=[silver_social],
    group_name="silver",
    kinds={"pytorch", "delta", "kafka"},
    owners=["team:social-insights"],
    pool="silver_social_sentiment",
    description=(
        "One row per classified post (not spam, not a duplicate, French or English): label "
        "pos/neu/neg, confidence, aspects[] (product, price, delivery, customer_service, "
        "other) and keyphrases, engagement weight. Classifier: MiniLM sentence embedding "
        "(LAKEHOUSE_SENTIMENT_ENCODER: static distilled or full transformer) + lexicon score + "
        "sarcasm cues → logistic head (trained on first need). Published to Kafka topic "
        "`social_sentiment` (key post_id)."
    ),
)
def silver_social_sentiment(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from sentiment.outbox import publish_new_rows
    from sentiment.pipeline import build_social_sentiment, sentiment_message
    from sentiment.tables import (
        SENTIMENT_TOPIC,
        SILVER_SOCIAL_SCHEMA,
        SOCIAL_SENTIMENT_SCHEMA,
        silver_social_uri,
        social_sentiment_uri,
    )

    settings = lakehouse.settings()
    uri = social_sentiment_uri(settings)
    inputs = [("silver_social", silver_social_uri(settings), SILVER_SOCIAL_SCHEMA)]
    outputs = [
        ("silver_social_sentiment", uri, SOCIAL_SENTIMENT_SCHEMA),
        _topic(settings, SENTIMENT_TOPIC),
    ]
    with lineage_run(settings, context, inputs, outputs) as h:
        result = build_social_sentiment(settings, settings.sentiment_encoder)
        h.set_output_stats("silver_social_sentiment", result.rows_written)
        # the head that classified the batch (trained by the nightly job, or on first need)
        if (head := _served_head(settings, settings.sentiment_encoder)) is not None:
            h.add_input(head)
        published = publish_new_rows(
            settings, lakehouse.bootstrap(), SENTIMENT_TOPIC, uri, sentiment_message
        )
        h.set_output_stats(SENTIMENT_TOPIC, published)
    context.log.info(result.summary() + f"; {published} messages to {SENTIMENT_TOPIC}")
    return dg.MaterializeResult(metadata={**_metadata(result, uri), "published": published})


@dg.asset(
    deps=[silver_social_sentiment],
    group_name="silver",
    kinds={"duckdb", "delta"},
    owners=["team:social-insights"],
    pool="silver_sentiment_index",
    description=(
        "Engagement-weighted sentiment index per hour × source × aspect × brand: score = "
        "(pos − neg) / total, weighted_score with w = 1 + ln(1 + likes + 2·replies + 3·shares). "
        "Then the seed's crisis rule per hour × brand × aspect (weighted score < −0.25 AND "
        "neg > 7-day hourly mean + 2σ, at least 5 negatives): alerts to "
        "LAKEHOUSE_ALERT_WEBHOOK_URL (Slack + PagerDuty Events v2 payloads, 6 h cooldown per "
        "brand × aspect) and rows in the `alerts` Delta table."
    ),
)
def silver_sentiment_index(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from sentiment.pipeline import build_sentiment_index
    from sentiment.tables import (
        ALERTS_SCHEMA,
        SENTIMENT_INDEX_SCHEMA,
        SOCIAL_SENTIMENT_SCHEMA,
        alerts_uri,
        sentiment_index_uri,
        social_sentiment_uri,
    )

    settings = lakehouse.settings()
    inputs = [("silver_social_sentiment", social_sentiment_uri(settings), SOCIAL_SENTIMENT_SCHEMA)]
    outputs = [
        ("silver_sentiment_index", sentiment_index_uri(settings), SENTIMENT_INDEX_SCHEMA),
        ("alerts", alerts_uri(settings), ALERTS_SCHEMA),
    ]
    with lineage_run(settings, context, inputs, outputs) as h:
        result, raised = build_sentiment_index(settings)
        h.set_output_stats("silver_sentiment_index", result.rows_written)
    for alert in raised:
        context.log.warning(
            f"ALERT {alert['alert_id']}: {alert['summary']} ({alert['delivery_status']})"
        )
    context.log.info(result.summary())
    return dg.MaterializeResult(
        metadata={
            **_metadata(result, sentiment_index_uri(settings)),
            "alerts_raised": len(raised),
        }
    )


@dg.op(
    description=(
        "Trains a sentiment head of the configured encoder on the shipped labelled data "
        "(sentiment/data), fits its confidence temperature on out-of-fold logits, registers it "
        "in MLflow (sentiment_head_<encoder>) and makes it champion, and the head served "
        "under LAKEHOUSE_HOME/models/sentiment/, only if its held-out macro-F1 beats the "
        "champion's on the same posts. Logs the evaluation and the calibration (ECE before / "
        "after). An op job, not an asset: whole-graph materializations never wait for a "
        "retraining (the classifier trains a head itself on first need)."
    )
)
def train_sentiment_head(context: dg.OpExecutionContext, lakehouse: LakehouseResource) -> None:
    from lakehouse.lineage import mlflow_model_dataset
    from sentiment.model_registry import train_and_register

    settings = lakehouse.settings()
    encoder = settings.sentiment_encoder
    inputs = [
        *_labelled_files(settings, TRAINING_FILES),
        *_labelled_files(settings, EVALUATION_FILES),
    ]
    # outputs, known once registered: the model version, and the served head if it changed
    with lineage_run(settings, context, inputs, [], job="train_sentiment_model") as handle:
        registration = train_and_register(settings, encoder)
        promotion = registration.promotion
        handle.add_output(
            mlflow_model_dataset(settings, promotion.model_name, promotion.version, HEAD_FIELDS)
        )
        if registration.served and (head := _served_head(settings, encoder)) is not None:
            handle.add_output(head)
    context.log.info(registration.promotion.describe())
    for evaluation in registration.evaluations:
        context.log.info(evaluation.table())
    for report in registration.calibration:
        context.log.info(report.table())


@dg.job(description="Retrain the sentiment head; champion only if it beats the current one.")
def train_sentiment_model() -> None:
    train_sentiment_head()


@dg.asset(
    deps=["sentiment_negative_words"],
    group_name="gold",
    kinds={"python"},
    # drawn in the same run as the gold model it reads, after it (no schedule of its own)
    automation_condition=GOLD_REFRESH,
    owners=["team:social-insights"],
    description=(
        "PNG wordcloud of the words of negative posts over the last 7 days (gold "
        "sentiment_negative_words), next to the gold DuckDB file."
    ),
)
def sentiment_negative_wordcloud(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from sentiment.dashboard import render_negative_wordcloud

    path, words = render_negative_wordcloud(lakehouse.settings())
    context.log.info(f"wordcloud of {words} words at {path}")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), "words": words})


@dg.asset_check(
    asset=silver_social_sentiment,
    blocking=True,
    description=(
        "Every classified post has a label in {pos, neu, neg}, a confidence in [0, 1], at "
        "least one known aspect, a language fr/en and an engagement weight ≥ 1; post_id unique."
    ),
)
def silver_social_sentiment_contract(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    from sentiment.quality import social_sentiment_violations

    violations = social_sentiment_violations(lakehouse.settings())
    return dg.AssetCheckResult(
        passed=not any(violations.values()), metadata={k: int(v) for k, v in violations.items()}
    )


defs = dg.Definitions(
    assets=[
        silver_social,
        silver_social_sentiment,
        silver_sentiment_index,
        sentiment_negative_wordcloud,
    ],
    asset_checks=[silver_social_sentiment_contract],
    jobs=[train_sentiment_model],
    schedules=[
        dg.ScheduleDefinition(
            name="train_sentiment_model_nightly",
            job=train_sentiment_model,
            cron_schedule="30 2 * * *",
            execution_timezone="Europe/Paris",  # as nightly_supply_chain
            default_status=dg.DefaultScheduleStatus.RUNNING,  # on by default, like the others
        ),
    ],
)
