"""raw_<topic> assets: one exactly-once Kafka micro-batch per materialization."""

import json

import dagster as dg
from pydantic import Field

from dagster_project.lineage import lineage_run
from dagster_project.resources import LakehouseResource
from ingestion.broker import TOPICS
from ingestion.contracts import contract
from ingestion.raw import ingest_batch
from lake.tables import raw_schema, raw_uri
from lakehouse.lineage import kafka_dataset


class RawBatchConfig(dg.Config):
    """The offset range to read; empty `end_offsets` means up to the current high-water marks."""

    end_offsets: dict[str, int] = Field(
        default_factory=dict,
        description="partition -> end offset (exclusive); set by the sensor that requested the run",
    )
    max_records: int = Field(default=0, description="cap on records read (0 = the settings' cap)")


def raw_asset(topic: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{topic}",
        group_name="raw",
        kinds={"kafka", "delta"},
        owners=["team:data-platform"],
        pool=f"raw_{topic}",
        description=(
            f"Kafka topic `{topic}` as received (payload, key, partition, offset, Kafka timestamp, "
            "headers, ingested_at, batch_id), append-only Delta partitioned by ingest date. The "
            "Kafka offsets of each batch are committed in the same Delta commit (exactly-once); "
            "malformed payloads go to the `_dead_letter` table with their reason."
        ),
    )
    def _raw(
        context: dg.AssetExecutionContext, config: RawBatchConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        settings = lakehouse.settings()
        bootstrap = lakehouse.bootstrap()
        uri = raw_uri(settings, topic)
        # input: the topic, named per the OpenLineage spec (kafka://<bootstrap> + topic)
        source = kafka_dataset(settings, topic, json_schema=contract(topic).schema)
        with lineage_run(
            settings, context, [source], [(f"raw_{topic}", uri, raw_schema(topic))]
        ) as handle:
            result = ingest_batch(
                settings,
                topic,
                bootstrap,
                end_offsets={int(p): o for p, o in config.end_offsets.items()} or None,
                max_records=config.max_records or None,
            )
            handle.set_output_stats(f"raw_{topic}", result.rows_written)
        context.log.info(result.summary())
        return dg.MaterializeResult(
            metadata={
                "rows_written": result.rows_written,
                "records_read": result.records_read,
                "dead_letters": result.dead_letters,
                "dead_letter_reasons": dg.MetadataValue.json(result.dead_letter_reasons),
                "epoch": result.epoch,
                "start_offsets": dg.MetadataValue.json(_str_keys(result.start_offsets)),
                "end_offsets": dg.MetadataValue.json(_str_keys(result.end_offsets)),
                "high_watermarks": dg.MetadataValue.json(_str_keys(result.high_watermarks)),
                "lag": sum(result.lag.values()),
                "left_at_cap": result.left_at_cap,
                "batch_id": result.batch_id or "",
                "delta_version": result.table_version if result.table_version is not None else -1,
                "seconds": round(result.seconds, 3),
                "path": dg.MetadataValue.path(uri),
            }
        )

    return _raw


def _str_keys(offsets: dict[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(offsets.items())})


RAW_ASSETS = [raw_asset(topic) for topic in TOPICS]
