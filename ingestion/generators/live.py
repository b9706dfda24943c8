"""Pacing for live mode: replay generated events at `speed` x real time.

`--minutes M --speed X` generates M minutes of events, then sends them over M / X minutes of
wall clock: an event is released when (event_time - start) / speed seconds have elapsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Protocol, TypeVar

import numpy as np

from ingestion.generators.orders import epoch_seconds
from lakehouse.errors import ConfigError

T = TypeVar("T")
EventTime = datetime | float | int  # aware datetime or UTC epoch seconds


class EventSource(Protocol):
    """What OrderStream and InventoryStream offer: messages and their event times per topic."""

    def messages(self, topic: str) -> list[tuple[bytes, bytes]]: ...

    def event_seconds(self, topic: str) -> np.ndarray: ...


def _seconds(moment: EventTime) -> float:
    return float(epoch_seconds(moment)) if isinstance(moment, datetime) else float(moment)


def paced(
    items: Iterable[tuple[EventTime, T]],
    start: EventTime,
    speed: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[T]:
    """Yield each item once the wall clock (from the first pull) reaches
    (event_time - start) / speed. Items must come in event-time order; late ones (the consumer
    was slow) are yielded at once, never dropped."""
    if not speed > 0:
        raise ConfigError(f"speed={speed} is invalid: use a positive factor (1 = real time)")
    origin = _seconds(start)
    wall0: float | None = None
    for event_time, item in items:
        if wall0 is None:
            wall0 = clock()
        delay = wall0 + (_seconds(event_time) - origin) / speed - clock()
        if delay > 0:
            sleep(delay)
        yield item


def until(items: Iterable[T], stop: Callable[[], bool] | None) -> Iterator[T]:
    """`items` until `stop()` says so (checked before each item; None: all of them)."""
    for item in items:
        if stop is not None and stop():
            return
        yield item


def timed_messages(
    sources: Mapping[str, EventSource],
) -> Iterator[tuple[float, tuple[str, bytes, bytes]]]:
    """Merge several topics into one event-time ordered stream of
    (event_time, (topic, key, value)), e.g. {"orders": s, "sessions": s, "inventory": inv}.
    Ties keep the mapping's topic order. One numpy sort instead of a heap merge (4x faster)."""
    topics = list(sources)
    messages = [sources[t].messages(t) for t in topics]
    times = [sources[t].event_seconds(t) for t in topics]
    sizes = [len(m) for m in messages]
    if not sum(sizes):
        return
    which = np.repeat(np.arange(len(topics)), sizes)
    position = np.concatenate([np.arange(n) for n in sizes])
    all_times = np.concatenate(times).astype(np.float64)
    order = np.argsort(all_times, kind="stable")
    for t, w, p in zip(
        all_times[order].tolist(), which[order].tolist(), position[order].tolist(), strict=True
    ):
        key, value = messages[w][p]
        yield t, (topics[w], key, value)
