"""Idle streams and idle processes stop costing (seed §5: "auto-stop streams inactifs").

- A topic whose sensor saw no new offsets for `LAKEHOUSE_IDLE_STREAM_MINUTES` is idle: its
  sensor stops probing the broker every tick and probes every
  `LAKEHOUSE_IDLE_STREAM_POLL_SECONDS` instead (`stream_cadence`), saying so in its skip
  message; the first probe that finds new offsets wakes it.
- A long-running process started with `--exit-when-idle` (the live generator, the fraud
  decision service) stops after `LAKEHOUSE_IDLE_EXIT_SECONDS` without activity (`IdleWatch`):
  nothing consumed what the generator sends, no request reached the service.

Plain Python (no Dagster import)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lakehouse.config import Settings


@dataclass(frozen=True)
class StreamActivity:
    """What a topic sensor remembers in its cursor (epoch seconds)."""

    last_new_at: float | None = None  # new offsets last seen (or the topic first watched)
    last_probe_at: float | None = None

    @classmethod
    def from_cursor(cls, cursor: dict[str, Any]) -> StreamActivity:
        return cls(cursor.get("last_new_at"), cursor.get("last_probe_at"))

    def cursor_fields(self) -> dict[str, float | None]:
        return {"last_new_at": self.last_new_at, "last_probe_at": self.last_probe_at}


@dataclass(frozen=True)
class Cadence:
    probe: bool  # probe the broker on this tick
    idle: bool


def stream_cadence(
    activity: StreamActivity, now: float, idle_after_s: float, slow_every_s: float
) -> Cadence:
    """Probe every tick while the topic is active; once idle, every `slow_every_s`."""
    idle = activity.last_new_at is not None and now - activity.last_new_at >= idle_after_s
    if not idle:
        return Cadence(True, False)
    due = activity.last_probe_at is None or now - activity.last_probe_at >= slow_every_s
    return Cadence(due, True)


def after_probe(activity: StreamActivity, now: float, found_new: bool) -> StreamActivity:
    """The activity after a probe: new offsets (or a first look) reset the idle clock."""
    last_new = now if found_new or activity.last_new_at is None else activity.last_new_at
    return StreamActivity(last_new, now)


def idle_message(topic: str, activity: StreamActivity, now: float, slow_every_s: float) -> str:
    since = activity.last_new_at or now
    minutes = (now - since) / 60
    when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{topic}: idle, no new offsets since {when} UTC ({minutes:.0f} min): checking the "
        f"broker every {slow_every_s:.0f} s instead of every tick; new offsets wake it"
    )


class IdleWatch:
    """Expires after `timeout_s` without a change of `progress()` (a counter of activity:
    requests served, offsets the lake consumed). `progress` is sampled at most every
    `sample_every_s` so a hot loop may call `expired()` on every item. The first `expired()`
    starts the clock: a process that is slow to start its work (imports, connecting) is not
    idle before it began."""

    def __init__(
        self,
        timeout_s: float,
        progress: Callable[[], object],
        sample_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._progress = progress
        self._sample_every = sample_every_s
        self._clock = clock
        self._last_value: object = None
        self._last_change: float | None = None
        self._last_sample = 0.0

    @property
    def idle_seconds(self) -> float:
        return 0.0 if self._last_change is None else self._clock() - self._last_change

    def expired(self) -> bool:
        now = self._clock()
        if self._last_change is None:
            self._last_value, self._last_change, self._last_sample = self._progress(), now, now
        elif now - self._last_sample >= self._sample_every:
            self._last_sample = now
            value = self._progress()
            if value != self._last_value:
                self._last_value, self._last_change = value, now
        return now - self._last_change >= self.timeout_s


def lake_progress(settings: Settings, topics: tuple[str, ...]) -> int:
    """Offsets the lake has consumed from these topics so far (grows while a pipeline reads
    them): the activity of a generator's audience."""
    from ingestion.raw import lake_offsets

    partitions = range(settings.topic_partitions)
    return sum(sum(lake_offsets(settings, t, partitions).next_offsets.values()) for t in topics)
