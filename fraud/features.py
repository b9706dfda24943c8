"""Fraud features: one definition, two paths (batch over silver, online per request).

Every feature of a transaction is computed from the transactions *before* it in the order
(event time, transaction_id), plus the transaction itself for the velocity windows, and from
the labels *reported before* its event time. The batch path (`batch_features`) computes all
rows at once with numpy over sorted columns (searchsorted windows, cumulative sums); the
online path (`online_features`, used by the decision service and `fraud.store`) computes one
row from an entity snapshot. `tests/unit/test_fraud_features.py` replays one stream through
both and asserts identical values.

Identifiers are the silver ones: `card_hash`, `account_hash`, `ip_hash` (HMAC pseudonyms,
see `fraud.pseudonyms`), `device_id`, `merchant_id`, `merchant_category`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl

MINUTE_US = 60_000_000
WINDOWS_US = {"1m": MINUTE_US, "5m": 5 * MINUTE_US, "1h": 60 * MINUTE_US}
ZSCORE_WINDOW_US = 7 * 24 * 60 * MINUTE_US
DAY_US = 24 * 60 * MINUTE_US
# spending profiles of the card and recent risk of the merchant (terminal), in days
PROFILE_WINDOWS_US = {"1d": DAY_US, "7d": 7 * DAY_US, "30d": 30 * DAY_US}
# the longest look-back of any window: a micro-batch reads this much context before its
# earliest transaction; everything older is summarised (PriorHistory)
CONTEXT_US = max(ZSCORE_WINDOW_US, *PROFILE_WINDOWS_US.values())
ENTITIES = {"card": "card_hash", "device": "device_id", "ip": "ip_hash"}
GRAPH_PAIRS = {  # feature -> (node whose neighbours are counted, neighbour)
    "accounts_per_device": ("device_id", "account_hash"),
    "accounts_per_ip": ("ip_hash", "account_hash"),
    "devices_per_account": ("account_hash", "device_id"),
    "ips_per_account": ("account_hash", "ip_hash"),
}
NEW_FLAGS = {
    "new_device_for_account": "devices_per_account",
    "new_ip_for_account": "ips_per_account",
}
RISK_PRIOR_RATE = 0.005  # prior fraud rate of a merchant / category with no history
RISK_PRIOR_WEIGHT = 50.0  # pseudo-transactions of the prior (smoothing strength)
EARTH_RADIUS_KM = 6371.0088
MIN_STD = 0.01  # below this the 7-day std is degenerate: z-score undefined
MIN_MINUTES = 1 / 60  # km_per_min divides by at least one second

VELOCITY = [
    f"{name}_{entity}"
    for entity in ENTITIES
    for name in ("count_tx_1m", "count_tx_5m", "count_tx_1h", "sum_amount_5m", "uniq_merchant_1h")
]
FEATURES: list[str] = [
    "amount",
    "is_ecom",
    "hour_utc",
    *VELOCITY,
    "dist_prev_km",
    "km_per_min",
    "country_changed",
    "amount_zscore_7d",
    "card_tx_7d",
    "merchant_risk",
    "mcc_risk",
    "merchant_tx_before",
    *GRAPH_PAIRS,
    "new_device_for_account",
    "new_ip_for_account",
    "component_size",
]
# practitioners' standard features (feature families, added one at a time in bench/fraud.py)
CARD_PROFILE = [
    "card_tx_1d",
    "card_tx_30d",
    *(f"card_mean_amount_{w}" for w in PROFILE_WINDOWS_US),
    "amount_to_card_mean_30d",
]
MERCHANT_WINDOWS = [
    *(f"merchant_tx_{w}" for w in PROFILE_WINDOWS_US),
    *(f"merchant_frauds_{w}" for w in PROFILE_WINDOWS_US),
    *(f"merchant_fraud_rate_{w}" for w in PROFILE_WINDOWS_US),
    "amount_to_merchant_mean",
]
TIMING = ["seconds_since_prev_card", "weekday", "is_weekend", "is_night"]
BASE_FEATURES = list(FEATURES)
FEATURES += [*CARD_PROFILE, *MERCHANT_WINDOWS, *TIMING]
FAMILIES = {
    "base": BASE_FEATURES,
    "card profile": CARD_PROFILE,
    "merchant windows": MERCHANT_WINDOWS,
    "timing": TIMING,
}
DESCRIPTIONS = {
    "amount": "amount",
    "is_ecom": "e-commerce channel",
    "hour_utc": "hour of day",
    "dist_prev_km": "distance from the card's previous transaction",
    "km_per_min": "travel speed since the card's previous transaction",
    "country_changed": "country differs from the card's previous transaction",
    "amount_zscore_7d": "amount vs the card's 7-day average (z-score)",
    "card_tx_7d": "card's transactions in the last 7 days",
    "merchant_risk": "merchant's historical fraud rate",
    "mcc_risk": "merchant category's historical fraud rate",
    "merchant_tx_before": "merchant's transaction history",
    "accounts_per_device": "accounts seen on this device",
    "accounts_per_ip": "accounts seen on this IP",
    "devices_per_account": "devices used by this account",
    "ips_per_account": "IPs used by this account",
    "new_device_for_account": "new device for this account",
    "new_ip_for_account": "new IP for this account",
    "component_size": "devices, accounts and IPs linked to this account",
    "card_tx_1d": "card's transactions in the last day",
    "card_tx_30d": "card's transactions in the last 30 days",
    "card_mean_amount_1d": "card's mean amount over the last day",
    "card_mean_amount_7d": "card's mean amount over the last 7 days",
    "card_mean_amount_30d": "card's mean amount over the last 30 days",
    "amount_to_card_mean_30d": "amount vs the card's 30-day mean amount (ratio)",
    "amount_to_merchant_mean": "amount vs the merchant's mean amount (ratio)",
    "seconds_since_prev_card": "time since the card's previous transaction (s)",
    "weekday": "day of week (0 = Monday)",
    "is_weekend": "weekend",
    "is_night": "night (00:00-06:00 UTC)",
    **{f"merchant_tx_{w}": f"merchant's transactions in the last {w}" for w in PROFILE_WINDOWS_US},
    **{
        f"merchant_frauds_{w}": f"frauds reported at this merchant in the last {w}"
        for w in PROFILE_WINDOWS_US
    },
    **{
        f"merchant_fraud_rate_{w}": f"merchant's fraud rate over the last {w}"
        for w in PROFILE_WINDOWS_US
    },
}


def describe(feature: str) -> str:
    """Words for a feature (reason codes)."""
    if feature in DESCRIPTIONS:
        return DESCRIPTIONS[feature]
    name, entity = feature.rsplit("_", 1)
    what = {
        "count_tx_1m": "transactions in the last minute",
        "count_tx_5m": "transactions in the last 5 minutes",
        "count_tx_1h": "transactions in the last hour",
        "sum_amount_5m": "amount spent in the last 5 minutes",
        "uniq_merchant_1h": "distinct merchants in the last hour",
    }[name]
    return f"{what} on this {entity}"


# ---- shared formulas (scalars or arrays) -------------------------------------------------
def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (mean Earth radius)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def zscore(amount, mean, std):
    """(amount - mean_7d) / std_7d (seed: (249.90 - 60) / 40 = 4.75); NaN when std degenerate."""
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > MIN_STD, (np.asarray(amount) - mean) / std, np.nan)


def smoothed_rate(frauds, transactions):
    """Historical fraud rate shrunk towards the prior: (k + m·p0) / (n + m)."""
    return (np.asarray(frauds, dtype=np.float64) + RISK_PRIOR_WEIGHT * RISK_PRIOR_RATE) / (
        np.asarray(transactions, dtype=np.float64) + RISK_PRIOR_WEIGHT
    )


def speed_km_per_min(dist_km, seconds):
    return dist_km / np.maximum(np.asarray(seconds, dtype=np.float64) / 60.0, MIN_MINUTES)


# ---- what history leaves behind ----------------------------------------------------------
GRAPH_NODES = {"account_hash": "a:", "device_id": "d:", "ip_hash": "i:"}  # -> store name prefix
EDGE_COLUMNS = ("device_id", "ip_hash")  # the graph's edges: account ↔ device, account ↔ IP
PAIR_EDGES = {  # GRAPH_PAIRS feature -> the EDGE_COLUMNS edges it counts
    feature: neighbour if node == "account_hash" else node
    for feature, (node, neighbour) in GRAPH_PAIRS.items()
}


@dataclass
class PriorHistory:
    """What the transactions before some point leave to the features of later ones: the
    windows reach back at most CONTEXT_US (30 days), everything else (merchant counts and
    amounts, the card's previous transaction, the graph, fraud labels) is summarised here.
    `batch_features` over the rows from that point on plus this summary gives every row at
    least CONTEXT_US after it exactly the features of a run over the whole history; the
    online stores load it (`FeatureStore.load`) instead of replaying the history."""

    merchant_tx: pl.DataFrame  # merchant_id, n
    mcc_tx: pl.DataFrame  # merchant_category, n
    merchant_amount: pl.DataFrame  # merchant_id, total: sum of its amounts
    card_last: pl.DataFrame  # card_hash, t (µs), lat, lon, country: the latest transaction
    edges: dict[str, pl.DataFrame]  # EDGE_COLUMNS -> distinct (account_hash, column)
    fraud_labels: pl.DataFrame  # transaction_id, merchant_id, merchant_category, t (µs)


def prior_history(transactions: pl.DataFrame, labels: pl.DataFrame | None) -> PriorHistory:
    """Summarise `transactions` (silver columns) and the fraud labels of those transactions."""
    tx = transactions.sort("ts", "transaction_id")
    return PriorHistory(
        merchant_tx=tx.group_by("merchant_id").len("n"),
        mcc_tx=tx.group_by("merchant_category").len("n"),
        merchant_amount=tx.group_by("merchant_id").agg(
            pl.col("amount").cast(pl.Float64).sum().alias("total")
        ),
        card_last=tx.filter(pl.col("card_hash").is_not_null())
        .group_by("card_hash")
        .agg(
            pl.col("ts").last().dt.epoch("us").alias("t"),
            pl.col("lat").last().cast(pl.Float64),
            pl.col("lon").last().cast(pl.Float64),
            pl.col("country").last(),
        ),
        edges={
            column: tx.select("account_hash", column).drop_nulls().unique(maintain_order=True)
            for column in EDGE_COLUMNS
        },
        fraud_labels=_fraud_label_times(tx, labels),
    )


# ---- batch path ---------------------------------------------------------------------------
def _codes(series: pl.Series) -> np.ndarray:
    """Dense integer code per value, -1 for null."""
    codes = series.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64)
    return codes.fill_null(-1).to_numpy()


def _grouped_keys(code: np.ndarray, t_rel: np.ndarray, stride: int) -> np.ndarray:
    return code.astype(np.int64) * stride + t_rel


def batch_features(
    transactions: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    prior: PriorHistory | None = None,
) -> pl.DataFrame:
    """Features of every transaction of `transactions` (silver columns), using only the
    transactions before it (those of `prior` included) and the labels reported before its
    time. Rows come back in the order (ts, transaction_id) with `transaction_id`, `ts` and
    FEATURES."""
    tx = transactions.sort("ts", "transaction_id")
    n = tx.height
    out: dict[str, np.ndarray] = {}
    ts = tx["ts"].dt.epoch("us").to_numpy().astype(np.int64)
    amount = tx["amount"].cast(pl.Float64).to_numpy()
    label_times = _fraud_label_times(tx, labels)
    if prior is not None:
        label_times = pl.concat([prior.fraud_labels, label_times])
    t_min = int(ts.min()) if n else 0
    t_max = max(int(ts.max()) if n else 0, int(label_times["t"].max()) if label_times.height else 0)
    stride = t_max - t_min + CONTEXT_US + 1
    t_rel = ts - t_min
    out["amount"] = amount
    out["is_ecom"] = (tx["channel"] == "ecom").cast(pl.Float64).to_numpy()
    out["hour_utc"] = tx["ts"].dt.hour().cast(pl.Float64).to_numpy()
    out["weekday"] = (tx["ts"].dt.weekday() - 1).cast(pl.Float64).to_numpy()
    out["is_weekend"] = (out["weekday"] >= 5).astype(np.float64)
    out["is_night"] = (out["hour_utc"] < 6).astype(np.float64)
    cards = _codes(tx["card_hash"])
    merchants = _codes(tx["merchant_id"])
    for entity, column in ENTITIES.items():
        _velocity(out, entity, _codes(tx[column]), t_rel, amount, merchants, stride)
    _card_history(out, tx, cards, t_rel, amount, stride)
    if prior is not None:
        _card_previous_from(out, prior.card_last, tx, ts)
    for name, column in (("merchant", "merchant_id"), ("mcc", "merchant_category")):
        before = (
            None if prior is None else (prior.merchant_tx if name == "merchant" else prior.mcc_tx)
        )
        _risk(out, name, tx, column, label_times, t_min, stride, before)
    _merchant_windows(out, tx, merchants, t_rel, amount, label_times, t_min, prior)
    _graph(out, tx, prior)
    out["component_size"] = _components(tx, prior)
    frame = tx.select("transaction_id", "ts").with_columns(
        [pl.Series(name, out[name], dtype=pl.Float64) for name in FEATURES]
    )
    return frame.with_columns(pl.col(FEATURES).fill_nan(None))


def _fraud_label_times(tx: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    """First time each transaction was reported as fraud, with its merchant and category."""
    if labels is None or labels.height == 0:
        return pl.DataFrame(
            schema={
                "transaction_id": pl.String,
                "merchant_id": pl.String,
                "merchant_category": pl.String,
                "t": pl.Int64,
            }
        )
    first = (
        labels.filter(pl.col("is_fraud"))
        .group_by("transaction_id")
        .agg(pl.col("reported_at").min())
        .with_columns(pl.col("reported_at").dt.epoch("us").alias("t"))
    )
    return first.join(
        tx.select("transaction_id", "merchant_id", "merchant_category"), on="transaction_id"
    ).select("transaction_id", "merchant_id", "merchant_category", "t")


def _velocity(
    out: dict[str, np.ndarray],
    entity: str,
    code: np.ndarray,
    t_rel: np.ndarray,
    amount: np.ndarray,
    merchant: np.ndarray,
    stride: int,
) -> None:
    n = code.size
    valid = np.flatnonzero(code >= 0)
    order = valid[np.argsort(code[valid], kind="stable")]  # by entity, then (ts, id) order
    keys = _grouped_keys(code[order], t_rel[order], stride)
    pos = np.arange(order.size)
    csum = np.concatenate([[0.0], np.cumsum(amount[order])])
    for label, width in WINDOWS_US.items():
        start = np.searchsorted(keys, keys - width, side="right")
        count = np.full(n, np.nan)
        count[order] = pos - start + 1
        out[f"count_tx_{label}_{entity}"] = count
        if label == "5m":
            total = np.full(n, np.nan)
            total[order] = csum[pos + 1] - csum[start]
            out[f"sum_amount_5m_{entity}"] = total
        if label == "1h":
            out[f"uniq_merchant_1h_{entity}"] = _distinct_in_window(
                n, order, start, pos, code[order], merchant[order]
            )


def _distinct_in_window(
    n: int,
    order: np.ndarray,
    start: np.ndarray,
    pos: np.ndarray,
    group: np.ndarray,
    value: np.ndarray,
) -> np.ndarray:
    """Distinct `value`s among rows start..pos of each row's group: row j counts when the
    next row with the same (group, value) comes after pos. Looped over lags, vectorised
    over rows (a 1-hour window holds few rows)."""
    m = order.size
    next_same = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    if m:
        by_pair = np.lexsort((pos, value, group))
        same = (group[by_pair][1:] == group[by_pair][:-1]) & (
            value[by_pair][1:] == value[by_pair][:-1]
        )
        next_same[by_pair[:-1][same]] = by_pair[1:][same]
    distinct = np.zeros(m)
    active = np.arange(m)
    lag = 0
    while active.size:
        j = active - lag
        distinct[active] += next_same[j] > active
        lag += 1
        active = active[active - lag >= start[active]]
    result = np.full(n, np.nan)
    result[order] = distinct
    return result


def _card_history(
    out: dict[str, np.ndarray],
    tx: pl.DataFrame,
    cards: np.ndarray,
    t_rel: np.ndarray,
    amount: np.ndarray,
    stride: int,
) -> None:
    n = cards.size
    valid = np.flatnonzero(cards >= 0)
    order = valid[np.argsort(cards[valid], kind="stable")]
    has_prev = np.zeros(order.size, dtype=bool)
    has_prev[1:] = cards[order][1:] == cards[order][:-1]
    prev = np.full(n, -1)
    prev[order[1:][has_prev[1:]]] = order[:-1][has_prev[1:]]
    lat = tx["lat"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lon = tx["lon"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    country = _codes(tx["country"])
    dist = np.full(n, np.nan)
    rows = np.flatnonzero(prev >= 0)
    p = prev[rows]
    dist[rows] = haversine_km(lat[p], lon[p], lat[rows], lon[rows])
    speed = np.full(n, np.nan)
    speed[rows] = speed_km_per_min(dist[rows], (t_rel[rows] - t_rel[p]) / 1e6)
    changed = np.full(n, np.nan)
    changed[rows] = (country[rows] != country[p]).astype(np.float64)
    out["dist_prev_km"], out["km_per_min"], out["country_changed"] = dist, speed, changed
    since = np.full(n, np.nan)
    since[rows] = (t_rel[rows] - t_rel[p]) / 1e6
    out["seconds_since_prev_card"] = since
    # 7-day mean/std of the card's *previous* amounts (population std)
    keys = _grouped_keys(cards[order], t_rel[order], stride)
    start = np.searchsorted(keys, keys - ZSCORE_WINDOW_US, side="right")
    pos = np.arange(order.size)
    a = amount[order]
    k = (pos - start).astype(np.float64)  # previous transactions in the window
    # two-pass mean/std over each window, looped over lags and vectorised over rows (the
    # same arithmetic as the online path; cumulative sums would lose digits to cancellation)
    total = np.zeros(order.size)
    for rows, lag in _lags(pos, start):
        total[rows] += a[rows - lag]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / k
    squares = np.zeros(order.size)
    for rows, lag in _lags(pos, start):
        squares[rows] += (a[rows - lag] - mean[rows]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        var = squares / k
    z = np.where(k >= 2, zscore(a, mean, np.sqrt(var)), np.nan)
    out["amount_zscore_7d"] = np.full(n, np.nan)
    out["amount_zscore_7d"][order] = z
    out["card_tx_7d"] = np.full(n, np.nan)
    out["card_tx_7d"][order] = k
    # spending profile: count and mean amount of the card's previous transactions per window
    csum = np.concatenate([[0.0], np.cumsum(a)])
    for label, width in PROFILE_WINDOWS_US.items():
        begin = np.searchsorted(keys, keys - width, side="right")
        count = (pos - begin).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(count > 0, (csum[pos] - csum[begin]) / count, np.nan)
        if label != "7d":
            out[f"card_tx_{label}"] = np.full(n, np.nan)
            out[f"card_tx_{label}"][order] = count
        out[f"card_mean_amount_{label}"] = np.full(n, np.nan)
        out[f"card_mean_amount_{label}"][order] = mean
    with np.errstate(divide="ignore", invalid="ignore"):
        out["amount_to_card_mean_30d"] = amount / out["card_mean_amount_30d"]


def _card_previous_from(
    out: dict[str, np.ndarray], card_last: pl.DataFrame, tx: pl.DataFrame, ts: np.ndarray
) -> None:
    """Distance, speed and country change of each card's first row here since the card's
    latest transaction of the prior history."""
    first = np.flatnonzero(np.isnan(out["dist_prev_km"]) & np.isnan(out["country_changed"]))
    rows = tx[first].select("card_hash", "lat", "lon", "country")
    # the previous payment's columns under names of their own: a join on card_hash would
    # suffix them and leave the current row's lat/lon/country under the plain names
    previous = card_last.select(
        "card_hash",
        pl.col("t").alias("prev_t"),
        pl.col("lat").alias("prev_lat"),
        pl.col("lon").alias("prev_lon"),
        pl.col("country").alias("prev_country"),
    )
    looked = rows.join(previous, on="card_hash", how="left", maintain_order="left")
    known = looked["prev_t"].is_not_null().to_numpy()
    looked, first = looked.filter(known), first[known]
    dist = haversine_km(
        looked["prev_lat"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        looked["prev_lon"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        looked["lat"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        looked["lon"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
    )
    out["dist_prev_km"][first] = dist
    seconds = (ts[first] - looked["prev_t"].to_numpy()) / 1e6
    out["km_per_min"][first] = speed_km_per_min(dist, seconds)
    out["seconds_since_prev_card"][first] = seconds
    out["country_changed"][first] = (
        (looked["country"] != looked["prev_country"]).cast(pl.Float64).to_numpy()
    )


def _lags(pos: np.ndarray, start: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
    """(rows whose window reaches back `lag` rows, lag) for lag = 1, 2, … (previous rows only)."""
    lag = 1
    rows = pos[pos - lag >= start]
    while rows.size:
        yield rows, lag
        lag += 1
        rows = rows[rows - lag >= start[rows]]


def _risk(
    out: dict[str, np.ndarray],
    name: str,
    tx: pl.DataFrame,
    column: str,
    label_times: pl.DataFrame,
    t_min: int,
    stride: int,
    before: pl.DataFrame | None = None,
) -> None:
    """Smoothed fraud rate of the merchant (or category) from the fraud labels reported
    strictly before the transaction's time, over the transactions it had before (`before`:
    its transaction count in the prior history)."""
    values = pl.concat([tx[column].cast(pl.String), label_times[column].cast(pl.String)])
    codes = _codes(values)
    tx_code, label_code = codes[: tx.height], codes[tx.height :]
    ts = tx["ts"].dt.epoch("us").to_numpy() - t_min
    # transactions of the same key before this one (rows are in (ts, id) order)
    order = np.argsort(tx_code, kind="stable")
    rank = np.empty(tx.height)
    group_start = np.searchsorted(tx_code[order], tx_code[order], side="left")
    rank[order] = np.arange(tx.height) - group_start
    if before is not None:
        rank += (
            tx.select(column)
            .join(before, on=column, how="left", maintain_order="left")["n"]
            .fill_null(0)
            .to_numpy()
        )
    label_rel = np.maximum(label_times["t"].to_numpy() - t_min, 0)  # bad data: before all
    label_keys = np.sort(_grouped_keys(label_code, label_rel, stride))
    frauds = np.searchsorted(label_keys, _grouped_keys(tx_code, ts, stride), side="left") - (
        np.searchsorted(label_keys, tx_code.astype(np.int64) * stride, side="left")
    )
    out[f"{name}_risk"] = smoothed_rate(frauds, rank)
    if name == "merchant":
        out["merchant_tx_before"] = rank


def _merchant_windows(
    out: dict[str, np.ndarray],
    tx: pl.DataFrame,
    merchants: np.ndarray,
    t_rel: np.ndarray,
    amount: np.ndarray,
    label_times: pl.DataFrame,
    t_min: int,
    prior: PriorHistory | None,
) -> None:
    """Recent risk of the merchant (terminal): its previous transactions in (t - w, t], the
    fraud labels of its transactions reported in (t - w, t) (only what was known at t: the
    label delay is respected by construction), their ratio; and the amount relative to the
    merchant's mean amount so far."""
    n = merchants.size
    order = np.argsort(merchants, kind="stable")  # by merchant, then (ts, id) order
    span = int(t_rel.max(initial=0)) + CONTEXT_US + 1
    keys = merchants[order].astype(np.int64) * span + t_rel[order]
    pos = np.arange(n)
    # labels: keyed by the transactions' merchant codes, times relative to t_min - CONTEXT
    codes = pl.DataFrame(
        {"merchant_id": tx["merchant_id"].cast(pl.String), "code": merchants}
    ).unique("merchant_id")
    label_code = (
        label_times.select(pl.col("merchant_id").cast(pl.String))
        .join(codes, on="merchant_id", how="left", maintain_order="left")["code"]
        .fill_null(-1)
        .to_numpy()
        .astype(np.int64)
    )
    label_rel = label_times["t"].to_numpy().astype(np.int64) - t_min
    # only labels that can fall in a window: after t_min - CONTEXT, before the last row
    inside = (
        (label_code >= 0) & (label_rel > -CONTEXT_US) & (label_rel <= int(t_rel.max(initial=0)))
    )
    label_keys = np.sort(label_code[inside] * span + label_rel[inside])
    for label, width in PROFILE_WINDOWS_US.items():
        count = np.empty(n)
        count[order] = pos - np.searchsorted(keys, keys - width, side="right")
        frauds = np.empty(n)
        frauds[order] = np.searchsorted(label_keys, keys, side="left") - np.searchsorted(
            label_keys, keys - width, side="right"
        )
        out[f"merchant_tx_{label}"] = count
        out[f"merchant_frauds_{label}"] = frauds
        out[f"merchant_fraud_rate_{label}"] = window_rate(frauds, count)
    # mean amount of the merchant's previous transactions (all time: the prior's total too)
    csum = np.concatenate([[0.0], np.cumsum(amount[order])])
    first = np.searchsorted(merchants[order], merchants[order], side="left")
    total = np.empty(n)
    total[order] = csum[pos] - csum[first]
    if prior is not None:
        total += (
            tx.select("merchant_id")
            .join(prior.merchant_amount, on="merchant_id", how="left", maintain_order="left")[
                "total"
            ]
            .fill_null(0.0)
            .to_numpy()
        )
    out["amount_to_merchant_mean"] = merchant_amount_ratio(amount, total, out["merchant_tx_before"])


