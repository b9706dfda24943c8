"""One sensor per topic: it decides offset ranges, it never consumes.

Each tick reads the true high-water marks (from a fetch response: `end_offsets()` is wrong on
the embedded broker) and the lake's offsets, and requests one run for everything new. The
run key is the range, so a range is requested once; the cursor is the last requested end
(per epoch). When the broker's log is behind the lake, the sensor skips with the command that
starts a new epoch instead of requesting runs that would fail.

Idle streams (monitoring/idle.py): a topic without new offsets for
LAKEHOUSE_IDLE_STREAM_MINUTES is only probed every LAKEHOUSE_IDLE_STREAM_POLL_SECONDS, and the
skip message says so; the probe that finds new offsets wakes it."""

import json
import time

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from dagster_project.resources import LakehouseResource
from ingestion import kafka_client
from ingestion.broker import TOPICS
from ingestion.raw import lake_offsets, log_behind_lake
from lakehouse.errors import LakehouseError
from lakehouse.ownership import owner_of
from monitoring.idle import StreamActivity, after_probe, idle_message, stream_cadence

# Tag on assets that run on a nightly schedule, never inside a streaming micro-batch.
NIGHTLY_TAG = "lakehouse/cadence"


def topic_sensor(topic: str, job: UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{topic}_new_offsets",
        job=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests a `{job.name}` run for new offsets of Kafka topic `{topic}`.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        settings = lakehouse.settings()
        cursor = json.loads(context.cursor or "{}")
        # idle streams: no new offsets for a while -> probe the broker at the slow cadence
        now = time.time()
        activity = StreamActivity.from_cursor(cursor)
        idle_after = settings.idle_stream_minutes * 60
        slow_every = settings.idle_stream_poll_seconds
        cadence = stream_cadence(activity, now, idle_after, slow_every)
        if not cadence.probe:
            return dg.SkipReason(idle_message(topic, activity, now, slow_every))
        try:
            bootstrap = lakehouse.bootstrap()
            marks = kafka_client.probe_high_watermarks(bootstrap, topic)
        except LakehouseError as exc:
            return dg.SkipReason(str(exc))
        lake = lake_offsets(settings, topic, marks)
        behind = log_behind_lake(topic, lake, marks)
        if behind is not None:  # the broker lost its log (embedded restart): ingesting would fail
            return dg.SkipReason(str(behind))
        # The cursor is per epoch: after a new epoch, offsets restart at 0.
        requested = (
            {int(p): o for p, o in cursor.get("offsets", {}).items()}
            if cursor.get("epoch") == lake.epoch
            else {}
        )
        start = {p: max(lake.next_offsets.get(p, 0), requested.get(p, 0)) for p in marks}
        found_new = any(marks[p] > start[p] for p in marks)
        activity = after_probe(activity, now, found_new)
        if not found_new:  # keep the requested offsets, remember the probe
            context.update_cursor(json.dumps({**cursor, **activity.cursor_fields()}))
            if stream_cadence(activity, now, idle_after, slow_every).idle:
                return dg.SkipReason(idle_message(topic, activity, now, slow_every))
            return dg.SkipReason(f"{topic}: no new offsets (high-water marks {marks})")
        span = ",".join(f"{p}:{start[p]}-{marks[p]}" for p in sorted(marks))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{topic}@{lake.epoch}:{span}",
                    run_config={
                        "ops": {
                            f"raw_{topic}": {
                                "config": {"end_offsets": {str(p): o for p, o in marks.items()}}
                            }
                        }
                    },
                    tags={"lakehouse/topic": topic, "lakehouse/range": span},
                )
            ],
            cursor=json.dumps(
                {
                    "epoch": lake.epoch,
                    "offsets": {str(p): o for p, o in marks.items()},
                    **activity.cursor_fields(),
                }
            ),
        )

    return _sensor


def ingest_job(topic: str) -> UnresolvedAssetJobDefinition:
    """raw_<topic> and the streaming assets built from it.

    Gold (dbt) is refreshed by its automation condition (dagster_project/automation.py); assets tagged `lakehouse/cadence: nightly`
    (model training, forecasts) by theirs: a micro-batch never waits for a retraining."""
    selection = (
        dg.AssetSelection.assets(f"raw_{topic}").downstream()
        - dg.AssetSelection.groups("gold", "gold_staging", "reference")
        - dg.AssetSelection.tag(NIGHTLY_TAG, "nightly").downstream()
    )
    return dg.define_asset_job(
        name=f"ingest_{topic}",
        selection=selection,
        description=f"One micro-batch of Kafka topic `{topic}` into raw, then silver.",
        tags={"lakehouse/topic": topic, **owner_of(topic).tags()},
    )


INGEST_JOBS = {topic: ingest_job(topic) for topic in TOPICS}
SENSORS = [topic_sensor(topic, job) for topic, job in INGEST_JOBS.items()]
