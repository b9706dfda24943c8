"""OpenLineage emission (lakehouse/lineage.py): file and HTTP transports, FAIL/ABORT on errors,
dataset naming and facets, and that an unreachable endpoint never fails the job."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attr
import pytest

from lake.tables import RAW_SCHEMA, SILVER_ORDERS_SCHEMA
from lakehouse import lineage
from lakehouse.config import Settings
from lakehouse.lineage import (
    LineageEmitter,
    ParentRun,
    as_run_id,
    delta_dataset,
    duckdb_dataset,
    with_column_lineage,
)


@pytest.fixture(autouse=True)
def _fresh_failure_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENLINEAGE_DISABLED", "OPENLINEAGE_CONFIG", "OPENLINEAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    lineage.reset_failure_state()
    yield
    lineage.reset_failure_state()


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def datasets(settings: Settings) -> tuple[Any, Any]:
    raw = delta_dataset(settings, "raw_orders", settings.table_uri("raw", "orders"), RAW_SCHEMA)
    silver = delta_dataset(
        settings, "silver_orders", settings.table_uri("silver", "orders"), SILVER_ORDERS_SCHEMA
    )
    return raw, silver


def test_file_transport_writes_start_then_complete(settings: Settings) -> None:
    raw, silver = datasets(settings)
    assert not settings.lineage_file.parent.exists()
    emitter = LineageEmitter(settings)
    assert emitter.transport_kind == "file"
    assert settings.lineage_file.parent.is_dir()  # created by the emitter
    with emitter.run("silver_orders", [raw], [silver]) as run:
        run.set_output_stats("silver_orders", 1234)

    start, complete = read_events(settings.lineage_file)
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert start["run"]["runId"] == complete["run"]["runId"] == run.run_id
    assert uuid.UUID(run.run_id)
    for event in (start, complete):
        assert event["job"] == {**event["job"], "namespace": "lakehouse", "name": "silver_orders"}
        assert event["producer"] == lineage.PRODUCER
        (inp,) = event["inputs"]
        (out,) = event["outputs"]
        assert inp["namespace"] == out["namespace"] == "file"
        assert inp["name"] == str(Path(settings.lake_root).resolve() / "raw" / "orders")
        assert out["name"] == str(Path(settings.lake_root).resolve() / "silver" / "orders")
        assert out["facets"]["symlinks"]["identifiers"][0]["name"] == "silver_orders"
        assert out["facets"]["storage"]["storageLayer"] == "delta"
        fields = {f["name"]: f["type"] for f in out["facets"]["schema"]["fields"]}
        assert fields["ts"] == "timestamp[us, tz=UTC]"
        assert fields["qty"] == "int32"
        assert list(fields) == SILVER_ORDERS_SCHEMA.names
        headers = next(f for f in inp["facets"]["schema"]["fields"] if f["name"] == "headers")
        assert [f["name"] for f in headers["fields"]] == ["key", "value"]  # nested struct
    assert "outputStatistics" not in (start["outputs"][0].get("outputFacets") or {})
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1234


def test_events_append_as_json_lines_across_runs(settings: Settings) -> None:
    raw, silver = datasets(settings)
    for _ in range(2):
        with LineageEmitter(settings).run("silver_orders", [raw], [silver]):
            pass
    events = read_events(settings.lineage_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    assert events[0]["run"]["runId"] != events[2]["run"]["runId"]


def test_an_exception_emits_fail_and_propagates(settings: Settings) -> None:
    raw, silver = datasets(settings)
    emitter = LineageEmitter(settings)
    with (
        pytest.raises(ValueError, match="bad batch"),
        emitter.run("silver_orders", [raw], [silver]) as run,
    ):
        run.set_output_stats("silver_orders", 10)
        raise ValueError("bad batch")
    start, fail = read_events(settings.lineage_file)
    assert [start["eventType"], fail["eventType"]] == ["START", "FAIL"]
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == "ValueError: bad batch"
    assert error["programmingLanguage"] == "python"
    assert "raise ValueError" in error["stackTrace"]


def test_an_interrupt_emits_abort(settings: Settings) -> None:
    with pytest.raises(KeyboardInterrupt), LineageEmitter(settings).run("job", [], []):
        raise KeyboardInterrupt
    assert [e["eventType"] for e in read_events(settings.lineage_file)] == ["START", "ABORT"]


def test_parent_and_run_ids(settings: Settings) -> None:
    emitter = LineageEmitter(settings)
    dagster_run = ParentRun("__ASSET_JOB", "not-a-uuid-run-id")
    with (
        emitter.run("pipeline", [], [], parent=dagster_run) as outer,
        emitter.run("silver_orders", [], [], parent=outer),
    ):
        pass
    events = read_events(settings.lineage_file)
    inner_start = events[1]
    parent = inner_start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == outer.run_id
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("lakehouse", "pipeline")
    assert parent["root"]["run"]["runId"] == as_run_id("not-a-uuid-run-id")
    assert parent["root"]["job"]["name"] == "__ASSET_JOB"
    assert as_run_id("not-a-uuid-run-id") == as_run_id("not-a-uuid-run-id")  # stable
    given = str(uuid.uuid4())
    assert as_run_id(given) == given


def test_dataset_naming(settings: Settings, tmp_path: Path) -> None:
    s3 = dataclasses.replace(settings, lake_root="s3://bucket/prefix")
    ds = delta_dataset(s3, "silver_orders", s3.table_uri("silver", "orders"))
    assert (ds.namespace, ds.name) == ("s3://bucket", "prefix/silver/orders")
    assert ds.facets["dataSource"].uri == "s3://bucket/prefix"
    relative = delta_dataset(settings, "silver_orders", "silver/orders")
    assert relative.name == str(Path(settings.lake_root).resolve() / "silver" / "orders")
    gold = duckdb_dataset(settings, "daily_sales")
    assert gold.namespace == f"duckdb://{settings.gold_db_path.resolve()}"
    assert gold.name == "gold.main.daily_sales"
    assert "schema" not in gold.facets  # no schema given


def test_column_lineage_facet(settings: Settings) -> None:
    raw, silver = datasets(settings)
    out = with_column_lineage(silver, {"order_id": [(raw, "value")], "qty": [(raw, "value")]})
    assert "columnLineage" not in silver.facets  # a copy, not a mutation
    with LineageEmitter(settings).run("silver_orders", [raw], [out]):
        pass
    facet = read_events(settings.lineage_file)[-1]["outputs"][0]["facets"]["columnLineage"]
    assert facet["fields"]["order_id"]["inputFields"] == [
        {"namespace": raw.namespace, "name": raw.name, "field": "value", "transformations": []}
    ]


def test_unknown_output_name_is_ignored(settings: Settings, caplog: Any) -> None:
    with LineageEmitter(settings).run("job", [], []) as run:
        run.set_output_stats("nope", 1)
    assert "has no output 'nope'" in caplog.text
    assert [e["eventType"] for e in read_events(settings.lineage_file)] == ["START", "COMPLETE"]


def test_unwritable_lineage_file_does_not_fail(settings: Settings, caplog: Any) -> None:
    settings.lineage_file.parent.parent.mkdir(parents=True, exist_ok=True)
    settings.lineage_file.parent.write_text("a file where the folder should be")
    emitter = LineageEmitter(settings)
    with caplog.at_level(logging.WARNING, logger="lakehouse.lineage"), emitter.run("job", [], []):
        pass
    assert emitter.dropped == 2 and emitter.emitted == 0
    assert caplog.text.count("cannot emit OpenLineage events") == 1  # warned once


def test_openlineage_disabled_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    emitter = LineageEmitter(settings)
    assert emitter.transport_kind == "noop"
    with emitter.run("job", [], []):
        pass
    assert not settings.lineage_file.exists()


# ---- HTTP ------------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    """Records (path, JSON body) of each POST on the server; answers `server.status`."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def lineage_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    server.status = 201  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["", "/api/v1/lineage", "/custom/events"])
def test_http_transport_posts_events(
    settings: Settings, lineage_server: ThreadingHTTPServer, path: str
) -> None:
    url = f"http://127.0.0.1:{lineage_server.server_address[1]}{path}"
    emitter = LineageEmitter(dataclasses.replace(settings, openlineage_url=url))
    assert emitter.transport_kind == "http"
    raw, silver = datasets(settings)
    with emitter.run("silver_orders", [raw], [silver]) as run:
        run.set_output_stats("silver_orders", 7)
    emitter.close()
    received = lineage_server.received  # type: ignore[attr-defined]
    assert [p for p, _ in received] == [path or "/api/v1/lineage"] * 2
    start, complete = (event for _, event in received)
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert start["inputs"][0]["facets"]["schema"]["fields"][0]["name"] == "epoch"
    assert not settings.lineage_file.exists()  # HTTP replaces the file, it does not add to it


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_url_does_not_raise(settings: Settings, caplog: Any) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    unreachable = dataclasses.replace(settings, openlineage_url=url)
    emitter = LineageEmitter(unreachable)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lakehouse.lineage"):
        with emitter.run("silver_orders", [], []) as run:
            run.set_output_stats("anything", 1)
            result = "the job's own work"
        with pytest.raises(RuntimeError, match="job error"), emitter.run("job2", [], []):
            raise RuntimeError("job error")  # the job's exception still propagates
        with LineageEmitter(unreachable).run("job3", [], []):  # another emitter, same target
            pass
    assert result == "the job's own work"
    assert emitter.emitted == 0 and emitter.dropped == 4
    assert caplog.text.count("cannot emit OpenLineage events") == 1
    # one failed POST (fast retries), then the cooldown skips the target
    assert time.monotonic() - started < 10


