"""Deterministic, vectorised card-transaction simulator with labelled fraud scenarios.

Population: cardholders (home city, spending profile, one or two devices, a home IP),
merchants (category + MCC, city, channel, risk tier). Legitimate traffic follows each
cardholder's profile; four labelled fraud scenarios are injected at a configurable overall
rate (default 1 %, allowed 0.2-2 %):

* card testing — bursts of 5-20 tiny e-commerce amounts within minutes, sometimes followed
  by one large purchase; half the bursts from a fraudster device/IP shared across victims,
  half from a new device and IP for every payment (rotating proxies, emulators);
* account takeover — a new device and IP; two thirds are fast (a far-away city, a few large
  purchases within half an hour), one third slow (the home city, a few purchases of 1.5-3x
  the usual amount spread over 3-10 days);
* compromised merchant — one merchant where many different cards are defrauded over days;
* amount anomaly — one purchase 6-25x the cardholder's usual amount on their own device;
* fraud ring — 5-12 victims' accounts driven from the same two or three devices and IPs
  over a few days (medium to large purchases).

Events follow the seed's `transactions` schema exactly. Confirmed labels (chargebacks) for
the frauds arrive later on `fraud_labels` (`transaction_id`, `is_fraud`, `reported_at`) after
1-45 days (median ≈ 4 days); a few disputes are confirmed legitimate (`is_fraud=false`).
Only labels reported inside the generated window are emitted (the rest arrive "later").
Same (start, end, seed, scale, fraud_rate) → same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from ingestion.generators.orders import _mix, encode_messages, epoch_seconds
from lakehouse.errors import ConfigError

TX_PER_MIN = 20.0  # legitimate transactions per minute at scale 1
CARDS_PER_SCALE = 4000
MERCHANTS_PER_SCALE = 400

# (city, country, lat, lon): home cities of the cardholders and merchants
CITIES = (
    ("Paris", "FR", 48.8566, 2.3522),
    ("Lyon", "FR", 45.7640, 4.8357),
    ("Marseille", "FR", 43.2965, 5.3698),
    ("Lille", "FR", 50.6292, 3.0573),
    ("Toulouse", "FR", 43.6047, 1.4442),
    ("Bordeaux", "FR", 44.8378, -0.5792),
    ("Nantes", "FR", 47.2184, -1.5536),
    ("Bruxelles", "BE", 50.8503, 4.3517),
    ("Genève", "CH", 46.2044, 6.1432),
    ("Madrid", "ES", 40.4168, -3.7038),
    ("Berlin", "DE", 52.5200, 13.4050),
    ("Milano", "IT", 45.4642, 9.1900),
)
CITY_WEIGHTS = np.array([0.22, 0.1, 0.08, 0.07, 0.07, 0.06, 0.06, 0.08, 0.05, 0.07, 0.07, 0.07])
# far-away places fraudsters connect from (account takeover geographic jump)
FAR_PLACES = (
    ("Lagos", "NG", 6.5244, 3.3792),
    ("Moskva", "RU", 55.7558, 37.6173),
    ("Bucuresti", "RO", 44.4268, 26.1025),
    ("Manila", "PH", 14.5995, 120.9842),
    ("São Paulo", "BR", -23.5505, -46.6333),
    ("Kyiv", "UA", 50.4501, 30.5234),
)
# (merchant_category, MCC, median amount €, e-commerce share, base risk)
CATEGORIES = (
    ("grocery", "5411", 35.0, 0.05, 0.2),
    ("restaurants", "5812", 28.0, 0.05, 0.2),
    ("fuel", "5541", 55.0, 0.0, 0.3),
    ("fashion", "5651", 70.0, 0.5, 0.4),
    ("electronics", "5732", 180.0, 0.6, 0.8),
    ("travel", "4511", 320.0, 0.8, 0.6),
    ("digital_goods", "5816", 15.0, 1.0, 0.9),
    ("jewelry", "5944", 400.0, 0.4, 0.9),
    ("pharmacy", "5912", 22.0, 0.1, 0.1),
    ("hotels", "7011", 150.0, 0.7, 0.5),
)
CATEGORY_WEIGHTS = np.array([0.26, 0.2, 0.1, 0.1, 0.06, 0.03, 0.08, 0.02, 0.1, 0.05])
MCC_BY_CATEGORY = {c[0]: c[1] for c in CATEGORIES}
SCENARIOS = (
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "amount_anomaly",
    "fraud_ring",
)
SCENARIO_SHARE = np.array([0.25, 0.25, 0.20, 0.15, 0.15])
FRESH_DEVICE = 30_000_000  # device / IP numbers from here on are used once (disposable)
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DAY = 86_400


@dataclass(frozen=True)
class Population:
    """Cardholders and merchants of one (seed, scale)."""

    card_city: np.ndarray  # index into CITIES
    card_median_amount: np.ndarray
    card_rate: np.ndarray  # relative activity
    card_devices: np.ndarray  # (n_cards, 2) device numbers
    card_ip: np.ndarray  # (n_cards,) ip number
    merchant_category: np.ndarray  # index into CATEGORIES
    merchant_city: np.ndarray
    merchant_ecom: np.ndarray  # bool: online merchant
    merchant_risk: np.ndarray  # 0..1 risk tier


def population(seed: int, scale: float) -> Population:
    rng = np.random.default_rng([seed, 1])
    n_cards = max(50, int(CARDS_PER_SCALE * scale))
    n_merchants = max(40, int(MERCHANTS_PER_SCALE * scale))
    category = rng.choice(len(CATEGORIES), n_merchants, p=CATEGORY_WEIGHTS)
    ecom_share = np.array([c[3] for c in CATEGORIES])[category]
    return Population(
        card_city=rng.choice(len(CITIES), n_cards, p=CITY_WEIGHTS),
        card_median_amount=np.exp(rng.normal(0.0, 0.45, n_cards)),
        card_rate=rng.gamma(2.0, 0.5, n_cards),
        card_devices=np.stack([np.arange(n_cards) * 2, np.arange(n_cards) * 2 + 1], axis=1),
        card_ip=np.arange(n_cards),
        merchant_category=category,
        merchant_city=rng.choice(len(CITIES), n_merchants, p=CITY_WEIGHTS),
        merchant_ecom=rng.random(n_merchants) < ecom_share,
        merchant_risk=np.clip(
            np.array([c[4] for c in CATEGORIES])[category] + rng.normal(0, 0.1, n_merchants), 0, 1
        ),
    )


def _card_hashes(n_cards: int, seed: int) -> pl.Series:
    """Stable pseudo-random hex card hashes, one per card (a small dimension table)."""
    x = np.arange(n_cards, dtype=np.uint64) + np.uint64(seed & 0xFFFF) * np.uint64(1 << 40)
    x = _mix(x * np.uint64(0x9E3779B97F4A7C15))
    return pl.Series([f"{v:016x}" for v in x.tolist()], dtype=pl.String)


def _ips(numbers: np.ndarray, first_octet: np.ndarray) -> pl.Expr:
    n = numbers.astype(np.int64)
    return pl.concat_str(
        [
            pl.Series(first_octet.astype(np.int64)).cast(pl.String),
            pl.Series((n // 65536) % 256).cast(pl.String),
            pl.Series((n // 256) % 256).cast(pl.String),
            pl.Series(n % 254 + 1).cast(pl.String),
        ],
        separator=".",
    )


@dataclass(frozen=True)
class TransactionStream:
    """Transactions (seed schema + hidden `is_fraud`/`scenario` columns) and the labels
    reported inside the window, both sorted by event time."""

    start: datetime
    end: datetime
    seed: int
    scale: float
    fraud_rate: float
    transactions: pl.DataFrame  # seed schema + is_fraud, scenario (ground truth)
    labels: pl.DataFrame  # transaction_id, is_fraud, reported_at

    topics = ("transactions", "fraud_labels")

    def table(self, topic: str) -> pl.DataFrame:
        if topic not in self.topics:
            raise ConfigError(f"TransactionStream has no topic {topic!r}: use {self.topics}")
        return self.transactions if topic == "transactions" else self.labels

    def messages(self, topic: str) -> list[tuple[bytes, bytes]]:
        return encode_messages(self.table(topic), topic)

    def event_seconds(self, topic: str) -> np.ndarray:
        column = "timestamp" if topic == "transactions" else "reported_at"
        return self.table(topic)[column].dt.epoch("s").to_numpy()


def generate_transactions(
    start: datetime,
    end: datetime,
    seed: int = 42,
    scale: float = 1.0,
    fraud_rate: float = 0.01,
) -> TransactionStream:
    """Transactions in [start, end) and the fraud labels reported in [start, end)."""
    if not 0.002 <= fraud_rate <= 0.02:
        raise ConfigError(f"fraud rate {fraud_rate} is invalid: use a value in 0.002..0.02")
    if scale <= 0:
        raise ConfigError(f"scale {scale} is invalid: use a positive number")
    t0, t1 = epoch_seconds(start), epoch_seconds(end)
    if t1 <= t0:
        raise ConfigError("the window is empty: end must be after start")
    pop = population(seed, scale)
    rng = np.random.default_rng([seed, 2, t0, t1])
    legit = _legit(pop, rng, t0, t1, scale)
    n_fraud = round(legit["ts"].size * fraud_rate / (1 - fraud_rate))
    parts = [legit, *_frauds(pop, rng, t0, t1, n_fraud)]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in legit}
    order = np.lexsort((cols["card"], cols["ts"]))
    cols = {k: v[order] for k, v in cols.items()}
    transactions = _to_frame(cols, pop, seed, t0)
    labels = _labels(transactions, rng, t1)
    return TransactionStream(start, end, seed, scale, fraud_rate, transactions, labels)


def _legit(pop: Population, rng: np.random.Generator, t0: int, t1: int, scale: float) -> dict:
    minutes = (t1 - t0) / 60
    n = int(rng.poisson(TX_PER_MIN * scale * minutes))
    # time of day: uniform then rejected by a day shape (night low)
    ts = rng.integers(t0, t1, size=int(n * 1.6) + 10)
    hour = (ts % DAY) // 3600
    shape = np.array(
        [
            0.15,
            0.1,
            0.08,
            0.08,
            0.1,
            0.2,
            0.4,
            0.6,
            0.8,
            0.9,
            0.95,
            1.0,
            1.0,
            0.95,
            0.9,
            0.9,
            0.95,
            1.0,
            1.0,
            0.9,
            0.75,
            0.6,
            0.4,
            0.25,
        ]
    )
    ts = ts[rng.random(ts.size) < shape[hour]][:n]
    n = ts.size
    card = rng.choice(pop.card_city.size, n, p=pop.card_rate / pop.card_rate.sum())
    home = pop.card_city[card]
    # merchant: local physical merchant (80 %) or any online merchant
    online = np.flatnonzero(pop.merchant_ecom)
    merchant = np.empty(n, dtype=np.int64)
    use_online = (rng.random(n) < 0.3) & (online.size > 0)
    merchant[use_online] = online[rng.integers(0, online.size, use_online.sum())]
    physical = ~use_online
    # a physical merchant in the card's city when one exists, else any merchant
    by_city = [
        np.flatnonzero((pop.merchant_city == c) & ~pop.merchant_ecom) for c in range(len(CITIES))
    ]
    pick = rng.random(n)
    for c, pool in enumerate(by_city):
        rows = np.flatnonzero(physical & (home == c))
        if rows.size:
            pool = pool if pool.size else np.arange(pop.merchant_city.size)
            merchant[rows] = pool[(pick[rows] * pool.size).astype(np.int64)]
    category = pop.merchant_category[merchant]
    median = np.array([c[2] for c in CATEGORIES])[category] * pop.card_median_amount[card]
    amount = np.round(median * np.exp(rng.normal(0, 0.55, n)), 2)
    device = pop.card_devices[card, (rng.random(n) < 0.25).astype(np.int64)]
    ecom = pop.merchant_ecom[merchant]
    # mobile wallets travel with the cardholder: home IP most of the time
    ip = np.where(
        rng.random(n) < 0.9, pop.card_ip[card], pop.card_ip.size + rng.integers(0, 50_000, n)
    )
    lat = np.array([c[2] for c in CITIES])[home] + rng.normal(0, 0.03, n)
    lon = np.array([c[3] for c in CITIES])[home] + rng.normal(0, 0.03, n)
    country = home.copy()
    return {
        "ts": ts,
        "card": card,
        "merchant": merchant,
        "amount": np.maximum(amount, 0.5),
        "device": device,
        "ip": ip,
        "lat": lat,
        "lon": lon,
        "place": country,
        "far": np.zeros(n, dtype=bool),
        "ecom": ecom,
        "scenario": np.zeros(n, dtype=np.int64),
    }


def _frauds(
    pop: Population, rng: np.random.Generator, t0: int, t1: int, n_fraud: int
) -> list[dict]:
    if n_fraud <= 0:
        return []
    n_cards, n_merchants = pop.card_city.size, pop.merchant_city.size
    fraud_devices = 10 * n_cards + np.arange(max(5, n_fraud // 15))  # shared fraud rigs
    fraud_ips = 2 * n_cards + 100_000 + np.arange(max(5, n_fraud // 15))
    quota = np.floor(SCENARIO_SHARE * n_fraud).astype(np.int64)
    quota[0] += n_fraud - quota.sum()
    digital = np.flatnonzero(pop.merchant_ecom & np.isin(pop.merchant_category, [6, 3]))
    digital = digital if digital.size else np.flatnonzero(pop.merchant_ecom)
    digital = digital if digital.size else np.arange(n_merchants)
    pricey = np.flatnonzero(np.isin(pop.merchant_category, [4, 7, 5]))
    pricey = pricey if pricey.size else np.arange(n_merchants)
    parts: list[dict] = []

    def part(ts, card, merchant, amount, device, ip, place, far, scenario):
        m = ts.size
        coords = np.array([p[2:] for p in (*CITIES, *FAR_PLACES)])
        return {
            "ts": ts,
            "card": card,
            "merchant": merchant,
            "amount": np.round(amount, 2),
            "device": device,
            "ip": ip,
            "lat": coords[place, 0] + rng.normal(0, 0.03, m),
            "lon": coords[place, 1] + rng.normal(0, 0.03, m),
            "place": place,
            "far": far,
            "ecom": pop.merchant_ecom[merchant],
            "scenario": np.full(m, scenario, dtype=np.int64),
        }

    # card testing: bursts of 5-20 tiny amounts within minutes
    sizes = []
    left = quota[0]
    while left > 0:
        s = int(min(left, rng.integers(5, 21)))
        sizes.append(s)
        left -= s
    if sizes:
        b = len(sizes)
        start = rng.integers(t0, max(t0 + 1, t1 - 900), b)
        victim = rng.integers(0, n_cards, b)
        rig = rng.integers(0, fraud_devices.size, b)
        burst = np.repeat(np.arange(b), sizes)
        step = rng.integers(5, 40, burst.size)
        offset = np.concatenate(
            [np.cumsum(step[burst == i]) - step[burst == i][0] for i in range(b)]
        )
        amount = rng.uniform(0.5, 5.0, burst.size)
        last = np.r_[burst[1:] != burst[:-1], True]
        big = last & (rng.random(burst.size) < 0.4)
        amount[big] = rng.uniform(300, 1500, big.sum())
        rotating = (rng.random(b) < 0.5)[burst]  # a new device and IP for every payment
        fresh = FRESH_DEVICE + np.arange(burst.size)
        parts.append(
            part(
                np.minimum(start[burst] + offset, t1 - 1),
                victim[burst],
                digital[rng.integers(0, digital.size, burst.size)],
                amount,
                np.where(rotating, fresh, fraud_devices[rig[burst]]),
                np.where(rotating, fresh, fraud_ips[rig[burst]]),
                pop.card_city[victim[burst]],
                np.zeros(burst.size, dtype=bool),
                1,
            )
        )
    # account takeover: new device + new IP far away, a few large purchases in 30 min
    left, sizes = quota[1], []
    while left > 0:
        s = int(min(left, rng.integers(2, 7)))
        sizes.append(s)
        left -= s
    if sizes:
        b = len(sizes)
        burst = np.repeat(np.arange(b), sizes)
        start = rng.integers(t0, max(t0 + 1, t1 - 1800), b)
        victim = rng.integers(0, n_cards, b)
        place = len(CITIES) + rng.integers(0, len(FAR_PLACES), b)
        rig = rng.integers(0, fraud_devices.size, b)
        amount = np.exp(rng.normal(np.log(450), 0.5, burst.size))
        merchant = pricey[rng.integers(0, pricey.size, burst.size)]
        # slow takeovers: from the home city over days, amounts only a few times the usual
        slow = (rng.random(b) < 1 / 3)[burst]
        spread = np.where(slow, rng.integers(3 * DAY, 10 * DAY, burst.size), 1800)
        usual = np.array([c[2] for c in CATEGORIES])[pop.merchant_category[merchant]]
        amount = np.where(
            slow,
            usual * pop.card_median_amount[victim[burst]] * rng.uniform(1.5, 3, burst.size),
            amount,
        )
        parts.append(
            part(
                np.minimum(
                    start[burst] + (rng.random(burst.size) * spread).astype(np.int64), t1 - 1
                ),
                victim[burst],
                merchant,
                amount,
                fraud_devices[rig[burst]] + 1_000_000,
                fraud_ips[rig[burst]] + 1_000_000,
                np.where(slow, pop.card_city[victim[burst]], place[burst]),
                ~slow,
                2,
            )
        )
    # compromised merchant: many cards defrauded at one merchant over days
    m = quota[2]
    if m > 0:
        n_bad = max(1, m // 40)
        bad = rng.choice(n_merchants, n_bad, replace=False)
        which = rng.integers(0, n_bad, m)
        span = max(1, min(t1 - t0, 10 * DAY))
        first = rng.integers(t0, max(t0 + 1, t1 - span), n_bad)
        victim = rng.integers(0, n_cards, m)
        median = np.array([c[2] for c in CATEGORIES])[pop.merchant_category[bad[which]]]
        parts.append(
            part(
                np.minimum(first[which] + rng.integers(0, span, m), t1 - 1),
                victim,
                bad[which],
                median * rng.uniform(1.5, 4.0, m),
                pop.card_devices[victim, 0],
                pop.card_ip[victim],
                pop.merchant_city[bad[which]],
                np.zeros(m, dtype=bool),
                3,
            )
        )
    # amount anomaly: one purchase 6-25x the usual amount, on the cardholder's own device
    m = quota[3]
    if m > 0:
        victim = rng.integers(0, n_cards, m)
        merchant = pricey[rng.integers(0, pricey.size, m)]
        usual = np.array([c[2] for c in CATEGORIES])[pop.merchant_category[merchant]]
        parts.append(
            part(
                rng.integers(t0, t1, m),
                victim,
                merchant,
                usual * pop.card_median_amount[victim] * rng.uniform(6, 25, m),
                pop.card_devices[victim, 0],
                pop.card_ip[victim],
                pop.card_city[victim],
                np.zeros(m, dtype=bool),
                4,
            )
        )
    # fraud ring: a few devices and IPs drive many victims' accounts over a few days
    m = quota[4]
    if m > 0:
        per_ring = 30
        rings = max(1, m // per_ring)
        ring = rng.integers(0, rings, m)
        victims = rng.integers(0, n_cards, (rings, 12))
        size = rng.integers(5, 13, rings)
        victim = victims[ring, (rng.random(m) * size[ring]).astype(np.int64)]
        ring_device = FRESH_DEVICE // 2 + ring * 3 + rng.integers(0, 3, m)
        first = rng.integers(t0, max(t0 + 1, t1 - 4 * DAY), rings)
        merchant = pricey[rng.integers(0, pricey.size, m)]
        usual = np.array([c[2] for c in CATEGORIES])[pop.merchant_category[merchant]]
        parts.append(
            part(
                np.minimum(first[ring] + rng.integers(0, 4 * DAY, m), t1 - 1),
                victim,
                merchant,
                usual * rng.uniform(1.0, 4.0, m),
                ring_device,
                ring_device,
                pop.card_city[victim],
                np.zeros(m, dtype=bool),
                5,
            )
        )
    return parts


def _to_frame(cols: dict, pop: Population, seed: int, t0: int) -> pl.DataFrame:
    n = cols["ts"].size
    places = (*CITIES, *FAR_PLACES)
    category = pop.merchant_category[cols["merchant"]]
    first_octet = np.where(cols["far"], 41, 83)
    return pl.DataFrame(
        {
            "transaction_id": pl.Series(np.arange(n) + (t0 % 10_000_000) * 1000, dtype=pl.Int64),
            "timestamp": pl.from_epoch(pl.Series(cols["ts"]), time_unit="s").dt.replace_time_zone(
                "UTC"
            ),
        }
    ).with_columns(
        (pl.lit(f"tx_{seed}_") + pl.col("transaction_id").cast(pl.String)).alias("transaction_id"),
        (pl.lit("acc_") + pl.Series(cols["card"]).cast(pl.String)).alias("account_id"),
        _card_hashes(pop.card_city.size, seed).gather(cols["card"]).alias("card_hash"),
        pl.Series(cols["amount"]).alias("amount"),
        pl.lit("EUR").alias("currency"),
        (pl.lit("m_") + pl.Series(cols["merchant"]).cast(pl.String)).alias("merchant_id"),
        pl.Series([c[0] for c in CATEGORIES]).gather(category).alias("merchant_category"),
        pl.when(pl.Series(cols["ecom"]))
        .then(pl.lit("ecom"))
        .otherwise(pl.lit("pos"))
        .alias("channel"),
        pl.Series([p[1] for p in places]).gather(cols["place"]).alias("country"),
        (pl.lit("dvc_") + pl.Series(cols["device"]).cast(pl.String)).alias("device_id"),
        _ips(cols["ip"], first_octet).alias("ip"),
        pl.Series(np.round(cols["lat"], 4)).alias("lat"),
        pl.Series(np.round(cols["lon"], 4)).alias("lon"),
        (pl.Series(cols["scenario"]) > 0).alias("is_fraud"),
        pl.Series(("legit", *SCENARIOS)).gather(cols["scenario"]).alias("scenario"),
    )


def _labels(transactions: pl.DataFrame, rng: np.random.Generator, t1: int) -> pl.DataFrame:
    """Chargebacks for the frauds, plus disputes confirmed legitimate (0.05 % of the rest),
    reported 1-45 days later; only those reported before the end of the window."""
    fraud = transactions["is_fraud"].to_numpy()
    disputed = ~fraud & (rng.random(fraud.size) < 0.0005)
    rows = np.flatnonzero(fraud | disputed)
    delay = np.clip(DAY * (1 + rng.lognormal(np.log(3.0), 0.8, rows.size)), DAY, 45 * DAY)
    ts = transactions["timestamp"].dt.epoch("s").to_numpy()[rows] + delay.astype(np.int64)
    keep = ts < t1
    order = np.argsort(ts[keep], kind="stable")
    return pl.DataFrame(
        {
            "transaction_id": transactions["transaction_id"].gather(rows[keep][order]),
            "is_fraud": fraud[rows[keep][order]],
            "reported_at": pl.from_epoch(
                pl.Series(ts[keep][order]), time_unit="s"
            ).dt.replace_time_zone("UTC"),
        }
    )


def all_labels(stream: TransactionStream) -> pl.DataFrame:
    """Ground truth for every transaction (for evaluation and tests, not sent to Kafka)."""
    return stream.transactions.select("transaction_id", "is_fraud", "scenario")


def window(end: datetime, days: float) -> tuple[datetime, datetime]:
    from datetime import timedelta

    end = end.astimezone(UTC).replace(microsecond=0)
    return end - timedelta(days=days), end
