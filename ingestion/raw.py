"""Exactly-once micro-batches from a Kafka topic into the `raw_<topic>` Delta table.

The table is the checkpoint. Each batch commit carries, as Delta transaction identifiers
(`txn` actions, app id `<topic>-<partition>`, version = next offset to read), the offsets it
read, in the same atomic commit as its rows; the next batch starts from
`DeltaTable.transaction_version(app_id)`. A crash before the commit leaves only unreferenced
files; a crash after it leaves a complete batch. Two concurrent runs of one topic: the commit
is made on the snapshot the offsets were read from, without delta-rs's automatic rebase
(which would append a second copy of the same offsets on top of the winner's); when it loses
the version, the run re-checks the table: its offsets taken, it fails with
`ConcurrentIngestError` having written nothing; otherwise (a compaction won) it commits again.
So a range is never written twice (tested with two processes racing on S3).

Malformed payloads are written to `_dead_letter` first (their own txn ids, filtered on retry),
then the raw commit. When the broker's log is behind what the lake holds (the embedded broker
lost its memory storage), ingestion stops and asks for an explicit new epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from governance.crypto import encrypt_raw_values
from ingestion import kafka_client
from ingestion.contracts import contract
from ingestion.validation import validate_versions
from lake.tables import (
    DEAD_LETTER_SCHEMA,
    PII_TOKEN_TYPE,
    RAW_SCHEMA,
    dead_letter_uri,
    open_table,
    raw_schema,
    raw_uri,
)
from lakehouse.config import Settings
from lakehouse.errors import BrokerBehindLakeError, ConcurrentIngestError

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "lakehouse.checkpoint"
COMMIT_ATTEMPTS = 5  # commits lost to other writers (not ingesting these offsets) before failing
VALIDATION_GROUP = 65_536


def app_id(topic: str, partition: int, epoch: int) -> str:
    """Delta transaction id of one topic partition (epochs after the first get a suffix)."""
    return f"{topic}-{partition}" if epoch == 0 else f"{topic}-{partition}@{epoch}"


def epoch_app_id(topic: str) -> str:
    return f"{topic}-epoch"


@dataclass(frozen=True)
class LakeOffsets:
    """What the raw table says about a topic: its epoch, the next offset per partition and the
    fingerprint of the last record read per partition."""

    epoch: int
    next_offsets: dict[int, int]
    fingerprints: dict[int, str]
    version: int | None = None  # the raw table version these were read from (None: no table)


@dataclass
class BatchResult:
    topic: str
    epoch: int
    batch_id: str | None
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]  # next offset to read, after this batch
    high_watermarks: dict[int, int]
    rows_written: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    table_version: int | None = None
    seconds: float = 0.0
    left_at_cap: int = 0  # records of the requested range the batch cap left for the next batch

    @property
    def records_read(self) -> int:
        return sum(self.end_offsets[p] - self.start_offsets.get(p, 0) for p in self.end_offsets)

    @property
    def lag(self) -> dict[int, int]:
        return {
            p: max(hw - self.end_offsets.get(p, 0), 0) for p, hw in self.high_watermarks.items()
        }

    def summary(self) -> str:
        if not self.records_read:
            return f"{self.topic}: up to date (epoch {self.epoch}, offsets {self.end_offsets})"
        text = (
            f"{self.topic}: read {self.records_read} records ({self.rows_written} raw rows, "
            f"{self.dead_letters} dead letters) in {self.seconds:.1f}s; next offsets "
            f"{self.end_offsets}, lag {sum(self.lag.values())}"
        )
        if self.left_at_cap:
            text += (
                f"; stopped at the batch cap with {self.left_at_cap:,} records left: "
                "run it again, or `lakehouse materialize --until-caught-up`"
            )
        return text


def lake_offsets(settings: Settings, topic: str, partitions: Iterable[int]) -> LakeOffsets:
    table = open_table(raw_uri(settings, topic), settings)
    if table is None:
        return LakeOffsets(0, {p: 0 for p in partitions}, {})
    epoch = table.transaction_version(epoch_app_id(topic)) or 0
    offsets = {p: table.transaction_version(app_id(topic, p, epoch)) or 0 for p in partitions}
    fingerprints: dict[int, str] = {}
    loaded = table.version()
    # The batch commit that wrote these offsets carries every partition's fingerprint. It is
    # found by its offsets, not by position: history() lists the log as it is now (a
    # concurrent writer's newer commit included) and numbers it from the loaded version.
    for entry in table.history(50):
        meta = entry.get(CHECKPOINT_KEY)
        if not meta:
            continue
        state = json.loads(meta)
        if state.get("epoch") != epoch:
            break  # an older epoch: this one has no batch yet
        written = {int(p): int(n) for p, n in state.get("next_offsets", {}).items()}
        if all(offsets.get(p, 0) == n for p, n in written.items()):
            fingerprints = {int(p): f for p, f in state.get("fingerprints", {}).items()}
            break
    return LakeOffsets(epoch, offsets, fingerprints, loaded)


def _fingerprint(key: bytes | None, value: bytes | None, timestamp_ms: int) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(key or b"\x00")
    digest.update(b"\x1f")
    digest.update(value or b"\x00")
    digest.update(str(timestamp_ms).encode())
    return digest.hexdigest()


def _last_records(batch: pa.Table) -> tuple[dict[int, int], dict[int, str]]:
    """Next offset and fingerprint of the last record, per partition present in `batch`."""
    if not batch.num_rows:
        return {}, {}
    maxima = batch.group_by("partition").aggregate([("offset", "max")])
    last_offset = [-1] * (pc.max(maxima["partition"]).as_py() + 1)
    for partition, offset in zip(*maxima.to_pydict().values(), strict=True):
        last_offset[partition] = offset
    is_last = pc.equal(batch["offset"], pc.take(pa.array(last_offset), batch["partition"]))
    rows = batch.filter(is_last).select(["partition", "offset", "key", "value", "timestamp_ms"])
    next_offsets = {r["partition"]: r["offset"] + 1 for r in rows.to_pylist()}
    fingerprints = {
        r["partition"]: _fingerprint(r["key"], r["value"], r["timestamp_ms"])
        for r in rows.to_pylist()
    }
    return next_offsets, fingerprints


def in_step_targets(start: dict[int, int], target: dict[int, int], cap: int) -> dict[int, int]:
    """End offsets of a batch capped at `cap` records that advances every partition by the same
    share of its lag (largest remainders get the leftover records), so a backlog is read in
    step rather than partition after partition. Without a cap to apply, `target` itself."""
    lag = {p: max(target[p] - start.get(p, 0), 0) for p in target}
    total = sum(lag.values())
    if total <= cap:
        return dict(target)
    shares = {p: cap * n / total for p, n in lag.items()}
    quota = {p: int(share) for p, share in shares.items()}
    by_remainder = sorted(lag, key=lambda p: (quota[p] - shares[p], p))
    for p in by_remainder[: cap - sum(quota.values())]:
        quota[p] += 1
    return {p: start.get(p, 0) + quota[p] for p in target}


def time_step_mask(
    batch: pa.Table, start: dict[int, int], capped: dict[int, int], target: dict[int, int]
) -> pa.Array:
    """Which records of a capped batch to keep so that it ends at one Kafka timestamp across
    partitions: the earliest last timestamp among the partitions the cap stopped short. Each
    partition keeps the prefix of its records up to that time (by running maximum, so the kept
    offsets stay contiguous); the rest is read again by the next batch. Features and silver then
    see a backlog in time order however it was sliced."""
    short = {p for p in target if capped[p] < target[p] and capped[p] > start.get(p, 0)}
    if not short or not batch.num_rows:
        return pa.array(np.ones(batch.num_rows, dtype=bool))
    partitions = batch["partition"].to_numpy()
    stamps = np.array(batch["timestamp_ms"].to_numpy(), dtype=np.int64)  # writable copy
    offsets = batch["offset"].to_numpy()
    keep = np.ones(batch.num_rows, dtype=bool)
    running: dict[int, np.ndarray] = {}
    for p in np.unique(partitions):  # a handful of partitions: vectorised within each
        rows = np.flatnonzero(partitions == p)
        rows = rows[np.argsort(offsets[rows], kind="stable")]
        running[int(p)] = rows
        stamps[rows] = np.maximum.accumulate(stamps[rows])
    cut = min(int(stamps[running[p][-1]]) for p in short if p in running)
    # Strictly before the cut: records sharing the cut's millisecond may lie on both sides of
    # a short partition's end. Only when that would leave nothing, up to the cut itself.
    after = (lambda t: t >= cut) if (stamps < cut).any() else (lambda t: t > cut)
    for rows in running.values():
        keep[rows[after(stamps[rows])]] = False
    return pa.array(keep)


def log_behind_lake(
    topic: str, state: LakeOffsets, high_watermarks: dict[int, int]
) -> BrokerBehindLakeError | None:
    """The error to raise when the broker's log ends before offsets the lake already holds (the
    embedded broker lost its memory storage), else None. Sensors skip with its message."""
    behind = {
        p: (hw, state.next_offsets.get(p, 0))
        for p, hw in high_watermarks.items()
        if hw < state.next_offsets.get(p, 0)
    }
    if not behind:
        return None
    detail = ", ".join(
        f"partition {p}: broker ends at {hw}, lake holds up to {n}"
        for p, (hw, n) in sorted(behind.items())
    )
    return BrokerBehindLakeError(
        f"{topic}: the broker's log is behind the lake ({detail}); the broker lost data "
        f"(an embedded broker restart empties it). Nothing was read. To continue with the "
        f"broker's current log as a new epoch, run {_new_epoch_fix(topic)}"
    )


def _new_epoch_fix(topic: str) -> str:
    return f"`lakehouse ingest --topic {topic} --new-epoch`"


def _check_broker_matches_lake(
    bootstrap: str, topic: str, state: LakeOffsets, high_watermarks: dict[int, int]
) -> None:
    error = log_behind_lake(topic, state, high_watermarks)
    if error is not None:
        raise error
    # Same offsets but different records: the log was replaced and refilled past our offsets.
    probe = {p: n - 1 for p, n in state.next_offsets.items() if n > 0 and p in state.fingerprints}
    if not probe:
        return
    seen: dict[int, str] = {}
    ends = {p: o + 1 for p, o in probe.items()}
    # small fetches: only one record per partition is wanted, not the log after it
    small = {"fetch_max_bytes": 1 << 16, "max_partition_fetch_bytes": 1 << 16}
    for chunk in kafka_client.read_range(bootstrap, topic, probe, ends, idle_timeout_s=5, **small):
        seen.update(_last_records(chunk)[1])
    changed = sorted(p for p in probe if seen.get(p) != state.fingerprints[p])
    if changed:
        raise BrokerBehindLakeError(
            f"{topic}: the record at the lake's last offset differs from the one ingested "
            f"(partitions {changed}): the broker's log was replaced. Nothing was read. To "
            f"ingest the broker's current log as a new epoch, run {_new_epoch_fix(topic)}"
        )


def start_new_epoch(settings: Settings, topic: str, bootstrap: str, reason: str) -> int:
    """Record a new epoch in the raw table: offsets restart at 0 for the broker's new log.
    Returns the new epoch number."""
    partitions = kafka_client.partitions_for(bootstrap, topic)
    uri = raw_uri(settings, topic)
    table = open_table(uri, settings)
    old = lake_offsets(settings, topic, partitions)
    epoch = (old.epoch + 1) if table is not None else 0
    metadata = {
        "lakehouse.new_epoch": json.dumps(
            {
                "epoch": epoch,
                "reason": reason,
                "previous_offsets": old.next_offsets,
                "previous_epoch": old.epoch,
            }
        ),
        CHECKPOINT_KEY: json.dumps({"epoch": epoch, "next_offsets": {}, "fingerprints": {}}),
    }
    write_deltalake(
        uri,
        raw_schema(topic).empty_table(),
        mode="append",
        partition_by=["ingest_date"],
        schema_mode="merge",  # a raw table written before a column existed gains it
        storage_options=settings.storage_options or None,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(epoch_app_id(topic), epoch)],
            custom_metadata=metadata,
        ),
    )
    log.warning("%s: started epoch %d (%s)", topic, epoch, reason)
    return epoch


def _batch_id(topic: str, epoch: int, start: dict[int, int], end: dict[int, int]) -> str:
    span = ",".join(f"{p}:{start.get(p, 0)}-{end[p]}" for p in sorted(end))
    return hashlib.sha1(f"{topic}|{epoch}|{span}".encode()).hexdigest()[:16]


def _prepare_group(
    settings: Settings, topic: str, group: pa.Table, schemas: list[tuple[int, dict]]
) -> tuple[pa.Array, pa.Array, pa.Table]:
    """Reasons, schema versions and what raw stores of one group of records: `value` and the
    `pii_<field>` columns (direct identifiers masked and sealed; null for the rows refused)."""
    reasons, versions = validate_versions(group, schemas)
    valid = pc.is_null(reasons)
    values = pc.cast(group["value"].combine_chunks().filter(valid), pa.large_string())
    sealed = encrypt_raw_values(settings, topic, values)
    # each record's row of `sealed`, null for the refused ones (take yields a null row)
    where = pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1)
    stored = sealed.take(pc.if_else(valid, where, pa.scalar(None, pa.int64())))
    return reasons, versions, stored


def ingest_batch(
    settings: Settings,
    topic: str,
    bootstrap: str,
    end_offsets: dict[int, int] | None = None,
    max_records: int | None = None,
) -> BatchResult:
    """Read one micro-batch of `topic` from the lake's offsets up to `end_offsets` (default: the
    current high-water marks), capped at `max_records`, and commit it exactly once."""
    started = time.monotonic()
    topic_contract = contract(topic)
    schemas = [(v, topic_contract.schema_for(v)) for v in topic_contract.versions]
    high_watermarks = kafka_client.probe_high_watermarks(bootstrap, topic)
    state = lake_offsets(settings, topic, high_watermarks)
    _check_broker_matches_lake(bootstrap, topic, state, high_watermarks)
    start = dict(state.next_offsets)
    target = {
        p: min(hw, (end_offsets or high_watermarks).get(p, hw)) for p, hw in high_watermarks.items()
    }
    cap = min(max_records or settings.max_batch_records, settings.max_batch_records)
    capped = in_step_targets(start, target, cap)

    # Validate and encrypt in a worker thread while the next records are polled: DuckDB,
    # SQLite and AES-GCM release the GIL, so they overlap kafka-python's (GIL-bound) decoding. Groups of
    # VALIDATION_GROUP records, because each DuckDB call costs ~0.05-0.1 s of planning. DuckDB
    # keeps all its threads: validation (~10 µs of CPU a record) costs more than decoding, so
    # capping it to the core the polling thread leaves free made it the bottleneck.
    chunks: list[pa.Table] = []
    validated: list[Future[tuple[pa.Array, pa.Array, pa.Table]]] = []
    pending: list[pa.Table] = []
    with ThreadPoolExecutor(1, thread_name_prefix=f"validate-{topic}") as pool:
        for chunk in kafka_client.read_range(bootstrap, topic, start, capped, max_records=cap):
            chunks.append(chunk)
            pending.append(chunk)
            if sum(t.num_rows for t in pending) >= VALIDATION_GROUP:
                group = pa.concat_tables(pending)
                validated.append(pool.submit(_prepare_group, settings, topic, group, schemas))
                pending = []
        if pending:
            group = pa.concat_tables(pending)
            validated.append(pool.submit(_prepare_group, settings, topic, group, schemas))
        outcomes = [future.result() for future in validated]
    batch = pa.concat_tables(chunks) if chunks else kafka_client.RECORDS_SCHEMA.empty_table()
    reasons, versions, stored = _concat_outcomes(topic, outcomes)
    if capped != target:  # stopped at the cap with lag left: end every partition at one time
        keep = time_step_mask(batch, start, capped, target)
        batch, reasons, versions = batch.filter(keep), reasons.filter(keep), versions.filter(keep)
        stored = stored.filter(keep)
    left_at_cap = target if capped != target else None
    return _commit_batch(
        settings,
        topic,
        state,
        start,
        high_watermarks,
        batch,
        reasons,
        versions,
        stored,
        started,
        left_at_cap,
    )


def ingest_records(settings: Settings, topic: str, records: pa.Table) -> BatchResult:
    """Commit records already in hand (RECORDS_SCHEMA) as one micro-batch, through the same
    validation, dead letters, encryption and exactly-once commit as `ingest_batch`. Their
    offsets must continue the lake's (`lake_offsets`). It lets a large generated corpus (the
    ingestion fuzzer's) cross every lake step without one Kafka round trip per payload."""
    started = time.monotonic()
    topic_contract = contract(topic)
    schemas = [(v, topic_contract.schema_for(v)) for v in topic_contract.versions]
    partitions = sorted(set(records["partition"].to_pylist())) if records.num_rows else []
    state = lake_offsets(settings, topic, partitions)
    start = dict(state.next_offsets)
    outcomes = [
        _prepare_group(settings, topic, records.slice(i, VALIDATION_GROUP), schemas)
        for i in range(0, records.num_rows, VALIDATION_GROUP)
    ]
    reasons, versions, stored = _concat_outcomes(topic, outcomes)
    read_upto, _ = _last_records(records)
    return _commit_batch(
        settings, topic, state, start, read_upto, records, reasons, versions, stored, started, None
    )


