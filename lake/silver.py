"""raw → silver: typed, validated, deduplicated on the business key, PII treated.

Each silver table keeps, as a Delta transaction identifier in its own commits, the raw table
version it has processed (app id `silver<-raw_<topic>`), so a run reads only the raw files added
since, and the new rows plus that marker land in one atomic commit. Re-processing is harmless:
a batch is anti-joined with the keys of the partitions it touches and only unseen keys are
appended (a MERGE's memory grows with the table, the anti-join's with the batch). Concurrent
writers of one table conflict on a shared writer id, and the loser redoes its anti-join.
Transforms are DuckDB SQL over Arrow, no Python loop per row. Personal fields are treated as their contract classifies them (`governance.pii`:
direct identifiers keyed-hashed, quasi-identifiers hashed or generalised).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, QueryBuilder, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from governance.crypto import decrypt_raw_values
from governance.pii import hmac_sql, silver_sql

__all__ = ["hmac_sql"]  # re-exported: the silver hash, for callers that spell it in SQL
from lake.tables import SILVER_TABLES, open_table, raw_uri, silver_uri, sql_string
from lakehouse.config import Settings

log = logging.getLogger(__name__)


_LINEAGE_SQL = """epoch::INTEGER AS source_epoch, "partition"::INTEGER AS source_partition,
    "offset" AS source_offset, ingested_at"""


def _orders_sql(pii_key: str) -> str:
    return f"""
    WITH parsed AS (
        SELECT from_json(value, '{{"order_id":"VARCHAR","ts":"VARCHAR","customer_id":"VARCHAR",
            "items":[{{"sku":"VARCHAR","qty":"BIGINT","price":"DOUBLE"}}],"channel":"VARCHAR",
            "store_id":"VARCHAR","city":"VARCHAR","country":"VARCHAR"}}') AS j, {_LINEAGE_SQL}
        FROM raw_batch
    ), lines AS (
        SELECT j, source_epoch, source_partition, source_offset, ingested_at,
               unnest(j.items) AS item, unnest(range(1, len(j.items) + 1)) AS line
        FROM parsed
    )
    SELECT j.order_id AS order_id, line::INTEGER AS line,
           j.ts::TIMESTAMPTZ AS ts, (j.ts::TIMESTAMPTZ)::DATE AS order_date,
           {silver_sql("orders", "customer_id", "j.customer_id", pii_key)} AS customer_id_hash,
           j.channel AS channel, j.store_id AS store_id, j.city AS city, j.country AS country,
           item.sku AS sku, item.qty::INTEGER AS qty, item.price AS price,
           round(item.qty * item.price, 2) AS line_amount,
           source_epoch, source_partition, source_offset, ingested_at
    FROM lines
    QUALIFY row_number() OVER (PARTITION BY order_id, line
                               ORDER BY source_epoch, source_partition, source_offset) = 1
    """


def _sessions_sql(pii_key: str) -> str:
    return f"""
    WITH parsed AS (
        SELECT from_json(value, '{{"session_id":"VARCHAR","ts":"VARCHAR","customer_id":"VARCHAR",
            "channel":"VARCHAR","city":"VARCHAR","order_id":"VARCHAR"}}') AS j, {_LINEAGE_SQL}
        FROM raw_batch
    )
    SELECT j.session_id AS session_id, j.ts::TIMESTAMPTZ AS ts,
           (j.ts::TIMESTAMPTZ)::DATE AS session_date,
           {silver_sql("sessions", "customer_id", "j.customer_id", pii_key)} AS customer_id_hash,
           j.channel AS channel, j.city AS city, j.order_id AS order_id,
           source_epoch, source_partition, source_offset, ingested_at
    FROM parsed
    QUALIFY row_number() OVER (PARTITION BY session_id
                               ORDER BY source_epoch, source_partition, source_offset) = 1
    """


def _inventory_sql(_: str) -> str:
    return f"""
    WITH parsed AS (
        SELECT from_json(value, '{{"sku":"VARCHAR","store_id":"VARCHAR","ts":"VARCHAR",
            "update_type":"VARCHAR","on_hand":"BIGINT","on_order":"BIGINT","sold_qty":"BIGINT",
            "received_qty":"BIGINT"}}') AS j, {_LINEAGE_SQL}
        FROM raw_batch
    )
    SELECT j.sku AS sku, j.store_id AS store_id, j.ts::TIMESTAMPTZ AS ts,
           (j.ts::TIMESTAMPTZ)::DATE AS update_date, j.update_type AS update_type,
           j.on_hand AS on_hand, j.on_order AS on_order, j.sold_qty AS sold_qty,
           j.received_qty AS received_qty,
           source_epoch, source_partition, source_offset, ingested_at
    FROM parsed
    QUALIFY row_number() OVER (PARTITION BY sku, store_id, ts, update_type
                               ORDER BY source_epoch, source_partition, source_offset) = 1
    """


def _json_sql(fields: dict[str, str], select: str, key: str) -> Callable[[str], str]:
    """Generic silver SQL for a flat event: parse `fields` (name -> DuckDB type), project
    `select`, keep the first delivery of each `key`."""
    spec = "{" + ",".join(f'"{n}":"VARCHAR"' for n in fields) + "}"

    def sql(_: str) -> str:
        return f"""
        WITH parsed AS (SELECT from_json(value, '{spec}') AS j, {_LINEAGE_SQL} FROM raw_batch)
        SELECT {select}, source_epoch, source_partition, source_offset, ingested_at
        FROM parsed
        QUALIFY row_number() OVER (PARTITION BY {key}
                                   ORDER BY source_epoch, source_partition, source_offset) = 1
        """

    return sql


_PO = {
    "po_id": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "supplier_id": "VARCHAR",
    "sku": "VARCHAR",
    "store_id": "VARCHAR",
    "qty": "BIGINT",
    "unit_cost": "DOUBLE",
    "expected_at": "TIMESTAMPTZ",
}
_RECEIPT = {
    "receipt_id": "VARCHAR",
    "po_id": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "supplier_id": "VARCHAR",
    "sku": "VARCHAR",
    "store_id": "VARCHAR",
    "qty_ordered": "BIGINT",
    "qty_received": "BIGINT",
}
_SHIPMENT = {
    "shipment_id": "VARCHAR",
    "status": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "po_id": "VARCHAR",
    "supplier_id": "VARCHAR",
    "carrier": "VARCHAR",
    "route": "VARCHAR",
    "origin": "VARCHAR",
    "destination": "VARCHAR",
    "distance_km": "DOUBLE",
    "departed_at": "TIMESTAMPTZ",
    "promised_at": "TIMESTAMPTZ",
    "arrived_at": "TIMESTAMPTZ",
    "dock_saturation": "DOUBLE",
    "qty": "BIGINT",
}
_READING = {
    "shipment_id": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "temperature_c": "DOUBLE",
    "lat": "DOUBLE",
    "lon": "DOUBLE",
}
_WEATHER = {
    "city": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "temp_c": "DOUBLE",
    "precip_mm": "DOUBLE",
    "wind_kmh": "DOUBLE",
}


def _with_date(fields: dict[str, str], date_name: str, after: str) -> str:
    cols = []
    for n, t in fields.items():
        cols.append(f"j.{n}::{t} AS {n}")
        if n == after:
            cols.append(f"(j.ts::TIMESTAMPTZ)::DATE AS {date_name}")
    return ", ".join(cols)


def _tx(field: str, pii_key: str) -> str:
    return silver_sql("transactions", field, f"j.{field}", pii_key)


def _transactions_sql(pii_key: str) -> str:
    return f"""
    WITH parsed AS (
        SELECT from_json(value, '{{"transaction_id":"VARCHAR","timestamp":"VARCHAR",
            "account_id":"VARCHAR","card_hash":"VARCHAR","amount":"DOUBLE","currency":"VARCHAR",
            "merchant_id":"VARCHAR","merchant_category":"VARCHAR","channel":"VARCHAR",
            "country":"VARCHAR","device_id":"VARCHAR","ip":"VARCHAR","lat":"DOUBLE",
            "lon":"DOUBLE","three_ds_status":"VARCHAR"}}') AS j, {_LINEAGE_SQL}
        FROM raw_batch
    )
    SELECT j.transaction_id AS transaction_id, j.timestamp::TIMESTAMPTZ AS ts,
           (j.timestamp::TIMESTAMPTZ)::DATE AS tx_date,
           {_tx("account_id", pii_key)} AS account_hash, {_tx("card_hash", pii_key)} AS card_hash,
           j.amount AS amount, j.currency AS currency, j.merchant_id AS merchant_id,
           j.merchant_category AS merchant_category, j.channel AS channel, j.country AS country,
           {_tx("device_id", pii_key)} AS device_id, {_tx("ip", pii_key)} AS ip_hash,
           {_tx("lat", pii_key)} AS lat, {_tx("lon", pii_key)} AS lon,
           j.three_ds_status AS three_ds_status,
           source_epoch, source_partition, source_offset, ingested_at
    FROM parsed
    QUALIFY row_number() OVER (PARTITION BY transaction_id
                               ORDER BY source_epoch, source_partition, source_offset) = 1
    """


def _fraud_labels_sql(_: str) -> str:
    return f"""
    WITH parsed AS (
        SELECT from_json(value, '{{"transaction_id":"VARCHAR","is_fraud":"BOOLEAN",
            "reported_at":"VARCHAR"}}') AS j, {_LINEAGE_SQL}
        FROM raw_batch
    )
    SELECT j.transaction_id AS transaction_id, j.is_fraud AS is_fraud,
           j.reported_at::TIMESTAMPTZ AS reported_at, j.reported_at::TIMESTAMPTZ AS ts,
           (j.reported_at::TIMESTAMPTZ)::DATE AS report_date,
           source_epoch, source_partition, source_offset, ingested_at
    FROM parsed
    QUALIFY row_number() OVER (PARTITION BY transaction_id, ts
                               ORDER BY source_epoch, source_partition, source_offset) = 1
    """


@dataclass(frozen=True)
class SilverSpec:
    name: str
    topic: str
    key: tuple[str, ...]
    # a function of the key: deduplication reads only the partitions a batch touches
    partition_by: str
    sql: Callable[[str], str]  # pii_key -> SQL over the view `raw_batch`


SPECS: dict[str, SilverSpec] = {
    "silver_orders": SilverSpec(
        "silver_orders", "orders", ("order_id", "line"), "order_date", _orders_sql
    ),
    "silver_sessions": SilverSpec(
        "silver_sessions", "sessions", ("session_id",), "session_date", _sessions_sql
    ),
    "silver_inventory": SilverSpec(
        "silver_inventory",
        "inventory",
        ("sku", "store_id", "ts", "update_type"),
        "update_date",
        _inventory_sql,
    ),
    "silver_purchase_orders": SilverSpec(
        "silver_purchase_orders",
        "purchase_orders",
        ("po_id",),
        "order_date",
        _json_sql(_PO, _with_date(_PO, "order_date", "ts"), "po_id"),
    ),
    "silver_receipts": SilverSpec(
        "silver_receipts",
        "receipts",
        ("receipt_id",),
        "receipt_date",
        _json_sql(_RECEIPT, _with_date(_RECEIPT, "receipt_date", "ts"), "receipt_id"),
    ),
    "silver_shipments": SilverSpec(
        "silver_shipments",
        "shipments",
        ("shipment_id", "status"),
        "event_date",
        _json_sql(_SHIPMENT, _with_date(_SHIPMENT, "event_date", "ts"), "shipment_id, status"),
    ),
    "silver_shipment_readings": SilverSpec(
        "silver_shipment_readings",
        "shipment_readings",
        ("shipment_id", "ts"),
        "reading_date",
        _json_sql(_READING, _with_date(_READING, "reading_date", "ts"), "shipment_id, ts"),
    ),
    "silver_weather": SilverSpec(
        "silver_weather",
        "weather",
        ("city", "ts"),
        "weather_date",
        _json_sql(_WEATHER, _with_date(_WEATHER, "weather_date", "ts"), "city, ts"),
    ),
    "silver_transactions": SilverSpec(
        "silver_transactions", "transactions", ("transaction_id",), "tx_date", _transactions_sql
    ),
    "silver_fraud_labels": SilverSpec(
        "silver_fraud_labels",
        "fraud_labels",
        ("transaction_id", "ts"),
        "report_date",
        _fraud_labels_sql,
    ),
}


@dataclass
class SilverResult:
    table: str
    raw_version_from: int | None
    raw_version_to: int | None
    raw_rows_read: int = 0
    rows_in_batch: int = 0
    rows_inserted: int = 0
    duplicates_skipped: int = 0
    late_events: int = 0
    late_watermark: str | None = None
    table_version: int | None = None
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.table}: {self.rows_inserted} new rows from {self.raw_rows_read} raw rows "
            f"({self.duplicates_skipped} duplicates skipped, {self.late_events} late) in "
            f"{self.seconds:.1f}s"
        )


def marker(topic: str) -> str:
    return f"silver<-raw_{topic}"


def rows_added_since(
    settings: Settings, uri: str, processed_version: int | None
) -> tuple[pa.Table, int | None]:
    """Rows of the files a Delta table gained after `processed_version` (all rows if None),
    and the version read. Files rewritten since (compaction) are read again: callers
    deduplicate on the key."""
    raw = open_table(uri, settings)
    if raw is None:
        return pa.table({}), None
    current = raw.version()
    dataset = raw.to_pyarrow_dataset()
    if processed_version is not None:
        if processed_version >= current:
            return dataset.schema.empty_table(), current
        try:
            before = open_table(uri, settings, processed_version)
            seen = {_rel(u, uri) for u in before.file_uris()} if before else set()
        except DeltaError:  # old log entries cleaned up: reprocess everything (MERGE is idempotent)
            seen = set()
        fragments = [f for f in dataset.get_fragments() if _rel(f.path, uri) not in seen]
        dataset = pads.FileSystemDataset(
            fragments, dataset.schema, dataset.format, dataset.filesystem
        )
    return dataset.to_table(), current


def _rel(path: str, uri: str) -> str:
    # file_uris() are URIs, fragment paths are filesystem paths: compare the table-relative part
    root = uri.split("://", 1)[-1].rstrip("/") + "/"
    return path.split("://", 1)[-1].split(root, 1)[-1]


def _file_records(table: DeltaTable) -> dict[str, int]:
    """Row count of each data file (table-relative path), from the Delta log's statistics."""
    actions = pa.table(table.get_add_actions(flatten=True))  # arro3 → pyarrow
    if "num_records" not in actions.column_names:
        return {}
    counts = actions["num_records"].fill_null(0).to_pylist()
    return dict(zip(actions["path"].to_pylist(), counts, strict=True))