def test_rejected_events_do_not_raise_nor_suspend(
    settings: Settings, lineage_server: ThreadingHTTPServer, caplog: Any
) -> None:
    lineage_server.status = 400  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{lineage_server.server_address[1]}"
    emitter = LineageEmitter(dataclasses.replace(settings, openlineage_url=url))
    with caplog.at_level(logging.WARNING, logger="lakehouse.lineage"), emitter.run("job", [], []):
        pass
    # a 4xx rejects one event; the target stays in use (both events were tried)
    assert len(lineage_server.received) == 2  # type: ignore[attr-defined]
    assert emitter.dropped == 2
    assert caplog.text.count("cannot emit OpenLineage events") == 1


def test_every_event_kind_validates_against_the_openlineage_schemas(settings: Settings) -> None:
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq
    from openlineage_schema import validate_event

    raw, silver = datasets(settings)
    checked = attr.evolve(
        with_column_lineage(silver, {"order_id": [(raw, "value")]}),
        facets={
            **with_column_lineage(silver, {"order_id": [(raw, "value")]}).facets,
            "dataQualityAssertions": dq.DataQualityAssertionsDatasetFacet(
                assertions=[dq.Assertion(assertion="not_null", success=True, column="order_id")]
            ),
        },
    )
    emitter = LineageEmitter(settings)
    parent = ParentRun("dagster.ingest_orders", "a-dagster-run")
    with emitter.run("silver_orders", [raw], [checked], parent=parent) as run:
        run.set_output_stats("silver_orders", 3, size_bytes=100, files=1)
    with pytest.raises(ValueError), emitter.run("silver_orders", [raw], [silver]):
        raise ValueError("bad batch")
    with pytest.raises(KeyboardInterrupt), emitter.run("silver_orders", [], []):
        raise KeyboardInterrupt
    events = read_events(settings.lineage_file)
    assert [e["eventType"] for e in events] == [
        "START",
        "COMPLETE",
        "START",
        "FAIL",
        "START",
        "ABORT",
    ]
    assert sum(validate_event(e) for e in events) >= 20
    # and the validator does reject what the spec forbids
    broken = {**events[1], "run": {**events[1]["run"], "runId": "not-a-uuid"}}
    with pytest.raises(AssertionError, match="uuid"):
        validate_event(broken)


