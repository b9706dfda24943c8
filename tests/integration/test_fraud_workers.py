"""`lakehouse fraud serve --workers 2` against one worker, over real HTTP and the real Redis
(its own database and key prefix, emptied before and after each service: another run of
this suite on the same Redis cannot touch its keys): the same transaction stream — the
seed's worked example, a card-testing burst and ordinary traffic of cards sharing devices,
accounts and merchants — gets the same decisions, scores and reasons, when replayed
sequentially per lane and concurrently across lanes (each lane its own cards, merchants,
devices, IPs and category, so the order between lanes cannot change a feature), each request
on a new connection so that one card's payments are spread over both workers. A burst of
identical payments fired at once at one card gets, as a set, exactly the decisions one worker
gives them one after the other: no two workers decided on the same prior state. Every request
carries a service token (LAKEHOUSE_API_TOKENS): the workers check it as one process does.
Each worker stops when idle (`--exit-when-idle`) and follows the champion alias."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from testkit import SEED_TRANSACTION, free_port

from fraud.champion import train_simulated_champion
from fraud.store import RedisStore
from governance.tokens import hash_token, new_token
from lakehouse.config import Settings

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/11"  # this test's own database
REDIS_PREFIX = f"test:fraud-workers:{uuid.uuid4().hex}:"  # this run's own keys
END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
FIELDS = ("transaction_id", "decision", "score", "reasons", "rule_ids", "anomaly_score")
TOKEN = new_token("fraud-ops-user", "fraud_ops")[0]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A home whose registry holds a champion trained on simulated data (asked for), and a
    service token that every request carries."""
    home = Path(tmp_path_factory.mktemp("fraud-workers"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    environment |= {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_REDIS_URL": REDIS_URL,
        "LAKEHOUSE_REDIS_PREFIX": REDIS_PREFIX,
        "LAKEHOUSE_API_TOKENS": f"{hash_token(TOKEN)}=fraud-ops-user:fraud_ops",
    }
    train_simulated_champion(
        Settings.from_env(environment), lambda _: None, days=21, scale=0.04, end=END
    )
    return environment


def _clear_redis() -> None:
    store = RedisStore(REDIS_URL, REDIS_PREFIX)
    store.clear()
    store.close()


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _service(
    env: dict[str, str], workers: int, reload_seconds: int = 0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`lakehouse fraud serve --workers N` on a free port and an empty Redis database; on exit
    SIGTERM, which must end every worker, then the service by that signal (as uvicorn does
    once its requests are finished)."""
    _clear_redis()
    port = free_port()
    cmd = [
        LAKEHOUSE,
        "fraud",
        "serve",
        "--port",
        str(port),
        "--reload-seconds",
        str(reload_seconds),
    ]
    proc = subprocess.Popen(
        [*cmd, "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    workers_pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/healthz", headers=AUTH, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        if workers > 1:  # every worker up before the stream starts
            while len(workers_pids) < workers and time.monotonic() < deadline:
                workers_pids = _worker_pids(proc.pid)
                time.sleep(0.2)
        yield url, proc
    finally:
        workers_pids = workers_pids or _worker_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
        _clear_redis()
    assert proc.returncode == -signal.SIGTERM, output
    assert not [pid for pid in workers_pids if Path(f"/proc/{pid}").exists()]


def _at(minutes: float) -> str:
    return (datetime(2025, 8, 16, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _lanes() -> list[list[dict]]:
    """Lane 0: the seed's worked example then a card-testing burst (thirty payments of 1-3 €
    at thirty merchants within a minute, each from another device and IP). Lanes 1-4: three
    cards of two accounts sharing a device, paying at four merchants over three hours, with
    a jump to another country and larger amounts at the end."""
    burst = [
        {
            **SEED_TRANSACTION,
            "transaction_id": f"tx_burst_{i}",
            "card_hash": "card_burst",
            "account_id": "acc_burst",
            "amount": round(1.0 + (i % 21) / 10, 2),
            "merchant_id": f"m_burst_{i}",
            "merchant_category": "digital_goods",
            "timestamp": f"2025-08-16T14:00:{2 * i:02d}Z",
            "device_id": f"dvc_burst_{i}",
            "ip": f"10.9.{i}.{i + 1}",
        }
        for i in range(30)
    ]
    lanes = [[SEED_TRANSACTION, *burst]]
    for lane in range(1, 5):
        events = []
        for step in range(12):
            card = step % 3
            late = step >= 9
            events.append(
                {
                    **SEED_TRANSACTION,
                    "transaction_id": f"tx_l{lane}_{step}",
                    "timestamp": _at(15 * step + lane),
                    "account_id": f"acc_l{lane}_{card % 2}",
                    "card_hash": f"card_l{lane}_{card}",
                    "amount": round(12.5 * (lane + 1) + 7.3 * step + (900 if late else 0), 2),
                    "merchant_id": f"m_l{lane}_{step % 4}",
                    "merchant_category": f"grocery_l{lane}",
                    "channel": "pos" if step % 2 else "ecom",
                    "country": "BR" if late else "FR",
                    "device_id": f"dvc_l{lane}_shared" if step % 2 else f"dvc_l{lane}_{card}",
                    "ip": f"10.{lane}.0.{step % 5}",
                    "lat": -23.55 if late else 48.85 + 0.01 * step,
                    "lon": -46.63 if late else 2.35,
                }
            )
        lanes.append(events)
    return lanes


def _decide(url: str, event: dict) -> dict:
    reply = httpx.post(
        f"{url}/v1/decisions", json=event, headers=AUTH, timeout=30
    )  # new connection
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return {k: body[k] for k in FIELDS}


def _concurrently(jobs: list, run) -> list:
    results: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def one(i: int) -> None:
        start.wait()
        results[i] = run(jobs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _same_card_burst() -> list[dict]:
    """Twenty identical 2 € payments of one card in the same second, each at another
    merchant from another device: what a decision sees depends only on how many came first."""
    return [
        {
            **SEED_TRANSACTION,
            "transaction_id": f"tx_race_{i}",
            "card_hash": "card_race",
            "account_id": "acc_race",
            "amount": 2.0,
            "merchant_id": f"m_race_{i}",
            "merchant_category": "digital_goods_race",
            "timestamp": "2025-08-16T16:00:00Z",
            "device_id": f"dvc_race_{i}",
            "ip": f"10.99.{i}.1",
        }
        for i in range(20)
    ]


def _outcome(reply: dict) -> tuple:
    return (reply["decision"], reply["score"], tuple(reply["rule_ids"]), tuple(reply["reasons"]))


def test_two_workers_decide_as_one(env: dict[str, str]) -> None:
    lanes = _lanes()
    race = _same_card_burst()
    with _service(env, 1) as (url, _):
        single = [[_decide(url, event) for event in lane] for lane in lanes]
        single_race = [_decide(url, event) for event in race]

    with _service(env, 2) as (url, proc):
        workers = _worker_pids(proc.pid)
        assert len(workers) == 2
        cpu_before = [_cpu_seconds(pid) for pid in workers]
        both = _concurrently(lanes, lambda lane: [_decide(url, event) for event in lane])
        cpu_used = [_cpu_seconds(pid) - s for pid, s in zip(workers, cpu_before, strict=True)]
        both_race = _concurrently(race, lambda event: _decide(url, event))
        # token auth in every worker: without the token, every connection gets 401
        refused = [
            httpx.post(f"{url}/v1/decisions", json=SEED_TRANSACTION, timeout=30).status_code
            for _ in range(10)
        ]

    assert both == single  # every decision, score, reason, rule and anomaly score
    assert refused == [401] * 10
    # both workers decided part of the stream (an idle worker uses no measurable CPU)
    assert all(seconds >= 0.05 for seconds in cpu_used), cpu_used
    seed, burst = single[0][0], single[0][1:]
    assert seed["decision"] == "ALLOW" and seed["rule_ids"] == []
    assert [r["decision"] for r in burst[9:]] == ["BLOCK"] * 21  # 10th merchant within the hour
    assert all("R005_card_payments_per_minute" in r["rule_ids"] for r in burst[4:])
    assert {r["decision"] for lane in single[1:] for r in lane} >= {"ALLOW"}
    # concurrent payments of one card: the positions 1..20 each taken once, as in one worker
    outcomes = sorted(_outcome(r) for r in both_race)
    assert outcomes == sorted(_outcome(r) for r in single_race)
    assert sum("R005_card_payments_per_minute" in r["rule_ids"] for r in single_race) == 16


def test_each_worker_stops_when_idle_and_the_service_with_the_last(env: dict[str, str]) -> None:
    _clear_redis()
    port = free_port()
    proc = subprocess.Popen(
        [
            LAKEHOUSE,
            "fraud",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--reload-seconds",
            "0",
            "--exit-when-idle",
        ],
        env=env | {"LAKEHOUSE_IDLE_EXIT_SECONDS": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        _clear_redis()
    assert proc.returncode == 0, output
    assert output.count("no request for 4 s (LAKEHOUSE_IDLE_EXIT_SECONDS): exiting") == 2
    assert "2 workers" in output


def test_every_worker_reloads_the_champion_when_the_alias_moves(env: dict[str, str]) -> None:
    from mlflow import MlflowClient

    from fraud.training import (
        MODEL_NAME,
        configure_registry,
        simulated_history,
        train_and_register,
    )

    settings = Settings.from_env(env)
    configure_registry(settings)

    def served_versions(n: int) -> set[str]:  # n new connections, spread over the workers
        return {
            httpx.get(f"{url}/healthz", headers=AUTH, timeout=10).json()["model_version"]
            for _ in range(n)
        }

    with _service(env, 2, reload_seconds=1) as (url, _):
        before = served_versions(10)
        assert len(before) == 1
        tx, labels, end = simulated_history(settings, days=21, scale=0.04, seed=8, end=END)
        moved = train_and_register(settings, tx, labels, end, source="simulated").model.version
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", moved)
        assert {moved} != before
        deadline = time.monotonic() + 60
        while served_versions(20) != {moved} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert served_versions(20) == {moved}  # every worker's watcher moved