def _versions_added(
    settings: Settings, uri: str, processed_version: int | None, current: int, files: set[str]
) -> list[tuple[int, list[str]]] | None:
    """`files` grouped by the table version that added them, oldest first (only versions after
    `processed_version`), or None when that part of the log is gone (cleaned up)."""
    try:
        table = open_table(uri, settings, processed_version or 0)
    except DeltaError:
        return None
    if table is None:
        return None
    seen = {_rel(u, uri) for u in table.file_uris()}
    groups: list[tuple[int, list[str]]] = []
    if processed_version is None:  # the first version's files are new too
        groups.append((table.version(), sorted(seen & files)))
    for version in range(table.version() + 1, current + 1):
        try:
            table.load_as_version(version)
        except DeltaError:
            return None
        added = {_rel(u, uri) for u in table.file_uris()} - seen
        seen |= added
        groups.append((version, sorted(added & files)))
    return groups


def plan_batches(
    settings: Settings,
    uri: str,
    table: DeltaTable,
    processed_version: int | None,
    max_rows: int,
) -> list[tuple[list[str], int | None]]:
    """The data files (table-relative paths) Delta table `table` gained after
    `processed_version`, in batches of at most `max_rows` rows (whole files: a file holding
    more is a batch of its own), oldest first, from the log alone (no data file is read).
    Each batch comes with the table version it completes — the marker to commit with it — or
    None when it ends inside a version (or the log before it is gone): commit such a batch
    without a marker (a re-run reads it again; callers deduplicate on the key). The last batch
    always carries the version read (it may hold no file: the marker still moves). Empty when
    no version was added since `processed_version`."""
    current = table.version()
    if processed_version is not None and processed_version >= current:
        return []
    records = _file_records(table)
    present = {_rel(u, uri) for u in table.file_uris()}
    if processed_version is None:
        new = present
    else:
        try:
            before = open_table(uri, settings, processed_version)
            seen = {_rel(u, uri) for u in before.file_uris()} if before else set()
        except DeltaError:
            seen = set()  # old log entries cleaned up: reprocess everything (the anti-join dedups)
        new = present - seen
    if sum(records.get(f, 0) for f in new) <= max_rows:  # the usual case: one batch
        groups: list[tuple[int | None, list[str]]] = [(current, sorted(new))]
    else:
        by_version = _versions_added(settings, uri, processed_version, current, new)
        # no history to follow (log cleaned up): whole files, the marker on the last batch
        groups = [(None, sorted(new))] if by_version is None else list(by_version)

    batches: list[tuple[list[str], int | None]] = []
    pending: list[str] = []
    pending_rows = 0
    pending_marker: int | None = None  # the last version whose files `pending` completes
    for version, paths in groups:
        for path in paths:
            rows = records.get(path, 0)
            if pending and pending_rows + rows > max_rows:
                batches.append((pending, pending_marker))
                pending, pending_rows, pending_marker = [], 0, None
            pending.append(path)
            pending_rows += rows
        if pending and version is not None:
            pending_marker = version
    batches.append((pending, current))
    return batches


