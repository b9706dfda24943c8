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

from ingestion import kafka_client
from ingestion.broker import TOPICS, EmbeddedBroker, ensure_running, open_fresh_epochs
from lake.tables import SILVER_TABLES, dead_letter_uri, open_table, raw_uri, silver_uri
from lakehouse.config import Settings
from lakehouse.generate import RETAIL_TOPICS, backfill, backfill_supply, live
from lakehouse.runner import materialize_selection


@dataclass(frozen=True)
class DemoOptions:
    history_days: float = 60
    history_scale: float = 0.006  # of Annex B's 50-200 orders/min: keeps the backfill < 60 s
    live_minutes: float = 60  # simulated minutes of live traffic ...
    live_speed: float = 60  # ... replayed 60x faster: one wall-clock minute
    seed: int = 42
    keep_broker: bool = False
    use_cases: bool = True  # fraud, sentiment and supply chain on top of the retail spine
    fraud_scale: float = 0.05  # of the simulator's 20 payments/min (history and live)
    social_hours: float = 3  # social history ending with a negative crisis (alert path)
    supply_history_days: int = 365  # daily-aggregate demand before the order-level history


# The micro-batch selection while live traffic flows: the streaming assets of every topic
# (raw → silver → fraud decisions, sentiment), without dbt gold and nightly training.
STREAMING = "(group:raw or group:silver or group:fraud) and not tag:lakehouse/cadence=nightly"


def _step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.monotonic()


def _done(started: float, what: str) -> None:
    print(f"    {what} ({time.monotonic() - started:.1f}s)", flush=True)


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
            for topic, epoch in open_fresh_epochs(settings, bootstrap).items():
                print(f"    {topic}: the lake holds offsets of an earlier broker: epoch {epoch}")
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
        _send_malformed(bootstrap)
        if options.use_cases:
            _backfill_use_cases(bootstrap, options, live_start)
            _simulated_fraud_champion(settings)

        t = _step(
            f"Live traffic: {options.live_minutes:g} simulated minutes at x{options.live_speed:g}"
            ", with micro-batches through Dagster while it flows"
        )
        live_sent: dict[str, int] = {}

        def send(scale: float, topics: tuple[str, ...], **window: datetime) -> threading.Thread:
            def run() -> None:
                sent = live(
                    bootstrap,
                    options.live_minutes,
                    options.live_speed,
                    options.seed,
                    scale,
                    topics,
                    start=live_start,
                    **window,
                )
                live_sent.update(sent)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        producers = [send(options.history_scale, RETAIL_TOPICS, inventory_from=history_start)]
        if options.use_cases:  # denser live payments than history: decisions to watch
            producers.append(send(options.fraud_scale * 10, ("transactions",)))
        batches = 0
        while any(p.is_alive() for p in producers):
            # streaming assets of every topic, up to the current high-water marks
            print("    " + materialize_selection(settings, STREAMING), flush=True)
            batches += 1
            for p in producers:
                p.join(timeout=5 / len(producers))
        _done(t, f"sent {live_sent}; {batches} micro-batch runs during the live window")

        if options.use_cases:
            t = _step("Fraud drift report: PSI per feature, latest day vs the training window")
            print("    " + materialize_selection(settings, "key:fraud_drift"), flush=True)
            _done(t, "drift PSI appended to fraud_drift_psi")

        t = _step("Materialize the whole streaming graph (raw → silver → use cases → dbt gold)")
        print("    " + materialize_selection(settings, None).replace("\n", "\n    "), flush=True)
        _done(t, "graph materialized")
        if options.use_cases:
            t = _step("Nightly supply-chain job: forecasts, backtest, safety stock, ROP, ETA")
            summary = materialize_selection(settings, "group:supply_chain")
            print("    " + summary.replace("\n", "\n    "), flush=True)
            _done(t, "forecasts and reorder proposals built")
    finally:
        if embedded is not None and started_broker and not options.keep_broker:
            embedded.stop()
    print_summary(settings)
    print(f"\nDemo finished in {time.monotonic() - t0:.0f}s.")


# What real producers send now and then: the dead-letter table (and the Platform dashboard)
# shows where each one went and why.
MALFORMED_EVENTS = (
    ("orders", b"o_truncated", b'{"order_id": "o_truncated", "ts": "2026-'),
    ("orders", b"o_no_items", b'{"order_id": "o_no_items", "ts": "2026-01-01T00:00:00Z"}'),
    ("sessions", b"s_bad", b"not json at all"),
)


def _send_malformed(bootstrap: str) -> None:
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for topic, key, value in MALFORMED_EVENTS:
        by_topic.setdefault(topic, []).append((key, value))
    for topic, messages in by_topic.items():
        kafka_client.produce(bootstrap, topic, messages)
    print(f"    + {len(MALFORMED_EVENTS)} malformed events (they land in _dead_letter)")


def _simulated_fraud_champion(settings: Settings) -> None:
    """The demo's fraud model, trained on the simulator explicitly (as `lakehouse fraud train
    --source simulated` does): the decisions never fall back to simulated data by themselves."""
    from fraud.champion import train_simulated_champion
    from fraud.training import champion_model

    if champion_model(settings) is not None:
        return
    t = _step("Fraud model: train a first champion on simulated payments (--source simulated)")
    model = train_simulated_champion(settings, lambda line: print(f"    {line}", flush=True))
    _done(t, f"champion v{model.version}")


