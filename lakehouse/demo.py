"""`make demo`: broker up → history + a live minute → Dagster materializes raw → silver → gold →
summary. Runs again cleanly on an existing lake (a fresh embedded broker is a new epoch; silver
MERGEs make re-sent events no-ops)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from ingestion import kafka_client
from ingestion.broker import TOPICS, EmbeddedBroker, ensure_running
from ingestion.raw import lake_offsets, start_new_epoch
from lake.tables import SILVER_TABLES, dead_letter_uri, raw_uri, silver_uri
from lakehouse.config import Settings
from lakehouse.generate import backfill, live
from lakehouse.runner import materialize_selection


@dataclass(frozen=True)
class DemoOptions:
    history_days: float = 60
    history_scale: float = 0.006  # of Annex B's 50-200 orders/min: keeps the backfill < 60 s
    live_minutes: float = 60  # simulated minutes of live traffic ...
    live_speed: float = 60  # ... replayed 60x faster: one wall-clock minute
    seed: int = 42
    keep_broker: bool = False


def _step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.monotonic()


def _done(started: float, what: str) -> None:
    print(f"    {what} ({time.monotonic() - started:.1f}s)", flush=True)


def _new_epochs_if_broker_is_fresh(settings: Settings, bootstrap: str) -> None:
    """A freshly started embedded broker has empty topics: where the lake already holds offsets
    from an earlier broker, record a new epoch (explicitly, in the table) before reading."""
    for topic in TOPICS:
        marks = kafka_client.probe_high_watermarks(bootstrap, topic)
        state = lake_offsets(settings, topic, marks)
        if any(state.next_offsets.get(p, 0) > hw for p, hw in marks.items()):
            epoch = start_new_epoch(settings, topic, bootstrap, "demo started a fresh broker")
            print(f"    {topic}: the lake holds offsets of an earlier broker: epoch {epoch}")


def run_demo(settings: Settings, options: DemoOptions = DemoOptions()) -> None:
    t0 = time.monotonic()
    embedded = EmbeddedBroker(settings) if settings.embedded_broker else None
    started_broker = False
    try:
        t = _step(f"Kafka broker ({'embedded tansu' if embedded else settings.bootstrap})")
        if embedded is not None:
            started_broker = embedded.start()
        bootstrap = ensure_running(settings)
        if started_broker:
            _new_epochs_if_broker_is_fresh(settings, bootstrap)
        _done(t, f"ready on {bootstrap}, topics {', '.join(TOPICS)}")

        now = datetime.now(UTC).replace(second=0, microsecond=0)
        live_start = now - timedelta(minutes=options.live_minutes)
        history_start = live_start - timedelta(days=options.history_days)
        t = _step(
            f"Backfill {options.history_days:g} days of history (orders, sessions, inventory; "
            f"scale {options.history_scale:g} of the live rate)"
        )
        sent = backfill(
            bootstrap, options.history_days, options.seed, options.history_scale, end=live_start
        )
        _done(t, "sent " + ", ".join(f"{n:,} {topic}" for topic, n in sent.items()))

        t = _step(
            f"Live traffic: {options.live_minutes:g} simulated minutes at x{options.live_speed:g}"
            ", with micro-batches through Dagster while it flows"
        )
        live_sent: dict[str, int] = {}
        producer = threading.Thread(
            target=lambda: live_sent.update(
                live(
                    bootstrap,
                    options.live_minutes,
                    options.live_speed,
                    options.seed,
                    options.history_scale,
                    start=live_start,
                    inventory_from=history_start,
                )
            ),
            daemon=True,
        )
        producer.start()
        batches = 0
        while producer.is_alive():
            # raw + silver for every topic, up to the current high-water marks
            print("    " + materialize_selection(settings, "group:raw or group:silver"), flush=True)
            batches += 1
            producer.join(timeout=5)
        _done(t, f"sent {live_sent}; {batches} micro-batch runs during the live window")

        t = _step("Materialize the whole graph (raw → silver → dbt gold, with checks)")
        print("    " + materialize_selection(settings, None).replace("\n", "\n    "), flush=True)
        _done(t, "graph materialized")
    finally:
        if embedded is not None and started_broker and not options.keep_broker:
            embedded.stop()
    print_summary(settings)
    print(f"\nDemo finished in {time.monotonic() - t0:.0f}s.")


def _count(settings: Settings, uri: str) -> int | str:
    try:
        table = DeltaTable(uri, storage_options=settings.storage_options or None)
    except TableNotFoundError:
        return "-"
    actions = pa.table(table.get_add_actions(flatten=True))  # arro3 → pyarrow
    return int(pc.sum(actions["num_records"]).as_py() or 0)


def print_summary(settings: Settings) -> None:
    print("\n==> Summary")
    print("    table                         rows")
    for topic in TOPICS:
        print(f"    raw_{topic:<26}{_count(settings, raw_uri(settings, topic))!s:>10}")
    for name in SILVER_TABLES:
        print(f"    {name:<30}{_count(settings, silver_uri(settings, name))!s:>10}")
    print(f"    {'_dead_letter':<30}{_count(settings, dead_letter_uri(settings))!s:>10}")
    gold = settings.gold_db_path
    if not gold.exists():
        print(f"    gold: {gold} not built yet")
        return
    con = duckdb.connect(str(gold), read_only=True)
    try:
        for table in ("daily_sales", "top_sku_7d", "conversion_by_channel", "stock_cover_days"):
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            print(f"    gold.{table:<25}{n:>10}")
        print("\n    Top 5 SKUs over the last 7 days (by units):")
        rows = con.execute(
            "SELECT rank_units, sku, units_7d, revenue_7d, window_start, window_end "
            "FROM top_sku_7d ORDER BY rank_units LIMIT 5"
        ).fetchall()
        for rank, sku, units, revenue, start, end in rows:
            print(f"    {rank}. {sku:<6} {units:>7} units  {revenue:>11,.2f} €   ({start} → {end})")
        print("\n    5 lowest stock cover (days of stock at the last 7 days' sales rate):")
        rows = con.execute(
            "SELECT sku, store_id, on_hand, avg_daily_units_7d, stock_cover_days, cover_status "
            "FROM stock_cover_days ORDER BY stock_cover_days NULLS LAST, on_hand LIMIT 5"
        ).fetchall()
        for sku, store, on_hand, avg, cover, status in rows:
            cover_text = "-" if cover is None else f"{cover:.1f} d"
            print(
                f"    {sku:<6} {store:<12} on hand {on_hand:>5}  {avg:>6.1f}/day  "
                f"cover {cover_text:>8}  {status}"
            )
    finally:
        con.close()
    print(
        f"\n    Lake: {settings.lake_root}   Gold (DuckDB, open read-only in any BI tool): {gold}"
        f"\n    Lineage events: {settings.lineage_file}"
        "\n    Next: `make ui` (Dagster UI: runs, asset graph, checks, sensors on "
        "http://127.0.0.1:3000), `make docs` (KPI definitions on http://127.0.0.1:8080)"
    )