def batches_added_since(
    settings: Settings, uri: str, processed_version: int | None, max_rows: int
) -> Iterator[tuple[pa.Table, int | None]]:
    """The rows of `plan_batches`, one batch (and its marker) at a time: peak memory is one
    batch, whatever the size of the table or of the backlog."""
    raw = open_table(uri, settings)
    if raw is None:
        return
    plan = plan_batches(settings, uri, raw, processed_version, max_rows)
    if not plan:
        return
    dataset = raw.to_pyarrow_dataset()
    fragments = {_rel(f.path, uri): f for f in dataset.get_fragments()}
    for paths, version in plan:
        chosen = [fragments[p] for p in paths]
        yield (
            pads.FileSystemDataset(
                chosen, dataset.schema, dataset.format, dataset.filesystem
            ).to_table(),
            version,
        )


def _current_max_ts(table: DeltaTable | None) -> pa.Scalar | None:
    if table is None:
        return None
    actions = pa.table(table.get_add_actions(flatten=True))  # arro3 → pyarrow
    column = "max.ts"
    if column not in actions.column_names or actions.num_rows == 0:
        return None
    values = [v for v in actions.column(column).to_pylist() if v is not None]
    return max(values) if values else None


def build_silver(settings: Settings, name: str) -> SilverResult:
    """Process the raw rows added since the last run into silver table `name`: one commit per
    batch of at most `settings.max_batch_records` raw rows (`batches_added_since`), each with
    the raw version it completes, so memory stays bounded by the cap, not by the backlog."""
    started = time.monotonic()
    spec = SPECS[name]
    uri = silver_uri(settings, name)
    target = open_table(uri, settings)
    processed = target.transaction_version(marker(spec.topic)) if target else None
    result = SilverResult(name, processed, processed)  # up to date unless batches follow
    batches = batches_added_since(
        settings, raw_uri(settings, spec.topic), processed, settings.max_batch_records
    )
    for batch, raw_version in batches:
        target = _write_batch(settings, spec, uri, target, batch, raw_version, result)
        result.raw_version_to = raw_version
        result.extra["commits"] = int(result.extra.get("commits", 0)) + 1  # type: ignore[call-overload]
    # keys already in silver: re-delivered events, or a range re-read in a new epoch
    result.duplicates_skipped = result.rows_in_batch - result.rows_inserted
    if result.extra.get("commits") and target is not None:
        result.table_version = target.version()
    result.seconds = time.monotonic() - started
    if result.extra.get("commits"):
        log.info("%s", result.summary())
    return result