def _concat_outcomes(
    topic: str, outcomes: list[tuple[pa.Array, pa.Array, pa.Table]]
) -> tuple[pa.Array, pa.Array, pa.Table]:
    if not outcomes:
        stored = raw_schema(topic).empty_table().select(["value", *_pii_columns(topic)])
        return pa.array([], pa.string()), pa.array([], pa.int32()), stored
    return (
        pa.concat_arrays([o[0] for o in outcomes]),
        pa.concat_arrays([o[1] for o in outcomes]),
        pa.concat_tables([o[2] for o in outcomes]),
    )


def _pii_columns(topic: str) -> list[str]:
    return raw_schema(topic).names[len(RAW_SCHEMA) :]


def _commit_batch(
    settings: Settings,
    topic: str,
    state: LakeOffsets,
    start: dict[int, int],
    high_watermarks: dict[int, int],
    batch: pa.Table,
    reasons: pa.Array,
    versions: pa.Array,
    stored: pa.Table,
    started: float,
    cap_target: dict[int, int] | None,
) -> BatchResult:
    """Dead letters, then the raw rows (`stored`: their values and pii columns, identifiers
    sealed) with their offsets, in one commit each. `cap_target`: the range the batch cap stopped short of, if it did."""
    read_upto, last_fingerprints = _last_records(batch)
    read_to = {**start, **read_upto}
    result = BatchResult(topic, state.epoch, None, start, read_to, high_watermarks)
    if cap_target is not None:
        result.left_at_cap = sum(cap_target[p] - read_to.get(p, 0) for p in cap_target)
    if not batch.num_rows:
        result.seconds = time.monotonic() - started
        return result

    batch_id = _batch_id(topic, state.epoch, start, read_to)
    result.batch_id = batch_id
    now = datetime.now(UTC)
    bad = pc.is_valid(reasons)
    result.dead_letters = _write_dead_letters(
        settings,
        topic,
        state.epoch,
        batch.filter(bad),
        reasons.filter(bad),
        batch_id,
        now,
        read_to,
    )
    if result.dead_letters:
        counts = pc.value_counts(reasons.filter(bad)).to_pylist()
        result.dead_letter_reasons = {c["values"]: c["counts"] for c in counts}

    good = batch.filter(pc.invert(bad))
    # direct identifiers already masked and sealed under their subjects' keys
    # (governance.crypto, in _prepare_group): no plaintext identifier reaches a raw file
    raw = _raw_rows(
        good,
        versions.filter(pc.invert(bad)),
        topic,
        state.epoch,
        batch_id,
        now,
        stored.filter(pc.invert(bad)),
    )
    fingerprints = {**state.fingerprints, **last_fingerprints}
    checkpoint = {
        "epoch": state.epoch,
        "batch_id": batch_id,
        "start_offsets": start,
        "next_offsets": read_to,
        "fingerprints": fingerprints,
        "rows": raw.num_rows,
        "dead_letters": result.dead_letters,
    }
    advanced = {p: n for p, n in read_to.items() if n != start.get(p, 0)}
    commit = CommitProperties(
        app_transactions=[
            Transaction(app_id(topic, p, state.epoch), n) for p, n in advanced.items()
        ],
        custom_metadata={CHECKPOINT_KEY: json.dumps(checkpoint)},
        max_commit_retries=0,  # a lost race is decided below, not rebased blindly
    )
    uri = raw_uri(settings, topic)
    # Commit on top of the snapshot the offsets were read from: a run that committed since
    # (another run of this topic) makes this commit fail instead of landing after it.
    if state.version is None:
        # The table's first commit is an empty one, so that two first runs race on the
        # commit after it (version 0 is the snapshot they read) instead of both creating it
        # and the second appending its copy of the same offsets.
        with contextlib.suppress(DeltaError):
            write_deltalake(
                uri,
                raw_schema(topic).empty_table(),
                mode="append",
                partition_by=["ingest_date"],
                storage_options=settings.storage_options or None,
            )
    target = open_table(uri, settings, 0 if state.version is None else state.version)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            write_deltalake(
                target or uri,
                raw,
                mode="append",
                partition_by=["ingest_date"],
                # a raw table written before a column existed (schema_version, the pii
                # columns) gains it; its older rows read null there
                schema_mode="merge",
                storage_options=settings.storage_options or None,
                commit_properties=commit,
            )
            break
        except CommitFailedError:
            # Another commit took the version. delta-rs would rebase an append over it, even
            # over one carrying the same offsets (two runs of one topic): decide here. Our
            # offsets taken: give up, nothing written. Otherwise (a compaction, a silver
            # marker on another table's log...): commit again on top of it.
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            # the next attempt commits on the very snapshot checked: a commit landing after
            # it fails that attempt too, and is checked in turn
            target = open_table(uri, settings)
            _raise_if_offsets_taken(target, topic, state.epoch, start, advanced)
    result.rows_written = raw.num_rows
    result.table_version = open_table(raw_uri(settings, topic), settings).version()  # type: ignore[union-attr]
    result.seconds = time.monotonic() - started
    log.info("%s", result.summary())
    return result


