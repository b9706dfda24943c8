"""Freshness of each topic and of each gold model (seed Annex A: stream latency > 2 min).

A topic's latency is how old its newest event in the lake is: now minus the newest Kafka
record timestamp (the producer's CreateTime) in `raw_<topic>`, read from the Delta log's file
statistics (no data file is opened). The Kafka lag expressed in time says why it is stale: 0
when everything the broker holds is in the lake (the producers stopped), else how old the
oldest record not yet ingested is (the pipeline is behind). Either way the latency is what a
consumer of the lake sees; it fires over `LAKEHOUSE_STREAM_LATENCY_SECONDS`, or over the
`x-max-latency-seconds` a daily feed's contract declares.

A gold model's age is the time since its last successful build (the orchestrator knows it);
it fires over `LAKEHOUSE_GOLD_MAX_AGE_MINUTES`. A topic or model that never received data is
not judged: there is nothing to be late about.

Plain Python (no Dagster import).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ingestion import kafka_client
from ingestion.contracts import contract
from ingestion.raw import lake_offsets
from lake.tables import open_table, raw_uri, stats_max
from lakehouse.config import Settings
from monitoring.alerts import GOLD_FRESHNESS, STREAM_FRESHNESS, Condition


@dataclass(frozen=True)
class StreamFreshness:
    topic: str
    now: datetime
    newest_event_at: datetime | None  # newest Kafka timestamp ingested into raw
    pending_records: int  # in the broker, not yet in the lake
    oldest_pending_at: datetime | None  # Kafka timestamp of the oldest of those

    @property
    def latency_seconds(self) -> float | None:
        if self.newest_event_at is None:
            return None if self.oldest_pending_at is None else self.lag_seconds
        return max((self.now - self.newest_event_at).total_seconds(), 0.0)

    @property
    def lag_seconds(self) -> float:
        """The Kafka lag expressed in time: age of the oldest record not yet ingested."""
        if not self.pending_records or self.oldest_pending_at is None:
            return 0.0
        return max((self.now - self.oldest_pending_at).total_seconds(), 0.0)


def newest_raw_timestamp(settings: Settings, topic: str) -> datetime | None:
    """Newest `kafka_timestamp` in raw_<topic>, from the file statistics in the Delta log."""
    table = open_table(raw_uri(settings, topic), settings)
    newest = stats_max(table, "kafka_timestamp") if table is not None else None
    return newest if isinstance(newest, datetime) else None


def oldest_pending_timestamp(
    bootstrap: str, topic: str, start: dict[int, int], marks: dict[int, int]
) -> datetime | None:
    """Kafka timestamp of the oldest record in [start, high-water mark) of any partition (one
    record read per partition that has some)."""
    ends = {p: start.get(p, 0) + 1 for p, hw in marks.items() if hw > start.get(p, 0)}
    if not ends:
        return None
    stamps: list[int] = []
    for chunk in kafka_client.read_range(bootstrap, topic, start, ends, idle_timeout_s=3.0):
        stamps.extend(v for v in chunk["timestamp_ms"].to_pylist() if v is not None)
    if not stamps:
        return None
    return datetime.fromtimestamp(min(stamps) / 1000, tz=UTC)


def stream_freshness(
    settings: Settings,
    bootstrap: str,
    topic: str,
    now: datetime | None = None,
    marks: dict[int, int] | None = None,
) -> StreamFreshness:
    """Measure one topic's freshness against the broker (its high-water marks, probed unless
    given) and the lake."""
    if marks is None:
        marks = kafka_client.probe_high_watermarks(bootstrap, topic)
    lake = lake_offsets(settings, topic, marks)
    start = {p: lake.next_offsets.get(p, 0) for p in marks}
    pending = sum(max(hw - start[p], 0) for p, hw in marks.items())
    oldest = oldest_pending_timestamp(bootstrap, topic, start, marks) if pending else None
    return StreamFreshness(
        topic=topic,
        now=now or datetime.now(UTC),
        newest_event_at=newest_raw_timestamp(settings, topic),
        pending_records=pending,
        oldest_pending_at=oldest,
    )


LATENCY_ANNOTATION = "x-max-latency-seconds"


def latency_threshold(topic: str, default_seconds: int) -> int:
    """The topic's stream-latency threshold: its contract's `x-max-latency-seconds` (daily
    feeds such as weather, purchase orders or chargebacks), else the setting."""
    declared = contract(topic).schema.get(LATENCY_ANNOTATION)
    return int(declared) if declared is not None else default_seconds


def stream_condition(f: StreamFreshness, threshold_seconds: float) -> Condition | None:
    """The stream-latency condition of one topic; None when the topic never had data."""
    latency = f.latency_seconds
    if latency is None:
        return None
    if f.pending_records:
        why = (
            f"ingestion is behind: {f.pending_records:,} records wait in Kafka, the oldest "
            f"{f.lag_seconds:.0f} s old"
        )
        fix = f"lakehouse materialize 'key:raw_{f.topic}+'"
    else:
        why = "no new event reached Kafka (Kafka lag 0 s): the producers stopped"
        fix = f"restart the producers of topic {f.topic} (lakehouse generate live, your app)"
    newest = f"{f.newest_event_at:%Y-%m-%d %H:%M:%S} UTC" if f.newest_event_at else "none"
    summary = (
        f"Topic {f.topic}: newest event in the lake is {latency:.0f} s old "
        f"(threshold {threshold_seconds:.0f} s, newest {newest}); {why}"
    )
    if latency <= threshold_seconds:
        summary = (
            f"Topic {f.topic}: newest event in the lake is {latency:.0f} s old "
            f"(threshold {threshold_seconds:.0f} s), Kafka lag {f.lag_seconds:.0f} s"
        )
    return Condition(
        kind=STREAM_FRESHNESS,
        subject=f.topic,
        detail="",
        firing=latency > threshold_seconds,
        value=round(latency, 3),
        threshold=float(threshold_seconds),
        summary=summary,
        fix=fix,
        severity="error",
        since=f.newest_event_at,
    )


def gold_condition(
    model: str, last_built_at: datetime | None, now: datetime, max_age: timedelta
) -> Condition | None:
    """The freshness condition of one gold model; None when it was never built."""
    if last_built_at is None:
        return None
    age = max((now - last_built_at).total_seconds(), 0.0)
    firing = age > max_age.total_seconds()
    summary = (
        f"Gold model {model} was last rebuilt {age / 60:.1f} min ago "
        f"(threshold {max_age.total_seconds() / 60:.0f} min)"
    )
    if firing:
        summary += ": the gold_automation sensor is off or its runs fail"
    return Condition(
        kind=GOLD_FRESHNESS,
        subject=model,
        detail="",
        firing=firing,
        value=round(age, 3),
        threshold=max_age.total_seconds(),
        summary=summary,
        fix=f"lakehouse materialize 'key:{model}'",
        severity="warning",
        since=last_built_at,
    )