def window_rate(frauds, transactions):
    """Frauds reported over a window per transaction of the window, shrunk to the prior."""
    return smoothed_rate(frauds, transactions)


def merchant_amount_ratio(amount, total, count):
    """amount / the merchant's mean amount so far (NaN before its first transaction)."""
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.asarray(amount) / (np.asarray(total) / count), np.nan)


def _graph(out: dict[str, np.ndarray], tx: pl.DataFrame, prior: PriorHistory | None) -> None:
    """Distinct neighbours in the device ↔ account ↔ IP graph up to this transaction."""
    for feature, (node, neighbour) in GRAPH_PAIRS.items():
        edge = PAIR_EDGES[feature]
        known = (
            prior.edges[edge]
            if prior is not None
            else pl.DataFrame(schema={"account_hash": pl.String, edge: pl.String})
        )
        flags = (
            tx.select(
                node,
                neighbour,
                valid=pl.col(node).is_not_null() & pl.col(neighbour).is_not_null(),
                first=pl.struct(node, neighbour).is_first_distinct(),
            )
            .join(
                known.with_columns(known=pl.lit(True)),
                on=[node, neighbour],
                how="left",
                maintain_order="left",
            )
            .join(known.group_by(node).len("before"), on=node, how="left", maintain_order="left")
            .with_columns(first=pl.col("first") & pl.col("valid") & pl.col("known").is_null())
        )
        counts = flags.select(
            pl.col("first").cast(pl.Int64).cum_sum().over(node) + pl.col("before").fill_null(0)
        ).to_series()
        valid = flags["valid"].to_numpy()
        out[feature] = np.where(valid, counts.cast(pl.Float64).to_numpy(), np.nan)
        for flag, pair in NEW_FLAGS.items():
            if pair == feature:
                out[flag] = np.where(valid, flags["first"].cast(pl.Float64).to_numpy(), np.nan)