def _raise_if_offsets_taken(
    table: DeltaTable | None,
    topic: str,
    epoch: int,
    start: dict[int, int],
    advanced: dict[int, int],
) -> None:
    taken = sorted(
        p
        for p in advanced
        if table is not None
        and (table.transaction_version(app_id(topic, p, epoch)) or 0) != start.get(p, 0)
    )
    if taken:
        raise ConcurrentIngestError(
            f"{topic}: another run committed offsets of partitions {taken} first; this batch "
            "wrote nothing (the next run continues from the lake's offsets)"
        )


def _raw_rows(
    good: pa.Table,
    versions: pa.Array,
    topic: str,
    epoch: int,
    batch_id: str,
    now: datetime,
    stored: pa.Table | None = None,
) -> pa.Table:
    """Raw rows (`raw_schema(topic)`) of these records; `stored`: their `value` and pii
    columns as `_prepare_group` made them (default: the values as received, no pii columns)."""
    n = good.num_rows
    sealed = {
        name: stored[name] if stored is not None else pa.nulls(n, PII_TOKEN_TYPE)
        for name in _pii_columns(topic)
    }
    return pa.table(
        {
            "epoch": pa.array([epoch] * n, pa.int32()),
            "topic": pa.array([topic] * n, pa.string()),
            "partition": good["partition"],
            "offset": good["offset"],
            "key": pc.cast(good["key"], pa.string()),
            "value": stored["value"]
            if stored is not None
            else pc.cast(good["value"], pa.large_string()),
            "kafka_timestamp": pc.cast(
                pc.cast(good["timestamp_ms"], pa.timestamp("ms", tz="UTC")),
                RAW_SCHEMA.field("kafka_timestamp").type,
            ),
            "headers": good["headers"],
            "ingested_at": pa.array([now] * n, RAW_SCHEMA.field("ingested_at").type),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "ingest_date": pa.array([now.date()] * n, pa.date32()),
            "schema_version": versions,
            **sealed,
        },
        schema=raw_schema(topic),
    )