def test_datasets_known_once_the_job_ran_go_with_the_final_event(
    settings: Settings, tmp_path: Path
) -> None:
    """A registered model version (and the file a model is served from) as datasets added by
    the run: absent from START, in COMPLETE and in FAIL, with their schema facets."""
    from openlineage_schema import validate_event

    from lakehouse.lineage import file_dataset, mlflow_model_dataset

    _, silver = datasets(settings)
    served = tmp_path / "head.joblib"
    emitter = LineageEmitter(settings)
    with emitter.run("fraud_model", [silver], []) as run:
        model = mlflow_model_dataset(settings, "fraud_gbdt", "3", [("amount", "double")])
        run.add_output(model)
        run.add_output(file_dataset(settings, "head", served, [("text", "string")]))
        run.set_output_stats("fraud_gbdt/3", 1)
    with pytest.raises(ValueError), emitter.run("fraud_decisions", [silver], []) as run:
        run.add_input(mlflow_model_dataset(settings, "fraud_gbdt", "3"))
        raise ValueError("scoring failed")
    start, complete, fail_start, fail = read_events(settings.lineage_file)
    assert start["outputs"] == [] and fail_start["inputs"][1:] == []
    registered, head = complete["outputs"]
    assert (registered["namespace"], registered["name"]) == (
        settings.mlflow_tracking_uri,
        "models/fraud_gbdt/3",
    )
    [field] = registered["facets"]["schema"]["fields"]
    assert (field["name"], field["type"]) == ("amount", "double")
    assert registered["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert (head["namespace"], head["name"]) == ("file", str(served.resolve()))
    assert [d["name"] for d in fail["inputs"]] == [silver.name, "models/fraud_gbdt/3"]
    assert sum(validate_event(e) for e in (start, complete, fail_start, fail)) >= 10
