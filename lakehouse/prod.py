"""`lakehouse prod up|down|status`: the production Dagster instance — webserver and daemon as
two long-running processes on the PostgreSQL instance (LAKEHOUSE_DAGSTER_POSTGRES_URL), with
the queued run coordinator and its limits from `lakehouse/instance.py`.

Each process runs in its own session (so `down` stops it and its children, and a terminal's
Ctrl-C does not), with its pid and log under `<home>/prod/`. `up` returns once the webserver
answers; `down` sends SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.instance import ensure_dagster_home

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("webserver", "daemon")


@dataclass(frozen=True)
class ProdProcess:
    name: str
    pid: int | None
    running: bool


def _folder(settings: Settings) -> Path:
    return settings.home / "prod"


def _pid_file(settings: Settings, name: str) -> Path:
    return _folder(settings) / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no procfs: trust the signal
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    # an empty command line: the process is still being set up; else a reused pid is not ours
    return not cmdline or b"dagster" in cmdline


def status(settings: Settings) -> list[ProdProcess]:
    out = []
    for name in PROCESSES:
        path = _pid_file(settings, name)
        pid = int(path.read_text()) if path.exists() else None
        out.append(ProdProcess(name, pid, pid is not None and _alive(pid)))
    return out


def up(
    settings: Settings, host: str = "127.0.0.1", port: int = 3000, timeout_s: float = 180
) -> str:
    """Start the webserver and the daemon on the PostgreSQL instance; returns the UI URL."""
    if not settings.dagster_postgres_url:
        raise ConfigError(
            "lakehouse prod up needs LAKEHOUSE_DAGSTER_POSTGRES_URL (postgresql://user@host:"
            "port/db): set it, or use `lakehouse ui` for the single-machine SQLite profile"
        )
    if any(p.running for p in status(settings)):
        raise LakehouseError("the production instance is already up: `lakehouse prod down` first")
    home = ensure_dagster_home(settings)
    folder = _folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).absolute().parent
    workspace = str(ROOT / "workspace.yaml")
    commands = {
        "webserver": [
            str(bin_dir / "dagster-webserver"),
            *("-h", host, "-p", str(port), "-w", workspace),
        ],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
    }
    env = dict(os.environ) | {"DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
    for name, command in commands.items():
        with (folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _pid_file(settings, name).write_text(str(process.pid))
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not all(p.running for p in status(settings)):
            down(settings)
            raise LakehouseError(f"the production instance stopped while starting: see {folder}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return url
        except OSError:
            time.sleep(0.5)
    down(settings)
    raise LakehouseError(f"the Dagster webserver did not answer on {url}: see {folder}")


def down(settings: Settings, grace_s: float = 20) -> list[str]:
    """Stop the processes `up` started (SIGTERM to each one's session, SIGKILL after
    `grace_s`); returns the names stopped."""
    stopped = []
    for process in status(settings):
        path = _pid_file(settings, process.name)
        if process.pid is not None and process.running:
            os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _alive(process.pid) and time.monotonic() < deadline:
                _reap(process.pid)
                time.sleep(0.2)
            if _alive(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            _reap(process.pid)
            stopped.append(process.name)
        path.unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    # our own child when `up` ran in this process: collect it (else it stays a zombie)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
