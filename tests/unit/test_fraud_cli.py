"""`lakehouse fraud serve` on a taken port or with workers but no Redis, the label-delay settings, promotion's NaN guard."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fraud.training import split_options
from lakehouse.config import Settings
from lakehouse.errors import ConfigError, PromotionRefused
from lakehouse.registry import check_comparable


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lakehouse fraud serve ARGS` in a fresh home, no LAKEHOUSE_* setting inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env |= {"LAKEHOUSE_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", "fraud", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_on_a_taken_port_fails_first_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "--port P" in done.stderr
    assert not (tmp_path / "home" / "mlflow").exists()  # nothing loaded or trained first


def test_serve_workers_without_redis_fails_with_one_line(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--workers", "2")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert done.stderr.startswith("error: --workers 2 needs the Redis feature store")
    assert "LAKEHOUSE_REDIS_URL=redis://" in done.stderr
    assert not (tmp_path / "home" / "mlflow").exists()  # refused before anything loads


def test_label_delay_windows_are_settings() -> None:
    options = split_options(Settings.from_env({}))
    assert (options.val_days, options.gap_days, options.maturity_days) == (5.0, 2.0, 5.0)
    env = {
        "LAKEHOUSE_FRAUD_VAL_DAYS": "3",
        "LAKEHOUSE_FRAUD_GAP_DAYS": "1.5",
        "LAKEHOUSE_FRAUD_MATURITY_DAYS": "10",
    }
    options = split_options(Settings.from_env(env))
    assert (options.val_days, options.gap_days, options.maturity_days) == (3.0, 1.5, 10.0)
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(ConfigError) as error:
            Settings.from_env({"LAKEHOUSE_FRAUD_MATURITY_DAYS": bad})
        assert "LAKEHOUSE_FRAUD_MATURITY_DAYS" in str(error.value)
        assert "\n" not in str(error.value)


def test_a_missing_or_nan_metric_is_never_compared() -> None:
    check_comparable("m", "ap", 0.4, None)  # no champion yet: fine
    check_comparable("m", "ap", 0.4, 0.5)
    for value, champion in ((float("nan"), None), (None, 0.5), (0.4, float("nan"))):
        with pytest.raises(PromotionRefused) as refused:
            check_comparable("m", "ap", value, champion)
        assert "not registered" in str(refused.value)
