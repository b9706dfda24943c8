"""Online feature store: per card / device / IP windows, merchant and category counters,
label times and the device ↔ account ↔ IP graph, behind one interface.

`InMemoryStore` (default, one process) and `RedisStore` (production profile,
`LAKEHOUSE_REDIS_URL`) hold the same data; `snapshot` reads everything one transaction's
features need (one Redis round trip, pipelined) and `record` adds the transaction (one
more); the decision service does both in one atomic round trip (`snapshot_and_record`), so
that several service processes can share one Redis. Keys are the pseudonymised silver
identifiers, so no raw PII sits in Redis, and the service and the batch path see the same
identifiers.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from fraud.features import (
    CONTEXT_US,
    ENTITIES,
    GRAPH_NODES,
    GRAPH_PAIRS,
    PAIR_EDGES,
    PROFILE_WINDOWS_US,
    WINDOWS_US,
    EntityHistory,
    PriorHistory,
    component_roots,
    prior_history,
)
from governance.pii import silver_row

LONGEST_WINDOW_US = max(WINDOWS_US.values())
TX_MEMORY_SECONDS = 180 * 86_400  # how long a transaction's merchant is kept for its label


def to_silver(event: Mapping[str, object], pii_key: str) -> dict[str, object]:
    """A `transactions` event (seed schema) → silver column names and values, personal fields
    treated as silver treats them (`governance.pii`: hashes, coordinate grid)."""
    return silver_row("transactions", event, pii_key)


def graph_nodes(tx: Mapping[str, object]) -> list[str]:
    """The transaction's account, device and IP as nodes of the graph (none without an
    account: its edges all go through the account)."""
    if tx.get("account_hash") is None:
        return []
    return [prefix + str(tx[c]) for c, prefix in GRAPH_NODES.items() if tx.get(c) is not None]


def _horizon(entity: str) -> int:
    """How long an entity's events are kept: the card's feed its 30-day profile."""
    return CONTEXT_US if entity == "card" else LONGEST_WINDOW_US


@dataclass
class StoreState:
    """What a store holds after a stream of transactions, computed column-wise from silver
    instead of replaying it row by row (`FeatureStore.load`)."""

    prior: PriorHistory
    events: dict[str, pl.DataFrame]  # entity -> key, t, amount, merchant_id, transaction_id
    components: pl.DataFrame  # node, root, size (`component_roots`)
    places: pl.DataFrame  # transaction_id, merchant_id, merchant_category: labels may come
    merchant_events: pl.DataFrame  # merchant_id, t, transaction_id: the last CONTEXT_US


def state_from_history(transactions: pl.DataFrame, labels: pl.DataFrame | None) -> StoreState:
    """The store's state after `transactions` (silver columns) and the fraud labels of them:
    the windows keep what is within their reach of the latest transaction."""
    tx = transactions.sort("ts", "transaction_id")
    prior = prior_history(tx, labels)
    latest = tx["ts"].dt.epoch("us").max() if tx.height else 0
    t = pl.col("ts").dt.epoch("us")
    events = {
        entity: tx.filter(pl.col(column).is_not_null() & (t > latest - _horizon(entity))).select(
            pl.col(column).alias("key"),
            t.alias("t"),
            pl.col("amount").cast(pl.Float64),
            "merchant_id",
            "transaction_id",
        )
        for entity, column in ENTITIES.items()
    }
    places = tx.filter(t > latest - TX_MEMORY_SECONDS * 1_000_000).select(
        "transaction_id", "merchant_id", "merchant_category"
    )
    merchant_events = tx.filter(t > latest - CONTEXT_US).select(
        "merchant_id", t.alias("t"), "transaction_id"
    )
    return StoreState(prior, events, component_roots(prior.edges), places, merchant_events)


def _pairs(prior: PriorHistory) -> Iterator[tuple[str, str, list[str]]]:
    """(GRAPH_PAIRS feature, node, its distinct neighbours) of the prior history's graph."""
    for feature, (node, neighbour) in GRAPH_PAIRS.items():
        grouped = prior.edges[PAIR_EDGES[feature]].group_by(node).agg(pl.col(neighbour))
        for key, members in grouped.iter_rows():
            yield feature, key, members


