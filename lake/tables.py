"""Delta table locations and schemas: the lake's contract between layers.

Zones are folders under the lake root: raw/, silver/, gold/ and _dead_letter/. Every table is
Delta (deltalake); dbt reads silver through dbt-duckdb's delta plugin.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from governance import pii
from lakehouse.config import Settings

UTC_TS = pa.timestamp("us", tz="UTC")

# raw_<topic>: payload as received + Kafka coordinates; partitioned by ingest date.
RAW_SCHEMA = pa.schema(
    [
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("value", pa.large_string()),
        pa.field("kafka_timestamp", UTC_TS),
        pa.field("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("ingest_date", pa.date32(), nullable=False),
        # the contract version the payload validated against (null: written before versions)
        pa.field("schema_version", pa.int32()),
    ]
)

# A direct identifier sealed at ingestion (governance.crypto), in the raw column
# `pii_<field>` of each one (`raw_schema`): the key id of its subject's data key (16 bytes),
# the AES-GCM sealed value (nonce | ciphertext | tag) and the byte offset in `value` of the
# masked text it replaces. Null where the payload holds the field as received (encryption
# off, rows written before these columns: their payload holds a `pii1.` token instead).
PII_TOKEN_TYPE = pa.struct(
    [
        pa.field("key_id", pa.binary()),
        pa.field("sealed", pa.binary()),
        pa.field("pos", pa.int32()),
    ]
)


def pii_column(path: str) -> str:
    return f"pii_{path}"


def raw_schema(topic: str) -> pa.Schema:
    """The raw table schema of `topic`: RAW_SCHEMA and one sealed-identifier column per direct
    identifier of its contracts."""
    extra = [pa.field(pii_column(f.path), PII_TOKEN_TYPE) for f in pii.sealed_fields(topic)]
    return pa.schema([*RAW_SCHEMA, *extra])


# _dead_letter: one table for every topic; payload kept as bytes (it may not be UTF-8).
DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("payload", pa.large_binary()),
        pa.field("payload_bytes", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("kafka_timestamp", UTC_TS),
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("ingest_date", pa.date32(), nullable=False),
    ]
)

LINEAGE_FIELDS = [
    pa.field("source_epoch", pa.int32(), nullable=False),
    pa.field("source_partition", pa.int32(), nullable=False),
    pa.field("source_offset", pa.int64(), nullable=False),
    pa.field("ingested_at", UTC_TS, nullable=False),
]

# silver_orders: one row per order item; key (order_id, line); partitioned by order_date.
SILVER_ORDERS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("order_date", pa.date32(), nullable=False),
        pa.field("customer_id_hash", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("store_id", pa.string()),
        pa.field("city", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("sku", pa.string(), nullable=False),
        pa.field("qty", pa.int32(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("line_amount", pa.float64(), nullable=False),
        *LINEAGE_FIELDS,
    ]
)

# silver_sessions: one row per session; key session_id; partitioned by session_date.
SILVER_SESSIONS_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("session_date", pa.date32(), nullable=False),
        pa.field("customer_id_hash", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("city", pa.string(), nullable=False),
        pa.field("order_id", pa.string()),
        *LINEAGE_FIELDS,
    ]
)

# silver_inventory: every stock update; key (sku, store_id, ts); partitioned by update_date.
SILVER_INVENTORY_SCHEMA = pa.schema(
    [
        pa.field("sku", pa.string(), nullable=False),
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("update_date", pa.date32(), nullable=False),
        pa.field("update_type", pa.string(), nullable=False),
        pa.field("on_hand", pa.int64(), nullable=False),
        pa.field("on_order", pa.int64(), nullable=False),
        pa.field("sold_qty", pa.int64(), nullable=False),
        pa.field("received_qty", pa.int64(), nullable=False),
        *LINEAGE_FIELDS,
    ]
)

# silver_inventory_current: latest update per (sku, store_id).
SILVER_INVENTORY_CURRENT_SCHEMA = pa.schema(
    [
        pa.field("sku", pa.string(), nullable=False),
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("on_hand", pa.int64(), nullable=False),
        pa.field("on_order", pa.int64(), nullable=False),
    ]
)


def _supply_schema(*fields: tuple[str, pa.DataType, bool]) -> pa.schema:
    return pa.schema([pa.field(n, t, nullable=not req) for n, t, req in fields] + LINEAGE_FIELDS)


# supply chain (forecasting/): one row per event, key in SUPPLY silver specs (lake/silver.py)
SILVER_PURCHASE_ORDERS_SCHEMA = _supply_schema(
    ("po_id", pa.string(), True),
    ("ts", UTC_TS, True),
    ("order_date", pa.date32(), True),
    ("supplier_id", pa.string(), True),
    ("sku", pa.string(), True),
    ("store_id", pa.string(), True),
    ("qty", pa.int64(), True),
    ("unit_cost", pa.float64(), True),
    ("expected_at", UTC_TS, False),
)
SILVER_RECEIPTS_SCHEMA = _supply_schema(
    ("receipt_id", pa.string(), True),
    ("po_id", pa.string(), True),
    ("ts", UTC_TS, True),
    ("receipt_date", pa.date32(), True),
    ("supplier_id", pa.string(), True),
    ("sku", pa.string(), True),
    ("store_id", pa.string(), True),
    ("qty_ordered", pa.int64(), True),
    ("qty_received", pa.int64(), True),
)
SILVER_SHIPMENTS_SCHEMA = _supply_schema(
    ("shipment_id", pa.string(), True),
    ("status", pa.string(), True),
    ("ts", UTC_TS, True),
    ("event_date", pa.date32(), True),
    ("po_id", pa.string(), True),
    ("supplier_id", pa.string(), True),
    ("carrier", pa.string(), True),
    ("route", pa.string(), True),
    ("origin", pa.string(), True),
    ("destination", pa.string(), True),
    ("distance_km", pa.float64(), True),
    ("departed_at", UTC_TS, True),
    ("promised_at", UTC_TS, True),
    ("arrived_at", UTC_TS, False),
    ("dock_saturation", pa.float64(), True),
    ("qty", pa.int64(), True),
)
SILVER_SHIPMENT_READINGS_SCHEMA = _supply_schema(
    ("shipment_id", pa.string(), True),
    ("ts", UTC_TS, True),
    ("reading_date", pa.date32(), True),
    ("temperature_c", pa.float64(), True),
    ("lat", pa.float64(), True),
    ("lon", pa.float64(), True),
)
SILVER_WEATHER_SCHEMA = _supply_schema(
    ("city", pa.string(), True),
    ("ts", UTC_TS, True),
    ("weather_date", pa.date32(), True),
    ("temp_c", pa.float64(), True),
    ("precip_mm", pa.float64(), True),
    ("wind_kmh", pa.float64(), True),
)

# silver_transactions: one row per card transaction (seed schema, typed); key transaction_id;
# account, card, device and ip replaced by HMAC-SHA256 pseudonyms, lat/lon on a grid
# (governance.pii); partitioned by tx_date.
SILVER_TRANSACTIONS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("tx_date", pa.date32(), nullable=False),
        pa.field("account_hash", pa.string(), nullable=False),
        pa.field("card_hash", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("device_id", pa.string()),
        pa.field("ip_hash", pa.string()),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        # transactions v2: EMV 3DS transStatus (Y, A, N, U, R); null for v1 events
        pa.field("three_ds_status", pa.string()),
        *LINEAGE_FIELDS,
    ]
)

# silver_fraud_labels: confirmed labels (chargebacks); key (transaction_id, ts = reported_at).
SILVER_FRAUD_LABELS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("reported_at", UTC_TS, nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("report_date", pa.date32(), nullable=False),
        *LINEAGE_FIELDS,
    ]
)


def with_pii_notes(schema: pa.Schema, topic: str) -> pa.Schema:
    """`schema` whose personal columns carry their contract classification as field metadata
    `pii` (read by lineage facets and asset descriptions; governance.pii is the source)."""
    fields = []
    for f in schema:
        note = pii.field_note(topic, f.name)
        fields.append(f.with_metadata({"pii": note}) if note else f)
    return pa.schema(fields, metadata=schema.metadata)


SILVER_ORDERS_SCHEMA = with_pii_notes(SILVER_ORDERS_SCHEMA, "orders")
SILVER_SESSIONS_SCHEMA = with_pii_notes(SILVER_SESSIONS_SCHEMA, "sessions")
SILVER_TRANSACTIONS_SCHEMA = with_pii_notes(SILVER_TRANSACTIONS_SCHEMA, "transactions")

SILVER_TABLES = {
    "silver_orders": ("orders", SILVER_ORDERS_SCHEMA),
    "silver_sessions": ("sessions", SILVER_SESSIONS_SCHEMA),
    "silver_inventory": ("inventory", SILVER_INVENTORY_SCHEMA),
    "silver_inventory_current": ("inventory_current", SILVER_INVENTORY_CURRENT_SCHEMA),
    "silver_purchase_orders": ("purchase_orders", SILVER_PURCHASE_ORDERS_SCHEMA),
    "silver_receipts": ("receipts", SILVER_RECEIPTS_SCHEMA),
    "silver_shipments": ("shipments", SILVER_SHIPMENTS_SCHEMA),
    "silver_shipment_readings": ("shipment_readings", SILVER_SHIPMENT_READINGS_SCHEMA),
    "silver_weather": ("weather", SILVER_WEATHER_SCHEMA),
    "silver_transactions": ("transactions", SILVER_TRANSACTIONS_SCHEMA),
    "silver_fraud_labels": ("fraud_labels", SILVER_FRAUD_LABELS_SCHEMA),
}


def raw_uri(settings: Settings, topic: str) -> str:
    return settings.table_uri("raw", topic)


def dead_letter_uri(settings: Settings) -> str:
    return settings.table_uri("_dead_letter", "")


def silver_uri(settings: Settings, asset_name: str) -> str:
    folder, _ = SILVER_TABLES[asset_name]
    return settings.table_uri("silver", folder)


def consistent_dataset(table: DeltaTable) -> pads.Dataset:
    """A pyarrow dataset of a Delta table whose string columns read as `string_view`.

    delta-rs MERGE writes `Utf8View` parquet while plain appends write `Utf8`: reading both as
    one view type avoids pyarrow kernel mismatches when DuckDB pushes filters into the scan.
    """
    base = table.to_pyarrow_dataset().schema
    views = pa.schema(
        [f.with_type(pa.string_view()) if pa.types.is_string(f.type) else f for f in base]
    )
    return table.to_pyarrow_dataset(schema=views)


def sql_string(text: str) -> str:
    """`text` as a SQL string literal (quotes doubled), for predicates given to delta-rs."""
    return "'" + text.replace("'", "''") + "'"


def open_table(uri: str, settings: Settings, version: int | None = None) -> DeltaTable | None:
    """The Delta table at `uri` (at `version`, default the latest), or None when none was
    written there yet."""
    try:
        return DeltaTable(uri, version=version, storage_options=settings.storage_options or None)
    except TableNotFoundError:
        return None


def stats_max(table: DeltaTable, column: str) -> object | None:
    """Largest value of `column` over the table's files, from the statistics in the Delta log
    (no data file is read); None when the table is empty or holds no statistics for it."""
    actions = pa.table(table.get_add_actions(flatten=True))
    name = f"max.{column}"
    if actions.num_rows == 0 or name not in actions.column_names:
        return None
    newest = pc.max(actions[name]).as_py()
    if isinstance(newest, datetime) and newest.tzinfo is None:
        return newest.replace(tzinfo=UTC)
    return newest


def insert_new_rows(
    settings: Settings,
    uri: str,
    rows: pa.Table,
    key: str,
    partition: str,
    commit: CommitProperties,
    target: DeltaTable | None = None,
) -> int:
    """Append `rows` whose (`key`, `partition`) is not in the table yet, in one commit carrying
    `commit` (e.g. the txn marker of the source version processed): a re-run inserts nothing.
    The first write creates the table, partitioned by `partition`. Returns rows inserted."""
    target = target or open_table(uri, settings)
    if target is None:
        write_deltalake(
            uri,
            rows,
            mode="append",
            partition_by=[partition],
            storage_options=settings.storage_options or None,
            commit_properties=commit,
        )
        return rows.num_rows
    metrics = (
        target.merge(
            rows,
            predicate=f"t.{key} = s.{key} AND t.{partition} = s.{partition}",
            source_alias="s",
            target_alias="t",
            # a column added by a newer release is added to the table; older rows read null
            merge_schema=True,
            commit_properties=commit,
        )
        .when_not_matched_insert_all()
        .execute()
    )
    return int(metrics.get("num_target_rows_inserted", 0))
