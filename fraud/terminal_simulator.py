"""A second payment simulator, written independently of `fraud.simulator`, for evaluating the
fraud features on a stream the project's own model was not tuned to.

Mechanics (the customer/terminal family of the fraud-detection literature, re-implemented
from the idea): customers and payment terminals live on a 100 × 100 grid; each customer
pays at the terminals within a radius of their home, a Poisson number of times a day, around
midday, amounts drawn from their own normal profile. Frauds come from three scenarios:

* amount threshold — any payment above 220 € is fraud;
* compromised terminal — every day a few terminals are compromised: all their payments over
  the next 28 days are fraud;
* compromised card — every day a few customers' cards leak: over the next 14 days a third of
  their payments are fraud, with five times their usual amount.

Every customer has one card, one device, one IP; one channel, one country: the velocity,
graph and geography features see nothing, only spending and terminal behaviour tell frauds
apart. Events follow the seed's `transactions` schema; chargebacks (`fraud_labels`) arrive
1-10 days after the payment, only those reported inside the window. Same arguments → same
stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from ingestion.generators.orders import encode_messages
from lakehouse.errors import ConfigError

GRID = 100.0
RADIUS = 5.0  # a customer pays at the terminals this close to home
AMOUNT_THRESHOLD = 220.0
TERMINAL_DAYS, CARD_DAYS = 28, 14
SCENARIOS = ("legit", "amount_threshold", "compromised_terminal", "compromised_card")
CATEGORIES = ("grocery", "restaurants", "fuel", "fashion", "pharmacy", "electronics")
# the grid mapped onto a box of France for lat/lon (one country: the geography is flat)
LAT0, LAT_SPAN, LON0, LON_SPAN = 44.0, 4.0, -0.5, 6.0
DAY = 86_400


@dataclass(frozen=True)
class TerminalStream:
    """Transactions (seed schema + hidden `is_fraud`/`scenario`) and the labels reported
    inside the window, sorted by time."""

    transactions: pl.DataFrame
    labels: pl.DataFrame

    def messages(self, topic: str) -> list[tuple[bytes, bytes]]:
        if topic == "transactions":
            return encode_messages(self.transactions.drop("is_fraud", "scenario"), topic)
        if topic == "fraud_labels":
            return encode_messages(self.labels, topic)
        raise ConfigError(f"TerminalStream has no topic {topic!r}: use transactions, fraud_labels")


def generate_terminal_payments(
    start: datetime,
    days: int,
    customers: int = 1000,
    terminals: int = 2000,
    seed: int = 0,
    compromised_terminals_per_day: int = 1,
    compromised_cards_per_day: int = 2,
) -> TerminalStream:
    if days < 1 or customers < 1 or terminals < 1:
        raise ConfigError("days, customers and terminals must be positive")
    rng = np.random.default_rng([seed, 7071])
    t0 = int(start.timestamp())
    # profiles
    home = rng.uniform(0, GRID, (customers, 2))
    mean_amount = rng.uniform(5, 100, customers)
    std_amount = mean_amount / 2
    per_day = rng.uniform(0, 4, customers)
    where = rng.uniform(0, GRID, (terminals, 2))
    category = rng.integers(0, len(CATEGORIES), terminals)
    near = [
        np.flatnonzero(((where - h) ** 2).sum(axis=1) < RADIUS**2) for h in home
    ]  # one small loop over customers: the profile table, not the payments
    # payments: Poisson count per customer and day, time of day around noon
    counts = rng.poisson(np.repeat(per_day[None, :], days, axis=0))  # days × customers
    day_of = np.repeat(np.repeat(np.arange(days), customers), counts.ravel())
    who = np.repeat(np.tile(np.arange(customers), days), counts.ravel())
    has_terminal = np.array([n.size > 0 for n in near])[who]
    day_of, who = day_of[has_terminal], who[has_terminal]
    n = who.size
    second = np.clip(rng.normal(DAY / 2, 20_000, n), 0, DAY - 1).astype(np.int64)
    ts = t0 + day_of * DAY + second
    amount = rng.normal(mean_amount[who], std_amount[who])
    negative = amount <= 0
    amount[negative] = rng.uniform(0, 2 * mean_amount[who[negative]])
    amount = np.maximum(np.round(amount, 2), 0.01)
    sizes = np.array([x.size for x in near])[who]
    offsets = np.concatenate([[0], np.cumsum([x.size for x in near])])
    flat = np.concatenate(near)
    terminal = flat[offsets[who] + (rng.random(n) * sizes).astype(np.int64)]
    # scenarios (later ones take precedence over the threshold, as in the literature)
    scenario = np.where(amount > AMOUNT_THRESHOLD, 1, 0)
    for d in range(days):
        bad = rng.choice(terminals, compromised_terminals_per_day, replace=False)
        hit = np.isin(terminal, bad) & (day_of >= d) & (day_of < d + TERMINAL_DAYS)
        scenario[hit] = 2
        leaked = rng.choice(customers, compromised_cards_per_day, replace=False)
        window = np.flatnonzero(np.isin(who, leaked) & (day_of >= d) & (day_of < d + CARD_DAYS))
        chosen = window[rng.random(window.size) < 1 / 3]
        chosen = chosen[scenario[chosen] == 0]
        amount[chosen] = np.round(amount[chosen] * 5, 2)
        scenario[chosen] = 3
    order = np.lexsort((who, ts))
    ts, who, terminal, amount, scenario = (
        ts[order],
        who[order],
        terminal[order],
        amount[order],
        scenario[order],
    )
    lat = LAT0 + where[terminal, 1] / GRID * LAT_SPAN
    lon = LON0 + where[terminal, 0] / GRID * LON_SPAN
    customer = pl.Series(who).cast(pl.String)
    transactions = pl.DataFrame(
        {
            "transaction_id": pl.Series(np.arange(n)).cast(pl.String).str.pad_start(8, "0"),
            "timestamp": pl.from_epoch(pl.Series(ts), time_unit="s").dt.replace_time_zone("UTC"),
        }
    ).with_columns(
        ("t" + pl.lit(str(seed)) + "_" + pl.col("transaction_id")).alias("transaction_id"),
        ("cust_" + customer).alias("account_id"),
        ("card_" + customer).alias("card_hash"),
        pl.Series(amount).alias("amount"),
        pl.lit("EUR").alias("currency"),
        ("term_" + pl.Series(terminal).cast(pl.String)).alias("merchant_id"),
        pl.Series(CATEGORIES).gather(category[terminal]).alias("merchant_category"),
        pl.lit("pos").alias("channel"),
        pl.lit("FR").alias("country"),
        ("dev_" + customer).alias("device_id"),
        pl.concat_str(
            [
                pl.lit("10"),
                pl.Series(who // 65536 % 256).cast(pl.String),
                pl.Series(who // 256 % 256).cast(pl.String),
                pl.Series(who % 256).cast(pl.String),
            ],
            separator=".",
        ).alias("ip"),
        pl.Series(np.round(lat, 4)).alias("lat"),
        pl.Series(np.round(lon, 4)).alias("lon"),
        pl.Series(scenario > 0).alias("is_fraud"),
        pl.Series(SCENARIOS).gather(scenario).alias("scenario"),
    )
    fraud = np.flatnonzero(scenario > 0)
    reported = ts[fraud] + rng.uniform(1 * DAY, 10 * DAY, fraud.size).astype(np.int64)
    keep = reported < t0 + days * DAY
    by_time = np.argsort(reported[keep], kind="stable")
    labels = pl.DataFrame(
        {
            "transaction_id": transactions["transaction_id"].gather(fraud[keep][by_time]),
            "is_fraud": np.ones(int(keep.sum()), dtype=bool),
            "reported_at": pl.from_epoch(
                pl.Series(reported[keep][by_time]), time_unit="s"
            ).dt.replace_time_zone("UTC"),
        }
    )
    return TerminalStream(transactions, labels)
