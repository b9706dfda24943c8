"""The one place the project talks Kafka (kafka-python, the design card's client).

Everything else goes through these functions, so swapping the client (e.g. confluent-kafka)
is a change to this module only. Offsets are never committed to the broker: the lake holds
them (see ingestion/raw.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

import pyarrow as pa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lakehouse.config import Settings
from lakehouse.errors import BrokerError

log = logging.getLogger(__name__)
# kafka-python 3 logs a traceback when a consumer is closed while a fetch is in flight (every
# bounded read here ends that way) and warns about its own event-loop timing: noise in the
# CLI and in Dagster runs alike. Errors that matter reach callers as exceptions (BrokerError).
logging.getLogger("kafka.net").setLevel(logging.CRITICAL)

# Large, compressed batches: the backfill sends hundreds of thousands of small JSON events;
# kafka-python spends ~60 µs of Python per send, so batching and compression are what is left.
PRODUCER_TUNING = {
    "acks": "all",
    "linger_ms": 20,
    "batch_size": 1 << 20,
    "compression_type": "zstd",  # fastest of gzip/zstd/none here (17k vs 15k vs 10k msg/s)
    "max_request_size": 4 << 20,
}


# One chunk of Kafka records as read, before any parsing: built column by column from the
# consumer's records (no per-record Python object of our own: that was ~20 % of ingest time).
HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
RECORDS_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("key", pa.binary()),
        pa.field("value", pa.large_binary()),
        pa.field("timestamp_ms", pa.int64()),
        pa.field("headers", HEADERS_TYPE),
    ]
)


def records_table(messages: list[ConsumerRecord]) -> pa.Table:
    """Arrow table (RECORDS_SCHEMA) of consumer records, one list comprehension per column."""
    headers = [m.headers for m in messages]
    if any(headers):
        header_array = pa.array(
            [[{"key": k, "value": v} for k, v in h] for h in headers], HEADERS_TYPE
        )
    else:  # the common case: no headers at all
        header_array = pa.ListArray.from_arrays(
            pa.array([0] * (len(messages) + 1), pa.int32()),
            pa.array([], HEADERS_TYPE.value_type),
            type=HEADERS_TYPE,
        )
    return pa.table(
        [
            pa.array([m.partition for m in messages], pa.int32()),
            pa.array([m.offset for m in messages], pa.int64()),
            pa.array([m.key for m in messages], pa.binary()),
            pa.array([m.value for m in messages], pa.large_binary()),
            pa.array([m.timestamp for m in messages], pa.int64()),
            header_array,
        ],
        schema=RECORDS_SCHEMA,
    )


def _client_error(bootstrap: str, exc: Exception) -> BrokerError:
    return BrokerError(
        f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}): start the embedded broker "
        "with `lakehouse broker start` or set LAKEHOUSE_KAFKA_BOOTSTRAP to a reachable broker"
    )


def security_options(settings: Settings) -> dict[str, object]:
    """kafka-python keyword arguments for the TLS / SASL settings (LAKEHOUSE_KAFKA_SECURITY_*,
    _SASL_*, _SSL_*): the one place they are turned into client options, used by every client
    this module creates (admin, consumer, producer; the sensors' probes and ingestion go
    through those). Empty for the plaintext default."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, object] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        files = {
            "ssl_cafile": settings.kafka_ssl_cafile,
            "ssl_certfile": settings.kafka_ssl_certfile,
            "ssl_keyfile": settings.kafka_ssl_keyfile,
        }
        options |= {name: str(path) for name, path in files.items() if path is not None}
        if settings.kafka_ssl_password:
            options["ssl_password"] = settings.kafka_ssl_password
    return options


def _security(bootstrap: str) -> dict[str, object]:
    # the settings' external broker gets its security options; any other address (the
    # embedded broker, a test's own) is the plaintext loopback one
    settings = Settings.from_env()
    return security_options(settings) if bootstrap == settings.kafka_bootstrap else {}


def admin(bootstrap: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **_security(bootstrap)
        )
    except (KafkaError, OSError) as exc:
        raise _client_error(bootstrap, exc) from exc


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create missing topics explicitly (a produce to a missing topic would auto-create it
    with the broker's default partition count). Returns the topics it created."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        client.close()


def partitions_for(bootstrap: str, topic: str) -> list[int]:
    consumer = _consumer(bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic)
        return sorted(parts or [])
    finally:
        consumer.close()


def _consumer(bootstrap: str, **overrides: object) -> KafkaConsumer:
    try:
        config: dict[str, object] = {
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_bytes": 32 << 20,
            "max_partition_fetch_bytes": 8 << 20,
            "request_timeout_ms": 30_000,
        }
        return KafkaConsumer(
            bootstrap_servers=bootstrap, **{**config, **_security(bootstrap), **overrides}
        )
    except (KafkaError, OSError) as exc:
        raise _client_error(bootstrap, exc) from exc


def producer(bootstrap: str, **overrides: object) -> KafkaProducer:
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap,
            **{**PRODUCER_TUNING, **_security(bootstrap), **overrides},
        )
    except (KafkaError, OSError) as exc:
        raise _client_error(bootstrap, exc) from exc


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    progress_every: int = 0,
) -> int:
    """Send (key, value) pairs to one topic with acks=all and wait for all. Returns the count."""
    return produce_records(
        bootstrap, ((topic, key, value) for key, value in messages), progress_every
    )[topic]