class FeatureStore(Protocol):
    def snapshot(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory: ...

    def record(self, tx: Mapping[str, object], ts_us: int) -> None: ...

    def snapshot_and_record(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory:
        """`snapshot` then `record`, as one atomic step (the decision service's path)."""
        ...

    def record_label(self, transaction_id: str, is_fraud: bool, reported_us: int) -> None: ...

    def load(self, state: StoreState) -> None:
        """Fill an empty store with `state` (the decision service's warm-up)."""
        ...

    def clear(self) -> int: ...

    def forget(self, accounts: set[str], cards: set[str]) -> int: ...

    def close(self) -> None: ...


class InMemoryStore:
    """Everything in dictionaries of this process (default profile, tests, benchmarks)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> int:
        self.events: dict[tuple[str, str], list[tuple[int, float, str]]] = defaultdict(list)
        self.last_card: dict[str, tuple[int, float | None, float | None, str]] = {}
        self.tx_count: dict[tuple[str, str], int] = defaultdict(int)
        self.label_times: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.labelled: set[str] = set()
        self.tx_place: dict[str, tuple[str, str]] = {}
        self.graph: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.parent: dict[str, str] = {}  # union-find over graph nodes; roots are absent
        self.size: dict[str, int] = {}  # root -> component size (absent: 1)
        self.merchant_times: dict[str, list[int]] = defaultdict(list)  # sorted, last 30 days
        self.merchant_amount: dict[str, float] = defaultdict(float)
        return 0

    def load(self, state: StoreState) -> None:
        prior = state.prior
        for merchant, n in prior.merchant_tx.iter_rows():
            self.tx_count[("m", str(merchant))] = n
        for category, n in prior.mcc_tx.iter_rows():
            self.tx_count[("c", str(category))] = n
        for card, t, lat, lon, country in prior.card_last.iter_rows():
            self.last_card[card] = (t, lat, lon, str(country))
        for merchant, total in prior.merchant_amount.iter_rows():
            self.merchant_amount[str(merchant)] = total
        for merchant, times in (
            state.merchant_events.group_by("merchant_id").agg(pl.col("t").sort()).iter_rows()
        ):
            self.merchant_times[str(merchant)] = list(times)
        for feature, key, members in _pairs(prior):
            self.graph[(feature, key)] = set(members)
        for node, root, size in state.components.iter_rows():
            if node == root:
                self.size[root] = size
            else:
                self.parent[node] = root
        for entity, frame in state.events.items():
            grouped = frame.group_by("key").agg("t", "amount", "merchant_id")
            for key, *columns in grouped.iter_rows():
                self.events[(entity, key)] = list(zip(*columns, strict=True))
        self.tx_place.update(
            zip(
                state.places["transaction_id"],
                zip(state.places["merchant_id"], state.places["merchant_category"], strict=True),
                strict=True,
            )
        )
        for txid, merchant, category, t in prior.fraud_labels.iter_rows():
            if txid not in self.labelled:
                self.labelled.add(txid)
                self.label_times[("m", merchant)].append(t)
                self.label_times[("c", category)].append(t)

    def _root(self, node: str) -> str:
        while node in self.parent:
            node = self.parent[node]
        return node

    def snapshot(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory:
        events = {
            entity: list(self.events.get((entity, str(tx[column])), ()))
            for entity, column in ENTITIES.items()
            if tx.get(column) is not None
        }
        card = str(tx["card_hash"])
        merchant, category = str(tx["merchant_id"]), str(tx["merchant_category"])
        graph: dict[str, tuple[int, bool] | None] = {}
        for feature, (node, neighbour) in GRAPH_PAIRS.items():
            if tx.get(node) is None or tx.get(neighbour) is None:
                graph[feature] = None
                continue
            members = self.graph.get((feature, str(tx[node])), set())
            graph[feature] = (len(members), str(tx[neighbour]) in members)
        roots = [self._root(node) for node in graph_nodes(tx)]
        times = self.merchant_times.get(merchant, [])
        upto = bisect.bisect_right(times, ts_us)
        labels = self.label_times.get(("m", merchant), ())
        return EntityHistory(
            events=events,
            card_previous=self.last_card.get(card),
            card_amounts_7d=[(t, a) for t, a, _ in events.get("card", [])],
            merchant_frauds=sum(t < ts_us for t in self.label_times.get(("m", merchant), ())),
            merchant_transactions=self.tx_count.get(("m", merchant), 0),
            mcc_frauds=sum(t < ts_us for t in self.label_times.get(("c", category), ())),
            mcc_transactions=self.tx_count.get(("c", category), 0),
            graph=graph,
            components=[(root, self.size.get(root, 1)) for root in roots],
            merchant_amount_total=self.merchant_amount.get(merchant, 0.0),
            merchant_tx_windows={
                label: upto - bisect.bisect_right(times, ts_us - width)
                for label, width in PROFILE_WINDOWS_US.items()
            },
            merchant_fraud_windows={
                label: sum(ts_us - width < t < ts_us for t in labels)
                for label, width in PROFILE_WINDOWS_US.items()
            },
        )

    def record(self, tx: Mapping[str, object], ts_us: int) -> None:
        amount, merchant = float(tx["amount"]), str(tx["merchant_id"])  # type: ignore[arg-type]
        times = self.merchant_times[merchant]
        bisect.insort(times, ts_us)
        del times[: bisect.bisect_right(times, ts_us - CONTEXT_US)]
        self.merchant_amount[merchant] += amount
        for entity, column in ENTITIES.items():
            if tx.get(column) is None:
                continue
            key = (entity, str(tx[column]))
            kept = [e for e in self.events[key] if e[0] > ts_us - _horizon(entity)]
            kept.append((ts_us, amount, merchant))
            self.events[key] = kept
        card = str(tx["card_hash"])
        if card not in self.last_card or self.last_card[card][0] <= ts_us:
            self.last_card[card] = (ts_us, tx.get("lat"), tx.get("lon"), str(tx["country"]))  # type: ignore[assignment]
        category = str(tx["merchant_category"])
        self.tx_count[("m", merchant)] += 1
        self.tx_count[("c", category)] += 1
        self.tx_place[str(tx["transaction_id"])] = (merchant, category)
        for feature, (node, neighbour) in GRAPH_PAIRS.items():
            if tx.get(node) is not None and tx.get(neighbour) is not None:
                self.graph[(feature, str(tx[node]))].add(str(tx[neighbour]))
        nodes = graph_nodes(tx)
        for other in nodes[1:]:
            self._union(nodes[0], other)

    def snapshot_and_record(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory:
        history = self.snapshot(tx, ts_us)  # copies: `record` does not change it
        self.record(tx, ts_us)
        return history

    def _union(self, a: str, b: str) -> None:
        root_a, root_b = self._root(a), self._root(b)
        if root_a == root_b:
            return
        size_a, size_b = self.size.pop(root_a, 1), self.size.pop(root_b, 1)
        if size_a < size_b:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] = size_a + size_b

    def record_label(self, transaction_id: str, is_fraud: bool, reported_us: int) -> None:
        place = self.tx_place.get(transaction_id)
        if not is_fraud or place is None or transaction_id in self.labelled:
            return
        self.labelled.add(transaction_id)
        self.label_times[("m", place[0])].append(reported_us)
        self.label_times[("c", place[1])].append(reported_us)

    def forget(self, accounts: set[str], cards: set[str]) -> int:
        """Remove everything keyed by these account and card pseudonyms (erasure)."""
        removed = 0
        for card in cards:
            removed += self.events.pop(("card", card), None) is not None
            removed += self.last_card.pop(card, None) is not None
        for key in list(self.graph):
            _feature, node = key
            if node in accounts:
                del self.graph[key]
                removed += 1
            elif accounts & self.graph[key]:
                self.graph[key] -= accounts
                removed += 1
        for account in accounts:
            node = GRAPH_NODES["account_hash"] + account
            parent, deleted, sizes = unlink_node(self.parent, self.size, node)
            self.parent.update(parent)
            for n in deleted:
                self.parent.pop(n, None)
            for n, size in sizes.items():
                if size is None:
                    self.size.pop(n, None)
                else:
                    self.size[n] = size
            removed += bool(parent or deleted or sizes)
        return removed

    def close(self) -> None:
        pass


def unlink_node(
    parent: Mapping[str, str], size: Mapping[str, int], node: str
) -> tuple[dict[str, str], list[str], dict[str, int | None]]:
    """Union-find changes that take `node` out of its component (erasure): its children point
    to its parent, or, when it is the root, to the first child, which becomes the root with
    one member fewer. Returns (parent updates, parent entries to delete, size updates; None
    deletes)."""
    children = sorted(n for n, p in parent.items() if p == node)
    updates: dict[str, str] = {}
    sizes: dict[str, int | None] = {}
    deleted: list[str] = []
    if node in parent:  # not a root: children skip it; the root's size loses one
        up = parent[node]
        updates = dict.fromkeys(children, up)
        deleted.append(node)
        root = up
        while root in parent and root != node:
            root = parent[root]
        sizes[root] = max(1, size.get(root, 1) - 1)
    elif children:  # a root with members: the first child takes over
        heir = children[0]
        updates = dict.fromkeys(children[1:], heir)
        deleted.append(heir)
        sizes[heir] = max(1, size.get(node, 1) - 1)
        sizes[node] = None
    elif node in size:
        sizes[node] = None
    return updates, deleted, sizes


# Union-find over graph nodes in two hashes (KEYS[1] node -> parent, roots absent; KEYS[2]
# root -> component size, absent = 1), in Lua so that a union is atomic between services.
_FIND_ROOT = """
local function root(node)
  local parent = redis.call('HGET', KEYS[1], node)
  while parent do node = parent; parent = redis.call('HGET', KEYS[1], node) end
  return node
end
"""
_ROOTS_LUA = (
    _FIND_ROOT
    + """
local out = {}
for _, node in ipairs(ARGV) do
  local r = root(node)
  out[#out + 1] = r
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], r) or '1')
end
return out
"""
)
_UNION_LUA = (
    _FIND_ROOT
    + """