def _write_batch(
    settings: Settings,
    spec: SilverSpec,
    uri: str,
    target: DeltaTable | None,
    batch: pa.Table,
    raw_version: int | None,
    result: SilverResult,
) -> DeltaTable:
    """Transform one batch of raw rows and append the keys silver does not hold yet in one
    commit (with the marker `raw_version` when it completes one); add its counts to
    `result`. A commit that lost a race with another writer is redone on the new version."""
    result.raw_rows_read += batch.num_rows
    # raw direct identifiers are encrypted: decrypt them; rows of erased subjects drop out
    batch = decrypt_raw_values(settings, spec.topic, batch)
    rows = transform(spec, batch, settings.pii_hash_key)
    del batch
    result.rows_in_batch += rows.num_rows
    late = 0
    watermark = _current_max_ts(target)
    if watermark is not None and settings.late_watermark_minutes and rows.num_rows:
        limit = watermark - timedelta(minutes=settings.late_watermark_minutes)
        result.late_watermark = limit.isoformat()
        con = duckdb.connect()
        con.register("rows", rows)
        late = con.execute("SELECT count(*) FROM rows WHERE ts < ?", [limit]).fetchone()[0]  # type: ignore[index]
        con.close()
    result.late_events += late

    schema = SILVER_TABLES[spec.name][1]
    rows = rows.cast(schema)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            inserted = _append_fresh(settings, spec, uri, target, rows, raw_version, late)
            break
        except CommitFailedError:
            # another writer committed to this table since `target` was read (its writer id
            # conflicts with ours): read the table again and drop the keys it added
            if attempt == COMMIT_ATTEMPTS:
                raise
            result.extra["concurrent_retries"] = attempt
            log.warning("%s: concurrent commit, retrying (%d)", spec.name, attempt)
            target = open_table(uri, settings)
    result.rows_inserted += inserted
    return open_table(uri, settings)  # type: ignore[return-value]


