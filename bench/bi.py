"""BI layer: `make bi` on a fresh clone (install, provisioning, first healthy response) and the
time each dashboard takes until every chart rendered in headless Chromium, against the same
chart queries run directly in DuckDB (the floor).

    .venv/bin/python bench/bi.py --home .lakehouse              # the lake `make demo` built
    .venv/bin/python bench/bi.py --home .lakehouse --install    # + a fresh install of the lock

Superset runs from the repo's `.venv-bi` on a temporary LAKEHOUSE_HOME whose gold file is the
given home's (read-only). Provisioning is timed twice: the first ever (no metadata template:
`db upgrade` + `init` + admin + import, what a fresh clone does) and a second home (from the
template `up` keeps in .venv-bi). Each dashboard is opened twice in the same browser (first
and second load); the floor is the sum of its charts' SQL (as Superset generates it, from the
chart data API with `type=query`) run one after another on a new read-only DuckDB connection.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from _common import Timer, load, machine, print_table

from lakehouse import bi
from lakehouse.bi_check import check_dashboards, dashboard_charts, login
from lakehouse.config import Settings


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(home: Path, gold: Path) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_GOLD_DB": str(gold),
        "LAKEHOUSE_BI_PORT": str(_free_port()),
    }
    return Settings.from_env(env)


def floor_seconds(settings: Settings) -> dict[str, tuple[int, float]]:
    """dashboard -> (charts, seconds of its charts' SQL run one after another in DuckDB)."""
    client = login(settings)
    out: dict[str, tuple[int, float]] = {}
    for slug, charts in dashboard_charts(client).items():
        queries = []
        for chart in charts:
            answer = client.get(f"/api/v1/chart/{chart['id']}/data/", params={"type": "query"})
            queries += [r["query"] for r in answer.json()["result"]]
        timer = Timer()
        with duckdb.connect(str(settings.gold_db_path), read_only=True) as con:
            for sql in queries:
                con.execute(sql).fetchall()
        out[slug] = (len(charts), timer.seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".lakehouse"), help="a demo home")
    parser.add_argument("--install", action="store_true", help="also time a fresh install")
    args = parser.parse_args()
    source = Settings.from_env({**os.environ, "LAKEHOUSE_HOME": str(args.home)})
    gold = source.gold_db_path
    if not gold.exists():
        sys.exit(f"no gold file at {gold}: run `make demo` (or pass --home) first")
    print(f"{machine()}; {load()}")
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bi-") as tmp:
        if args.install:
            seconds = bi.install_environment(Path(tmp) / "venv-bi")
            size = sum(f.stat().st_size for f in (Path(tmp) / "venv-bi").rglob("*") if f.is_file())
            rows.append(
                ["install .venv-bi from the lock", f"{seconds:.1f} s", f"{size / 1e6:,.0f} MB"]
            )
            print(f"install: {seconds:.1f} s ({load()})", flush=True)
        bi.ensure_environment()
        template = bi._template_db()
        aside = Path(tmp) / "template.db"
        if template.exists():
            shutil.move(template, aside)
        first = _settings(Path(tmp) / "first", gold)
        second = _settings(Path(tmp) / "second", gold)
        try:
            report = bi.up(first)
            rows.append(
                [
                    "provision, first home (migrate + init + admin + import)",
                    f"{report.provision_s:.1f} s",
                    "",
                ]
            )
            rows.append(
                ["start → first healthy /health, first home", f"{report.start_s:.1f} s", ""]
            )
            print(
                f"first home: {report.provision_s:.1f} + {report.start_s:.1f} s ({load()})",
                flush=True,
            )
            if not template.exists() and aside.exists():
                shutil.move(aside, template)
            report = bi.up(second)
            rows.append(
                [
                    "provision, next home (template + admin + import)",
                    f"{report.provision_s:.1f} s",
                    "",
                ]
            )
            rows.append(["start → first healthy /health, next home", f"{report.start_s:.1f} s", ""])
            timer = Timer()
            bi.up(second)
            rows.append(["`bi up` again (running, bundle unchanged)", f"{timer.seconds:.1f} s", ""])
            print(
                f"next home: {report.provision_s:.1f} + {report.start_s:.1f} s ({load()})",
                flush=True,
            )
            bi.down(first)
            cold = check_dashboards(second)
            warm = check_dashboards(second)
            floor = floor_seconds(second)
        finally:
            bi.down(first)
            bi.down(second)
            if aside.exists() and not template.exists():
                shutil.move(aside, template)
    print()
    print_table(["step", "time", "size"], rows)
    print()
    print_table(
        [
            "dashboard",
            "charts",
            "first load (s)",
            "second load (s)",
            "DuckDB floor (s)",
            "all rendered",
        ],
        [
            [
                c.title,
                c.expected_charts,
                c.seconds,
                w.seconds,
                floor[c.slug][1],
                "yes" if c.ok and w.ok else "NO",
            ]
            for c, w in zip(cold, warm, strict=True)
        ],
    )
    print(f"\n{load()} at the end; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