local a = root(ARGV[1])
for i = 2, #ARGV do
  local b = root(ARGV[i])
  if a ~= b then
    local size_a = tonumber(redis.call('HGET', KEYS[2], a) or '1')
    local size_b = tonumber(redis.call('HGET', KEYS[2], b) or '1')
    if size_a < size_b then a, b = b, a end
    redis.call('HSET', KEYS[1], b, a)
    redis.call('HDEL', KEYS[2], b)
    redis.call('HSET', KEYS[2], a, size_a + size_b)
  end
end
return 0
"""
)


class RedisStore:
    """The same data in Redis: sorted sets of events (score = event time, µs), counters,
    sorted sets of fraud-label times, sets for the graph degrees, two hashes for its
    components; every key under `prefix`."""

    def __init__(self, url: str, prefix: str = "lakehouse:fraud:") -> None:
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self._uf_keys = [self._k("uf", "parent"), self._k("uf", "size")]
        # loaded once and queued as EVALSHA: a redis-py Script in a pipeline would add a
        # SCRIPT EXISTS round trip to every request
        self._shas = {lua: self.client.script_load(lua) for lua in (_ROOTS_LUA, _UNION_LUA)}

    def _execute_with_script(self, pipe: Any, lua: str | None, nodes: list[str]) -> list[Any]:
        """Queue the union-find script `lua` (if any) on `nodes` last, execute the pipeline
        and return its replies. If Redis lost its script cache (restart, SCRIPT FLUSH) the
        script runs again with EVAL, which reloads it: the other commands ran anyway."""
        import redis

        if lua is not None:
            pipe.evalsha(self._shas[lua], len(self._uf_keys), *self._uf_keys, *nodes)
        replies = pipe.execute(raise_on_error=False)
        if lua is not None and isinstance(replies[-1], redis.exceptions.NoScriptError):
            replies[-1] = self.client.eval(lua, len(self._uf_keys), *self._uf_keys, *nodes)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def snapshot(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory:
        pipe = self.client.pipeline(transaction=False)
        parse = self._queue_snapshot(pipe, tx, ts_us)
        nodes = graph_nodes(tx)
        return parse(self._execute_with_script(pipe, _ROOTS_LUA if nodes else None, nodes))

    def snapshot_and_record(self, tx: Mapping[str, object], ts_us: int) -> EntityHistory:
        """`snapshot` then `record` in one MULTI/EXEC: no other client's command runs between
        the read and the write, so decisions on one card in several processes are those of one
        process in the order Redis executed them (no two see the same prior state). The
        union-find scripts go as EVAL here, cached by Redis, so that a lost script cache
        cannot split the transaction."""
        pipe = self.client.pipeline(transaction=True)
        parse = self._queue_snapshot(pipe, tx, ts_us)
        nodes = graph_nodes(tx)
        if nodes:
            pipe.eval(_ROOTS_LUA, len(self._uf_keys), *self._uf_keys, *nodes)
        read = len(pipe)
        self._queue_record(pipe, tx, ts_us)
        if len(nodes) > 1:
            pipe.eval(_UNION_LUA, len(self._uf_keys), *self._uf_keys, *nodes)
        return parse(pipe.execute()[:read])

    def _queue_snapshot(
        self, pipe: Any, tx: Mapping[str, object], ts_us: int
    ) -> Callable[[list[Any]], EntityHistory]:
        """Queue the reads of `snapshot` (the components script excepted, queued last by the
        caller) and return the function that turns their replies into the history."""
        entities = [(e, c) for e, c in ENTITIES.items() if tx.get(c) is not None]
        for entity, column in entities:
            since = ts_us - _horizon(entity)
            pipe.zrangebyscore(
                self._k("ev", entity, str(tx[column])), f"({since}", "+inf", withscores=True
            )
        card = str(tx["card_hash"])
        merchant, category = str(tx["merchant_id"]), str(tx["merchant_category"])
        pipe.hgetall(self._k("last", card))
        pipe.zcount(self._k("lab", "m", merchant), "-inf", f"({ts_us}")
        pipe.get(self._k("n", "m", merchant))
        pipe.zcount(self._k("lab", "c", category), "-inf", f"({ts_us}")
        pipe.get(self._k("n", "c", category))
        pairs = [
            (feature, node, neighbour)
            for feature, (node, neighbour) in GRAPH_PAIRS.items()
            if tx.get(node) is not None and tx.get(neighbour) is not None
        ]
        for feature, node, neighbour in pairs:
            key = self._k("g", feature, str(tx[node]))
            pipe.scard(key)
            pipe.sismember(key, str(tx[neighbour]))
        for width in PROFILE_WINDOWS_US.values():
            pipe.zcount(self._k("mt", merchant), f"({ts_us - width}", ts_us)
            pipe.zcount(self._k("lab", "m", merchant), f"({ts_us - width}", f"({ts_us}")
        pipe.get(self._k("amt", "m", merchant))
        return lambda replies: self._history(replies, entities, pairs, bool(graph_nodes(tx)))

    def _history(
        self,
        replies: list[Any],
        entities: list[tuple[str, str]],
        pairs: list[tuple[str, str, str]],
        nodes: bool,
    ) -> EntityHistory:
        events: dict[str, list[tuple[int, float, str]]] = {}
        for (entity, _), members in zip(entities, replies, strict=False):
            rows = []
            for member, score in members:
                _, amount, merchant_id = member.rsplit("|", 2)
                rows.append((int(score), float(amount), merchant_id))
            events[entity] = rows
        rest = replies[len(entities) :]
        last = rest[0]
        previous = (
            (
                int(last["ts"]),
                float(last["lat"]) if last.get("lat") else None,
                float(last["lon"]) if last.get("lon") else None,
                last["country"],
            )
            if last
            else None
        )
        graph: dict[str, tuple[int, bool] | None] = dict.fromkeys(GRAPH_PAIRS)
        for i, (feature, _, _) in enumerate(pairs):
            graph[feature] = (int(rest[5 + 2 * i]), bool(rest[6 + 2 * i]))
        windows = rest[5 + 2 * len(pairs) :]
        flat = windows[2 * len(PROFILE_WINDOWS_US) + 1] if nodes else []
        return EntityHistory(
            events=events,
            card_previous=previous,
            card_amounts_7d=[(t, a) for t, a, _ in events.get("card", [])],
            merchant_frauds=int(rest[1]),
            merchant_transactions=int(rest[2] or 0),
            mcc_frauds=int(rest[3]),
            mcc_transactions=int(rest[4] or 0),
            graph=graph,
            components=[(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)],
            merchant_amount_total=float(windows[2 * len(PROFILE_WINDOWS_US)] or 0.0),
            merchant_tx_windows={
                label: int(windows[2 * i]) for i, label in enumerate(PROFILE_WINDOWS_US)
            },
            merchant_fraud_windows={
                label: int(windows[2 * i + 1]) for i, label in enumerate(PROFILE_WINDOWS_US)
            },
        )

    def record(self, tx: Mapping[str, object], ts_us: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._queue_record(pipe, tx, ts_us)
        nodes = graph_nodes(tx)
        self._execute_with_script(pipe, _UNION_LUA if len(nodes) > 1 else None, nodes)

    def _queue_record(self, pipe: Any, tx: Mapping[str, object], ts_us: int) -> None:
        """Queue the writes of `record` but the union-find script (queued last by the caller)."""
        txid, merchant = str(tx["transaction_id"]), str(tx["merchant_id"])
        category = str(tx["merchant_category"])
        for entity, column in ENTITIES.items():
            if tx.get(column) is None:
                continue
            key = self._k("ev", entity, str(tx[column]))
            pipe.zadd(key, {f"{txid}|{float(tx['amount'])!r}|{merchant}": ts_us})  # type: ignore[arg-type]
            pipe.zremrangebyscore(key, "-inf", ts_us - _horizon(entity))
            pipe.pexpire(key, _horizon(entity) // 1000 + 60_000)
        card = str(tx["card_hash"])
        last = self._k("last", card)
        # keep the latest by event time (a late event does not replace a newer one)
        pipe.eval(
            "local t = redis.call('HGET', KEYS[1], 'ts') "
            "if (not t) or tonumber(t) <= tonumber(ARGV[1]) then "
            "redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'lat', ARGV[2], 'lon', ARGV[3], 'country', ARGV[4]) end "
            "return 0",
            1,
            last,
            ts_us,
            "" if tx.get("lat") is None else repr(float(tx["lat"])),  # type: ignore[arg-type]
            "" if tx.get("lon") is None else repr(float(tx["lon"])),  # type: ignore[arg-type]
            str(tx["country"]),
        )
        pipe.incr(self._k("n", "m", merchant))
        pipe.incr(self._k("n", "c", category))
        pipe.incrbyfloat(self._k("amt", "m", merchant), float(tx["amount"]))  # type: ignore[arg-type]
        recent = self._k("mt", merchant)
        pipe.zadd(recent, {txid: ts_us})
        pipe.zremrangebyscore(recent, "-inf", ts_us - CONTEXT_US)
        pipe.pexpire(recent, CONTEXT_US // 1000 + 60_000)
        pipe.set(self._k("tx", txid), f"{merchant}|{category}", ex=TX_MEMORY_SECONDS)
        for feature, (node, neighbour) in GRAPH_PAIRS.items():
            if tx.get(node) is not None and tx.get(neighbour) is not None:
                pipe.sadd(self._k("g", feature, str(tx[node])), str(tx[neighbour]))

    def record_label(self, transaction_id: str, is_fraud: bool, reported_us: int) -> None:
        if not is_fraud:
            return
        place = self.client.get(self._k("tx", transaction_id))
        if place is None:
            return
        merchant, category = place.rsplit("|", 1)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self._k("lab", "m", merchant), {transaction_id: reported_us}, nx=True)
        pipe.zadd(self._k("lab", "c", category), {transaction_id: reported_us}, nx=True)
        pipe.execute()

    def load(self, state: StoreState, chunk: int = 10_000) -> None:
        """Write `state` with pipelined commands, `chunk` per round trip."""
        pipe = self.client.pipeline(transaction=False)
        queued = 0

        def flush_if_full() -> None:
            nonlocal queued
            queued += 1
            if queued >= chunk:
                pipe.execute()
                queued = 0

        prior = state.prior
        for kind, frame in (("m", prior.merchant_tx), ("c", prior.mcc_tx)):
            for key, n in frame.iter_rows():
                pipe.set(self._k("n", kind, str(key)), n)
                flush_if_full()
        for merchant, total in prior.merchant_amount.iter_rows():
            pipe.set(self._k("amt", "m", str(merchant)), repr(float(total)))
            flush_if_full()
        for merchant, t, txid in state.merchant_events.iter_rows():
            name = self._k("mt", str(merchant))
            pipe.zadd(name, {txid: t})
            pipe.pexpire(name, CONTEXT_US // 1000 + 60_000)
            flush_if_full()
        for card, t, lat, lon, country in prior.card_last.iter_rows():
            fields = {"ts": t, "lat": "" if lat is None else repr(lat), "country": str(country)}
            pipe.hset(
                self._k("last", card), mapping={**fields, "lon": "" if lon is None else repr(lon)}
            )
            flush_if_full()
        for feature, key, members in _pairs(prior):
            pipe.sadd(self._k("g", feature, key), *members)
            flush_if_full()
        parent_key, size_key = self._uf_keys
        is_root = pl.col("node") == pl.col("root")
        for key, frame in (
            (size_key, state.components.filter(is_root).select("node", "size")),
            (parent_key, state.components.filter(~is_root).select("node", "root")),
        ):
            nodes, values = frame.to_series(0).to_list(), frame.to_series(1).to_list()
            for start in range(0, len(nodes), chunk):
                part = slice(start, start + chunk)
                pipe.hset(key, mapping=dict(zip(nodes[part], values[part], strict=True)))
                flush_if_full()
        for entity, frame in state.events.items():
            ttl = _horizon(entity) // 1000 + 60_000
            for key, t, amount, merchant, txid in frame.iter_rows():
                name = self._k("ev", entity, key)
                pipe.zadd(name, {f"{txid}|{amount!r}|{merchant}": t})
                pipe.pexpire(name, ttl)
                flush_if_full()
        for txid, merchant, category in state.places.iter_rows():
            pipe.set(self._k("tx", txid), f"{merchant}|{category}", ex=TX_MEMORY_SECONDS)
            flush_if_full()
        for txid, merchant, category, t in prior.fraud_labels.iter_rows():
            pipe.zadd(self._k("lab", "m", merchant), {txid: t}, nx=True)
            pipe.zadd(self._k("lab", "c", category), {txid: t}, nx=True)
            flush_if_full()
        pipe.execute()

    def forget(self, accounts: set[str], cards: set[str]) -> int:
        """Remove everything keyed by these account and card pseudonyms (erasure)."""
        removed = 0
        for card in cards:
            removed += self.client.delete(self._k("ev", "card", card), self._k("last", card))
        for feature, (node, neighbour) in GRAPH_PAIRS.items():
            if node == "account_hash":
                for account in accounts:
                    removed += self.client.delete(self._k("g", feature, account))
            elif neighbour == "account_hash" and accounts:
                for key in self.client.scan_iter(match=self._k("g", feature, "*"), count=1000):
                    removed += self.client.srem(key, *accounts)
        parent_key, size_key = self._uf_keys
        for account in accounts:
            node = GRAPH_NODES["account_hash"] + account
            parent = self.client.hgetall(parent_key)
            sizes = {k: int(v) for k, v in self.client.hgetall(size_key).items()}
            updates, deleted, size_updates = unlink_node(parent, sizes, node)
            pipe = self.client.pipeline(transaction=True)
            if updates:
                pipe.hset(parent_key, mapping=updates)
            if deleted:
                pipe.hdel(parent_key, *deleted)
            for n, size in size_updates.items():
                if size is None:
                    pipe.hdel(size_key, n)
                else:
                    pipe.hset(size_key, n, size)
            pipe.execute()
            removed += bool(updates or deleted or size_updates)
        return removed

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, re-warming)."""
        deleted = 0
        for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            deleted += self.client.delete(key)
        return deleted

    def close(self) -> None:
        self.client.close()


def open_store(redis_url: str | None, prefix: str = "lakehouse:fraud:") -> FeatureStore:
    return RedisStore(redis_url, prefix) if redis_url else InMemoryStore()