COMMIT_ATTEMPTS = 10


def writer_id(topic: str) -> str:
    """The transaction identifier every silver commit built from raw `topic` carries: two
    writers of one silver table conflict (delta-rs checks concurrent commits for a shared
    app id), so neither appends keys the other has just added."""
    return f"silver-writer<-raw_{topic}"


def commit_transactions(
    topic: str, target: DeltaTable | None, raw_version: int | None
) -> list[Transaction]:
    """The transaction identifiers of a silver commit (either engine): the writer id, and the
    raw version's marker when the commit completes one."""
    transactions = [Transaction(writer_id(topic), target.version() + 1 if target else 0)]
    if raw_version is not None:
        transactions.append(Transaction(marker(topic), raw_version))
    return transactions


def _append_fresh(
    settings: Settings,
    spec: SilverSpec,
    uri: str,
    target: DeltaTable | None,
    rows: pa.Table,
    raw_version: int | None,
    late: int,
) -> int:
    """Append the `rows` whose key `target` does not hold yet, in one commit with the writer id
    and (when it completes one) the raw version's marker; the rows appended. The commit is
    made against the version `target` was read at, so a concurrent writer's commit fails it
    (CommitFailedError) instead of letting both append one key."""
    commit = CommitProperties(
        app_transactions=commit_transactions(spec.topic, target, raw_version),
        custom_metadata={"lakehouse.late_events": str(late)},
        max_commit_retries=0 if target is None else None,  # two creators: one wins
    )
    if target is None:
        try:
            write_deltalake(
                uri,
                rows,
                mode="error",  # another writer may have created it since it was looked for
                partition_by=[spec.partition_by],
                storage_options=settings.storage_options or None,
                commit_properties=commit,
            )
        except DeltaError as error:
            if "already exists" not in str(error):
                raise
            raise CommitFailedError(str(error)) from error
        return rows.num_rows
    fresh = fresh_rows(target, rows, spec.key, spec.partition_by)
    write_deltalake(
        target,  # committed against the version read: a concurrent writer's commit fails it
        fresh,
        mode="append",
        partition_by=[spec.partition_by],
        schema_mode="merge",  # a column a newer contract version added (older rows: null)
        commit_properties=commit,
    )
    return fresh.num_rows