def produce_records(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes | None]],
    progress_every: int = 0,
) -> dict[str, int]:
    """Send (topic, key, value) triples with acks=all, wait for every one, and return the count
    per topic. Any failed send raises after the flush (nothing is silently dropped)."""
    prod = producer(bootstrap)
    sent: dict[str, int] = {}
    total = 0
    failures: list[Exception] = []
    started = time.monotonic()
    try:
        for topic, key, value in records:
            prod.send(topic, key=key, value=value).add_errback(failures.append)
            sent[topic] = sent.get(topic, 0) + 1
            total += 1
            if progress_every and total % progress_every == 0:
                rate = total / max(time.monotonic() - started, 1e-9)
                log.info("%d events sent (%.0f/s) %s", total, rate, sent)
        prod.flush()
    finally:
        prod.close()
    if failures:
        raise BrokerError(f"{len(failures)} of {total} messages failed: {failures[0]}")
    return sent


def probe_high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """True log end (high-water mark) per partition, from a fetch response.

    `end_offsets()` is wrong on the embedded broker (it returns the first offset of the last
    record batch + 1), while the high-water mark carried by fetch responses is right, so this
    fetches at most one small batch per partition, near the end, and reads it from there. On a
    real Kafka the two agree.
    """
    return probe_topics_high_watermarks(bootstrap, [topic])[topic]


def probe_topics_high_watermarks(
    bootstrap: str, topics: Iterable[str]
) -> dict[str, dict[int, int]]:
    """`probe_high_watermarks` of several topics with one consumer (one connection, one
    fetch round for all of them); a topic without partitions maps to {}."""
    consumer = _consumer(bootstrap, fetch_max_bytes=1 << 16, max_partition_fetch_bytes=1 << 16)
    try:
        result: dict[str, dict[int, int]] = {}
        tps: list[TopicPartition] = []
        for topic in topics:
            result[topic] = {}
            tps += [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
        if not tps:
            return result
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        found: dict[TopicPartition, int] = {}
        for tp in tps:
            consumer.seek(tp, max(ends[tp] - 1, 0))
        deadline = time.monotonic() + 10
        while len(found) < len(tps) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1, update_offsets=False)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    found[tp] = hw
        for tp in tps:  # partition never answered: fall back to end_offsets (conservative)
            result[tp.topic][tp.partition] = found.get(tp, ends[tp])
        return result
    finally:
        consumer.close()


def read_range(
    bootstrap: str,
    topic: str,
    start: dict[int, int],
    end: dict[int, int],
    max_records: int | None = None,
    idle_timeout_s: float = 10.0,
    **consumer_overrides: object,
) -> Iterator[pa.Table]:
    """Yield chunks (Arrow tables, RECORDS_SCHEMA) of records for the half-open offset range [start[p], end[p]) per partition.

    assign + seek, never a group and never a commit. Stops when every partition reached its end,
    when `max_records` were yielded, or when nothing arrived for `idle_timeout_s` (the caller
    records the range it actually received, so a short read loses nothing).
    """
    todo = {p: (start.get(p, 0), hi) for p, hi in end.items() if hi > start.get(p, 0)}
    if not todo:
        return
    consumer = _consumer(bootstrap, **consumer_overrides)
    try:
        tps = {p: TopicPartition(topic, p) for p in todo}
        consumer.assign(list(tps.values()))
        for p, (lo, _) in todo.items():
            consumer.seek(tps[p], lo)
        remaining = max_records if max_records is not None else 1 << 62
        last_data = time.monotonic()
        while todo and remaining > 0:
            polled = consumer.poll(timeout_ms=500, max_records=min(remaining, 50_000))
            if not polled:
                if time.monotonic() - last_data > idle_timeout_s:
                    log.warning(
                        "%s: no data for %.0fs, stopping short of %s", topic, idle_timeout_s, todo
                    )
                    return
                continue
            last_data = time.monotonic()
            chunk: list[ConsumerRecord] = []
            for tp, msgs in polled.items():
                if tp.partition not in todo:
                    continue
                hi = todo[tp.partition][1]
                if msgs[-1].offset < hi:  # the usual case: the whole fetch is in range
                    kept = msgs[: remaining - len(chunk)]
                else:
                    kept = [m for m in msgs if m.offset < hi][: remaining - len(chunk)]
                chunk.extend(kept)
                if (kept and kept[-1].offset + 1 >= hi) or len(kept) < len(msgs):
                    del todo[tp.partition]
                    consumer.pause(tp)
            remaining -= len(chunk)
            if chunk:
                yield records_table(chunk)
    finally:
        consumer.close()
