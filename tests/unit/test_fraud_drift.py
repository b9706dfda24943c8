"""PSI of the drift asset: stable distributions score ~0, shifted ones cross the thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraud.drift import FAIL, WARN, drift_report, psi
from fraud.features import FEATURES


def test_psi_thresholds() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    assert psi(reference, rng.normal(0, 1, 5_000)) < 0.02
    assert WARN < psi(reference, rng.normal(0.4, 1, 5_000)) < FAIL
    assert psi(reference, rng.normal(1.5, 1, 5_000)) > FAIL
    # missing values are their own bin: a feature that starts missing drifts
    assert psi(reference, np.full(5_000, np.nan)) > FAIL
    # the textbook formula on two explicit bins
    ref, new = np.array([0.0] * 50 + [1.0] * 50), np.array([0.0] * 80 + [1.0] * 20)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(ref, new, bins=2) == pytest.approx(expected)


def test_drift_report_compares_the_latest_day_with_the_history() -> None:
    rng = np.random.default_rng(1)
    start = datetime(2025, 8, 1, tzinfo=UTC)
    n_ref, n_new = 6_000, 1_000
    ts = [start + timedelta(minutes=i) for i in range(n_ref)] + [
        start + timedelta(days=6, minutes=i) for i in range(n_new)
    ]
    columns = {f: rng.normal(0, 1, n_ref + n_new) for f in FEATURES}
    columns["amount"][n_ref:] += 3  # the latest day's amounts moved
    frame = pl.DataFrame(
        {"transaction_id": [f"t{i}" for i in range(n_ref + n_new)], "ts": ts, **columns}
    )
    report = drift_report(frame, None, None)
    assert report.latest_rows == n_new and report.reference_rows == n_ref
    assert report.worst[0] == "amount" and report.worst[1] > FAIL
    assert report.feature_psi["hour_utc"] < WARN
    small = drift_report(frame.tail(1_100), None, None)  # too little history: nothing reported
    assert small.worst == ("", 0.0)


def test_reference_is_the_training_window_when_known() -> None:
    rng = np.random.default_rng(2)
    start = datetime(2025, 8, 1, tzinfo=UTC)
    n = 9_000
    ts = [start + timedelta(minutes=i) for i in range(n)]  # 6.25 days
    columns = {f: rng.normal(0, 1, n) for f in FEATURES}
    columns["amount"][3000:] += 3  # shifted since day ~2: only an early reference sees it
    frame = pl.DataFrame({"transaction_id": [f"t{i}" for i in range(n)], "ts": ts, **columns})
    everything = drift_report(frame, None, None)
    training = drift_report(frame, None, None, (start, start + timedelta(days=2)))
    assert training.feature_psi["amount"] > FAIL
    assert training.feature_psi["amount"] > 2 * everything.feature_psi["amount"]


def test_drift_psi_rows_one_per_feature_and_the_score() -> None:
    from fraud.drift import DRIFT_PSI_COLUMNS, DriftReport, drift_psi_rows

    report = DriftReport(
        2000, 300, "2026-11-02", {"amount": 0.31, "hour": float("nan")}, 0.05, 0.01
    )
    at = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
    rows = drift_psi_rows(report, at)
    assert rows.schema == DRIFT_PSI_COLUMNS
    assert rows.select("feature", "psi").rows() == [
        ("amount", 0.31),
        ("hour", None),
        ("score", 0.05),
    ]
    assert set(rows["latest_day"].cast(str)) == {"2026-11-02"}
    assert set(rows["reference_rows"]) == {2000} and set(rows["computed_at"]) == {at}