def fresh_rows(
    target: DeltaTable, rows: pa.Table, key: tuple[str, ...], partition_by: str
) -> pa.Table:
    """`rows` whose (key, partition value) `target` does not hold: an anti-join, one partition
    value at a time, against the stored keys of only that partition (the partition column is a
    function of the key) and only within the batch's key range, so memory is the batch plus at
    most one partition's keys, whatever the size of the table."""
    if rows.num_rows == 0:
        return rows
    columns = [*key, partition_by]
    using = ", ".join(f'"{c}"' for c in columns)
    stored = QueryBuilder().register("target", target)
    con = duckdb.connect()
    try:
        parts = []
        for value in pc.unique(rows[partition_by]):
            if not value.is_valid:  # a null key part never matches: those rows are all new
                parts.append(rows.filter(pc.is_null(rows[partition_by])))
                continue
            in_partition = rows.filter(pc.equal(rows[partition_by], value))
            keys = stored.execute(
                f"SELECT {using} FROM target WHERE "
                + " AND ".join(_key_bounds(partition_by, value, in_partition, key))
            )
            existing = pa.table(keys.read_all())
            con.register("batch", in_partition)
            con.register("existing", existing)
            parts.append(  # a relation's Arrow output: no copy of the rows (a cursor's makes one)
                con.sql(f"SELECT * FROM batch ANTI JOIN existing USING ({using})").to_arrow_table()
            )
            con.unregister("existing")
            del existing
    finally:
        con.close()
    if not parts:
        return rows.slice(0, 0)
    return pa.concat_tables([part.cast(rows.schema) for part in parts])