def _write_dead_letters(
    settings: Settings,
    topic: str,
    epoch: int,
    bad: pa.Table,
    reasons: pa.Array,
    batch_id: str,
    now: datetime,
    read_to: dict[int, int],
    attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Append dead letters exactly once: the dead-letter table keeps its own offsets per
    partition, so a retry after a crash between this commit and the raw one skips them."""
    uri = dead_letter_uri(settings)
    table = open_table(uri, settings)
    done = {
        p: (table.transaction_version(app_id(topic, p, epoch)) or 0) if table else 0
        for p in read_to
    }
    keep = (
        pc.greater_equal(
            bad["offset"],
            pc.take(
                pa.array([done.get(p, 0) for p in range(max(read_to, default=0) + 1)], pa.int64()),
                bad["partition"],
            ),
        )
        if bad.num_rows
        else pa.array([], pa.bool_())
    )
    fresh = bad.filter(keep)
    fresh_reasons = reasons.filter(keep)
    if not fresh.num_rows:
        return bad.num_rows
    n = fresh.num_rows
    rows = pa.table(
        {
            "topic": pa.array([topic] * n, pa.string()),
            "epoch": pa.array([epoch] * n, pa.int32()),
            "partition": fresh["partition"],
            "offset": fresh["offset"],
            "key": fresh["key"],
            "payload": fresh["value"],
            "payload_bytes": pc.fill_null(pc.binary_length(fresh["value"]), 0).cast(pa.int64()),
            "reason": fresh_reasons,
            "kafka_timestamp": pc.cast(
                pc.cast(fresh["timestamp_ms"], pa.timestamp("ms", tz="UTC")),
                DEAD_LETTER_SCHEMA.field("kafka_timestamp").type,
            ),
            "ingested_at": pa.array([now] * n, DEAD_LETTER_SCHEMA.field("ingested_at").type),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "ingest_date": pa.array([now.date()] * n, pa.date32()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )
    try:
        write_deltalake(
            uri,
            rows,
            mode="append",
            partition_by=["topic", "ingest_date"],
            storage_options=settings.storage_options or None,
            commit_properties=CommitProperties(
                app_transactions=[
                    Transaction(app_id(topic, p, epoch), n)
                    for p, n in read_to.items()
                    if n > done.get(p, 0)
                ],
                max_commit_retries=0,  # another writer's dead letters may be these: re-check
            ),
        )
    except CommitFailedError:
        if attempts <= 1:
            raise
        # filter again against the offsets the table now holds, then commit on top
        return _write_dead_letters(
            settings, topic, epoch, bad, reasons, batch_id, now, read_to, attempts - 1
        )
    return bad.num_rows
