"""The supply actions' proof, on a lake the product builds itself: an embedded broker, two
years of the supply generator's history (`lakehouse generate supply --backfill-days 730`,
seed 42), exactly-once ingestion into raw, the silver steps, then `lakehouse supply simulate`'s
report (`forecasting.replay.replay_report`): the forecast-driven policy vs a naive fixed rule,
and no action / reorder only / reorder + transfers / reorder + transfers + ETA alerts on the
same demand, initial stock and carrier delays. Prints the report, the time it took and the
load average; asserts nothing.

    .venv/bin/python bench/supply_replay.py [--days 730] [--weeks 8] [--scale 0.01] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} ({os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=730, help="days of generated history")
    parser.add_argument("--weeks", type=int, default=8, help="replayed weeks")
    parser.add_argument("--scale", type=float, default=0.01, help="generator scale")
    parser.add_argument("--max-series", type=int, default=0, help="0 = every series")
    parser.add_argument("--keep", action="store_true", help="keep the temporary LAKEHOUSE_HOME")
    args = parser.parse_args()

    from forecasting.pipeline import ForecastOptions
    from forecasting.replay import replay_report
    from ingestion.broker import EmbeddedBroker
    from ingestion.generators.supply import HISTORY_TOPICS
    from ingestion.raw import ingest_batch
    from lake.silver import build_silver
    from lakehouse.config import Settings
    from lakehouse.generate import backfill_supply

    home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-replay-", dir="/tmp"))
    settings = Settings.from_env(
        {"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_BROKER_PORT": str(_free_port())}
    )
    broker = EmbeddedBroker(settings)
    print(f"bench/supply_replay.py: {args.days} days, scale {args.scale}; {_load()}", flush=True)
    try:
        broker.start()
        broker.ensure_topics()
        started = time.perf_counter()
        sent = backfill_supply(broker.bootstrap, args.days, seed=42, scale=args.scale)
        for topic in HISTORY_TOPICS:
            while True:
                batch = ingest_batch(settings, topic, broker.bootstrap)
                if batch.end_offsets == batch.high_watermarks:
                    break
        for topic in HISTORY_TOPICS:
            build_silver(settings, f"silver_{topic}")
        print(
            f"lake built in {time.perf_counter() - started:.0f}s "
            f"({sum(sent.values()):,} events); {_load()}",
            flush=True,
        )
        started = time.perf_counter()
        options = ForecastOptions(max_series=args.max_series or None)
        print(replay_report(settings, weeks=args.weeks, options=options))
        print(f"\nreplay: {time.perf_counter() - started:.0f}s; {_load()}")
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