def _sql_literal(value: pa.Scalar) -> str | None:
    """`value` as a SQL literal (DataFusion), for the types keys and partitions use; None for
    another type."""
    if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
        return sql_string(str(value.as_py()))
    if pa.types.is_integer(value.type):
        return str(value.as_py())
    if pa.types.is_date32(value.type):
        return f"DATE '{value.as_py().isoformat()}'"
    return None


def _key_bounds(
    partition_by: str, value: pa.Scalar, rows: pa.Table, key: tuple[str, ...]
) -> list[str]:
    """The predicate of the stored keys `rows` may match: the partition, and each key column
    (of a type with a literal) between the rows' smallest and largest value. The scan skips
    the files and row groups whose statistics lie outside: a stream's new keys usually follow
    the stored ones, so most of a partition is never read."""
    partition = _sql_literal(value)
    if partition is None:
        raise TypeError(f"silver partition column {partition_by} has type {value.type}")
    bounds = [f'"{partition_by}" = {partition}']
    for column in key:
        low, high = pc.min_max(rows[column]).values()
        if not low.is_valid:  # all null: nothing to bound (a null key part never matches)
            continue
        low_literal, high_literal = _sql_literal(low), _sql_literal(high)
        if low_literal is not None and high_literal is not None:
            bounds.append(f'"{column}" BETWEEN {low_literal} AND {high_literal}')
    return bounds


def transform(spec: SilverSpec, raw_batch: pa.Table, pii_key: str) -> pa.Table:
    """The raw → silver transform of one spec, over an Arrow table of raw rows."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw_batch", raw_batch)
        table = con.sql(spec.sql(pii_key)).to_arrow_table()
    finally:
        con.close()
    return table.cast(SILVER_TABLES[spec.name][1])


CURRENT_MARKER = "current<-silver_inventory"


def build_inventory_current(settings: Settings) -> SilverResult:
    """Latest stock per SKU×store, from the rows silver_inventory gained since the last run:
    MERGE keeping the update with the greatest event time (one commit, with its marker)."""
    started = time.monotonic()
    uri = silver_uri(settings, "silver_inventory_current")
    target = open_table(uri, settings)
    processed = target.transaction_version(CURRENT_MARKER) if target else None
    source_uri = silver_uri(settings, "silver_inventory")
    updates, version = rows_added_since(settings, source_uri, processed)
    result = SilverResult(
        "silver_inventory_current", processed, version, raw_rows_read=updates.num_rows
    )
    if version is None or (processed is not None and version <= processed):
        result.seconds = time.monotonic() - started
        return result
    con = duckdb.connect()
    con.register("updates", updates)
    latest = con.sql(
        """SELECT sku, store_id, ts, on_hand, on_order FROM updates
           QUALIFY row_number() OVER (PARTITION BY sku, store_id ORDER BY ts DESC,
                                      source_epoch DESC, source_offset DESC) = 1"""
    ).to_arrow_table()
    con.close()
    latest = latest.cast(SILVER_TABLES["silver_inventory_current"][1])
    result.rows_in_batch = latest.num_rows
    commit = CommitProperties(app_transactions=[Transaction(CURRENT_MARKER, version)])
    if target is None:
        write_deltalake(
            uri,
            latest,
            mode="append",
            commit_properties=commit,
            storage_options=settings.storage_options or None,
        )
        result.rows_inserted = latest.num_rows
    else:
        metrics = (
            target.merge(
                latest,
                predicate="t.sku = s.sku AND t.store_id = s.store_id",
                source_alias="s",
                target_alias="t",
                commit_properties=commit,
            )
            .when_matched_update_all(predicate="s.ts > t.ts")
            .when_not_matched_insert_all()
            .execute()
        )
        result.rows_inserted = int(metrics.get("num_target_rows_inserted", 0))
        result.extra["rows_updated"] = int(metrics.get("num_target_rows_updated", 0))
    result.table_version = open_table(uri, settings).version()  # type: ignore[union-attr]
    result.seconds = time.monotonic() - started
    return result