def _backfill_use_cases(bootstrap: str, options: DemoOptions, end: datetime) -> None:
    """History for the use cases: card payments (+ chargebacks) over the same days, and a few
    hours of social posts ending with a crisis about delivery (one sentiment alert)."""
    from sentiment.generator import Crisis, generate_social

    t = _step(
        f"Backfill use cases: {options.history_days:g} days of card payments (scale "
        f"{options.fraud_scale:g}), {options.supply_history_days} days of supply-chain history "
        f"before them, {options.social_hours:g} h of social posts with a crisis"
    )
    sent = backfill(
        bootstrap,
        options.history_days,
        options.seed,
        options.fraud_scale,
        ("transactions", "fraud_labels"),
        end=end,
    )
    # Supply-chain history (daily-aggregate orders at the same scale, suppliers, receipts,
    # shipments, weather) for the year before the order-level history: the forecasts need a
    # year of demand, and the two windows do not overlap, so demand is not counted twice.
    supply_end = end - timedelta(days=options.history_days)
    supply = backfill_supply(
        bootstrap, options.supply_history_days, options.seed, options.history_scale, supply_end
    )
    sent |= {f"{topic} (supply history)": n for topic, n in supply.items()}
    start = end - timedelta(hours=options.social_hours)
    crisis = Crisis(end - timedelta(minutes=45), minutes=30, aspect="delivery")
    posts = generate_social(start, end, options.seed, 0.2, crisis)
    sent["social_raw"] = kafka_client.produce(bootstrap, "social_raw", posts.messages())
    _done(t, "sent " + ", ".join(f"{n:,} {topic}" for topic, n in sent.items()))


def _count(settings: Settings, uri: str) -> int | str:
    table = open_table(uri, settings)
    if table is None:
        return "-"
    actions = pa.table(table.get_add_actions(flatten=True))  # arro3 → pyarrow
    return int(pc.sum(actions["num_records"]).as_py() or 0)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }


def _print_use_cases(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    fraud = con.execute(
        "SELECT coalesce(sum(transactions), 0), coalesce(sum(allowed), 0), "
        "coalesce(sum(challenged), 0), coalesce(sum(blocked), 0), "
        "coalesce(sum(fraud_eur_prevented), 0) FROM fraud_kpis"
    ).fetchall()[0]
    print(
        f"\n    Fraud decisions: {fraud[0]:,} payments → {fraud[1]:,} ALLOW, {fraud[2]:,} "
        f"CHALLENGE, {fraud[3]:,} BLOCK; {fraud[4]:,.2f} € of known fraud stopped "
        "(gold.fraud_kpis; `lakehouse fraud serve` decides online)"
    )
    rows = con.execute(
        "SELECT d, brand, sum(posts)::BIGINT AS posts, "
        "round(sum(weighted_score * engagement_weight) / nullif(sum(engagement_weight), 0), 3) "
        "FROM sentiment_daily WHERE d = (SELECT max(d) FROM sentiment_daily) "
        "GROUP BY d, brand ORDER BY posts DESC LIMIT 3"
    ).fetchall()
    print("\n    Sentiment (engagement-weighted index, gold.sentiment_daily):")
    for day, brand, posts, score in rows:
        index = "-" if score is None else f"{score:+.3f}"
        print(f"    {day} {brand:<12} {posts:>6} posts  index {index}")
    from sentiment.alerts import stored_alerts

    summaries = stored_alerts(settings).column("summary").to_pylist()
    for summary in summaries[-3:]:
        print(f"    ALERT {summary}")
    if not summaries:
        print("    no sentiment alert")
    print("\n    Reorder proposals (gold.sc_reorder_proposals, first 5 by predicted stock-out):")
    rows = con.execute(
        "SELECT sku, store_id, position, rop, proposed_qty, predicted_stockout_date "
        "FROM sc_reorder_proposals WHERE reorder_now "
        "ORDER BY predicted_stockout_date NULLS LAST, sku, store_id LIMIT 5"
    ).fetchall()
    for sku, store, position, rop, qty, stockout in rows:
        print(
            f"    {sku:<6} {store:<12} position {position:>6}  ROP {rop:>6}  order {qty:>6}"
            f"  stock-out {stockout or '-'}"
        )
    if not rows:
        print("    none: every SKU × store is above its reorder point")


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
        if {"fraud_kpis", "sentiment_daily", "sc_reorder_proposals"} <= _tables(con):
            _print_use_cases(con, settings)
    finally:
        con.close()
    print(
        f"\n    Lake: {settings.lake_root}   Gold (DuckDB, open read-only in any BI tool): {gold}"
        f"\n    Lineage events: {settings.lineage_file}"
        "\n    Next: `make ui` (Dagster UI: runs, asset graph, checks, sensors on "
        "http://127.0.0.1:3000), `make docs` (KPI definitions on http://127.0.0.1:8080)"
    )
    from lakehouse.bi import DASHBOARDS, dashboard_urls

    print(
        "\n    Dashboards: `make bi` starts Superset (login printed there), then open"
        + "".join(
            f"\n      {DASHBOARDS[slug]:<15} {url}"
            for slug, url in dashboard_urls(settings).items()
        )
    )