def _components(tx: pl.DataFrame, prior: PriorHistory | None) -> np.ndarray:
    """component_size: the prior history's edges go through the union-find first."""
    nodes = tx.select(*GRAPH_NODES)
    if prior is not None:
        nodes = pl.concat([_edge_rows(prior.edges), nodes])
    sizes = component_sizes(*(_codes(nodes[c]) for c in GRAPH_NODES))
    return sizes[nodes.height - tx.height :]


def _edge_rows(edges: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """`PriorHistory.edges` as one edge per row, in GRAPH_NODES columns."""
    frames = [edges[c].select("account_hash", c) for c in EDGE_COLUMNS]
    return pl.concat(frames, how="diagonal").select(*GRAPH_NODES)


def component_sizes(account: np.ndarray, device: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """Size (devices + accounts + IPs) of the connected component of each transaction's
    account in the device ↔ account ↔ IP graph of the transactions up to it (rows in order,
    codes dense per node type, -1 for null; NaN without an account)."""
    return _union_find(*_node_ids(account, device, ip))[0]


def component_roots(edges: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The graph of `PriorHistory.edges` as (node, root, size) for every node in a component
    of two or more, nodes named as the online stores name them (GRAPH_NODES prefix + id)."""
    nodes = _edge_rows(edges)
    *ids, n_nodes = _node_ids(*(_codes(nodes[c]) for c in GRAPH_NODES))
    _, parent, size = _union_find(*ids, n_nodes)
    while not np.array_equal(parent, parent[parent]):  # flatten: every node -> its root
        parent = parent[parent]
    names = np.empty(n_nodes, dtype=object)
    for (column, prefix), node in zip(GRAPH_NODES.items(), ids, strict=True):
        present = node >= 0
        names[node[present]] = (prefix + nodes[column].filter(pl.Series(present))).to_numpy()
    linked = np.flatnonzero(size[parent] > 1)
    return pl.DataFrame(
        {
            "node": names[linked],
            "root": names[parent[linked]],
            "size": size[parent[linked]],
        },
        schema={"node": pl.String, "root": pl.String, "size": pl.Int64},
    )


def _node_ids(
    account: np.ndarray, device: np.ndarray, ip: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-type codes → one id space (accounts, then devices, then IPs)."""
    n_account, n_device = int(account.max(initial=-1)) + 1, int(device.max(initial=-1)) + 1
    n_nodes = n_account + n_device + int(ip.max(initial=-1)) + 1
    return (
        account.astype(np.int64),
        np.where(device >= 0, device + n_account, -1).astype(np.int64),
        np.where(ip >= 0, ip + n_account + n_device, -1).astype(np.int64),
        n_nodes,
    )


# Union-find is sequential by nature (each edge's effect depends on every earlier one): a
# compiled loop over the rows, as statsforecast does for its recursive models.
@numba.njit(cache=True)
def _root(parent: np.ndarray, node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]  # path halving
        node = parent[node]
    return node


@numba.njit(cache=True)
def _union_find(
    account: np.ndarray, device: np.ndarray, ip: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(component size after each row, parent, size) with rows adding their edges in order."""
    parent = np.arange(n_nodes)
    size = np.ones(n_nodes, dtype=np.int64)
    out = np.full(account.size, np.nan)
    for i in range(account.size):
        if account[i] < 0:
            continue
        root = _root(parent, account[i])
        for other in (device[i], ip[i]):
            if other < 0:
                continue
            other_root = _root(parent, other)
            if other_root == root:
                continue
            if size[other_root] > size[root]:
                root, other_root = other_root, root
            parent[other_root] = root
            size[root] += size[other_root]
        out[i] = size[root]
    return out, parent, size


# ---- online path --------------------------------------------------------------------------
@dataclass
class EntityHistory:
    """What the online store holds for one transaction's entities, before it is added."""

    events: Mapping[str, Sequence[tuple[int, float, str]]]  # entity -> [(ts_us, amount, merchant)]
    card_previous: tuple[int, float | None, float | None, str] | None  # ts_us, lat, lon, country
    card_amounts_7d: Sequence[tuple[int, float]]  # (ts_us, amount) of the card, last 30 days
    merchant_frauds: int
    merchant_transactions: int
    mcc_frauds: int
    mcc_transactions: int
    # GRAPH_PAIRS feature -> (distinct neighbours before, this neighbour seen before) or None
    graph: Mapping[str, tuple[int, bool] | None] = field(default_factory=dict)
    # (component root, its size) of the account, device and IP present (a node not seen
    # before is its own root of size 1); empty without an account
    components: Sequence[tuple[str, int]] = ()
    merchant_amount_total: float = 0.0  # sum of the merchant's previous amounts
    # PROFILE_WINDOWS_US label -> the merchant's previous transactions in (t - w, t]
    merchant_tx_windows: Mapping[str, int] = field(default_factory=dict)
    # PROFILE_WINDOWS_US label -> fraud labels of the merchant reported in (t - w, t)
    merchant_fraud_windows: Mapping[str, int] = field(default_factory=dict)


def online_features(
    tx: Mapping[str, object], ts_us: int, history: EntityHistory
) -> dict[str, float]:
    """FEATURES of one transaction (silver columns) from the store's history before it."""
    amount = float(tx["amount"])  # type: ignore[arg-type]
    hour = float((ts_us // 3_600_000_000) % 24)
    weekday = float((ts_us // DAY_US + 3) % 7)  # 1970-01-01 was a Thursday; Monday = 0
    f: dict[str, float] = {
        "amount": amount,
        "is_ecom": 1.0 if tx["channel"] == "ecom" else 0.0,
        "hour_utc": hour,
        "weekday": weekday,
        "is_weekend": float(weekday >= 5),
        "is_night": float(hour < 6),
    }
    for entity, column in ENTITIES.items():
        names = ("count_tx_1m", "count_tx_5m", "count_tx_1h", "sum_amount_5m", "uniq_merchant_1h")
        if tx.get(column) is None:
            f.update({f"{x}_{entity}": np.nan for x in names})
            continue
        events = [e for e in history.events.get(entity, ()) if e[0] <= ts_us]
        for label, width in WINDOWS_US.items():
            inside = [e for e in events if e[0] > ts_us - width]
            f[f"count_tx_{label}_{entity}"] = float(len(inside) + 1)
            if label == "5m":
                f[f"sum_amount_5m_{entity}"] = float(sum(e[1] for e in inside) + amount)
            if label == "1h":
                merchants = {e[2] for e in inside} | {str(tx["merchant_id"])}
                f[f"uniq_merchant_1h_{entity}"] = float(len(merchants))
    prev = history.card_previous if tx.get("card_hash") is not None else None
    if prev is None:
        f.update(dist_prev_km=np.nan, km_per_min=np.nan, country_changed=np.nan)
        f["seconds_since_prev_card"] = np.nan
    else:
        lat, lon = _num(tx.get("lat")), _num(tx.get("lon"))
        dist = float(haversine_km(_num(prev[1]), _num(prev[2]), lat, lon))
        f["dist_prev_km"] = dist
        f["km_per_min"] = float(speed_km_per_min(dist, (ts_us - prev[0]) / 1e6))
        f["country_changed"] = float(tx["country"] != prev[3])
        f["seconds_since_prev_card"] = (ts_us - prev[0]) / 1e6
    has_card = tx.get("card_hash") is not None
    card_events = [(t, a) for t, a in history.card_amounts_7d if t <= ts_us]
    amounts = np.array(
        [a for t, a in card_events if ts_us - ZSCORE_WINDOW_US < t], dtype=np.float64
    )
    f["card_tx_7d"] = float(amounts.size) if has_card else np.nan
    f["amount_zscore_7d"] = (
        float(zscore(amount, amounts.mean(), amounts.std())) if amounts.size >= 2 else np.nan
    )
    for label, width in PROFILE_WINDOWS_US.items():
        inside = [a for t, a in card_events if ts_us - width < t]
        if label != "7d":
            f[f"card_tx_{label}"] = float(len(inside)) if has_card else np.nan
        f[f"card_mean_amount_{label}"] = (
            float(np.sum(inside)) / len(inside) if has_card and inside else np.nan
        )
        merchant_tx = history.merchant_tx_windows.get(label, 0)
        frauds = history.merchant_fraud_windows.get(label, 0)
        f[f"merchant_tx_{label}"] = float(merchant_tx)
        f[f"merchant_frauds_{label}"] = float(frauds)
        f[f"merchant_fraud_rate_{label}"] = float(window_rate(frauds, merchant_tx))
    with np.errstate(
        divide="ignore", invalid="ignore"
    ):  # IEEE, as the batch path: 0 mean -> inf/nan
        f["amount_to_card_mean_30d"] = float(np.float64(amount) / f["card_mean_amount_30d"])
    f["amount_to_merchant_mean"] = float(
        merchant_amount_ratio(amount, history.merchant_amount_total, history.merchant_transactions)
    )
    f["merchant_risk"] = float(
        smoothed_rate(history.merchant_frauds, history.merchant_transactions)
    )
    f["mcc_risk"] = float(smoothed_rate(history.mcc_frauds, history.mcc_transactions))
    f["merchant_tx_before"] = float(history.merchant_transactions)
    for feature in GRAPH_PAIRS:
        seen = history.graph.get(feature)
        f[feature] = np.nan if seen is None else float(seen[0] + (0 if seen[1] else 1))
    for feature, pair in NEW_FLAGS.items():
        seen = history.graph.get(pair)
        f[feature] = np.nan if seen is None else (0.0 if seen[1] else 1.0)
    # this transaction's edges join the components of its nodes: the sum of distinct roots
    roots = dict(history.components)
    f["component_size"] = float(sum(roots.values())) if roots else np.nan
    return {
        name: (None if isinstance(f[name], float) and np.isnan(f[name]) else f[name])
        for name in FEATURES
    }  # type: ignore[misc]


def _num(value: object) -> float:
    return np.nan if value is None else float(value)  # type: ignore[arg-type]
