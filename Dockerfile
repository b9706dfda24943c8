# The lakehouse image: the Dagster webserver and daemon, the CLI, and the Spark master/worker of
# deploy/compose.yaml (pyspark's own Spark distribution, so driver, executors and their
# Python packages are the same versions). Build: docker build -t lakehouse:0.1.0 .
FROM python:3.11.7-slim-bookworm

# Java 17 for Spark; tini reaps the JVM and Python workers on stop
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini procps \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DAGSTER_DISABLE_TELEMETRY=1 \
    GX_ANALYTICS_ENABLED=False \
    HF_HUB_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    LAKEHOUSE_HOME=/data/home

WORKDIR /opt/lakehouse
# dependencies first (exact pins: constraints.txt), then the project
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --no-cache-dir "pip==24.3.1" \
    && mkdir -p lakehouse && touch lakehouse/__init__.py \
    && pip install --no-cache-dir -c constraints.txt -e . \
    && rm -rf lakehouse
COPY . .
RUN pip install --no-cache-dir --no-deps -c constraints.txt -e . \
    && lakehouse dbt parse --quiet \
    && lakehouse sentiment prepare \
    && useradd --create-home --uid 1000 lakehouse \
    && mkdir -p /data/home /lake /gold && chown -R lakehouse /data /lake /gold /opt/lakehouse

USER lakehouse
ENTRYPOINT ["tini", "--"]
CMD ["lakehouse", "--help"]
