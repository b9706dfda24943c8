"""A capped micro-batch advances every partition in step and ends at one Kafka time."""

from __future__ import annotations

import pyarrow as pa

from ingestion.raw import in_step_targets, time_step_mask


def test_cap_is_shared_in_proportion_to_each_partitions_lag() -> None:
    start = {0: 100, 1: 0, 2: 50}
    target = {0: 1100, 1: 100, 2: 450}  # lags 1000, 100, 400
    assert in_step_targets(start, target, 300) == {0: 300, 1: 20, 2: 130}
    assert in_step_targets(start, target, 301) == {0: 301, 1: 20, 2: 130}
    # a range within the cap is read whole
    assert in_step_targets(start, target, 1500) == target
    # uneven remainders: the cap is used exactly
    ends = in_step_targets({0: 0, 1: 0, 2: 0}, {0: 7, 1: 7, 2: 7}, 10)
    assert sum(ends.values()) == 10 and max(ends.values()) - min(ends.values()) == 1


def _batch(rows: list[tuple[int, int, int]]) -> pa.Table:
    partition, offset, stamp = zip(*rows, strict=True)
    return pa.table(
        {
            "partition": pa.array(partition, pa.int32()),
            "offset": pa.array(offset, pa.int64()),
            "timestamp_ms": pa.array(stamp, pa.int64()),
        }
    )


def test_batch_ends_before_the_earliest_last_time_of_a_partition_cut_short() -> None:
    # partition 0 was cut short at t=30; partition 1 read further in time (up to t=50)
    batch = _batch([(0, 0, 10), (0, 1, 30), (1, 0, 10), (1, 1, 25), (1, 2, 30), (1, 3, 50)])
    start = {0: 0, 1: 0}
    keep = time_step_mask(batch, start, capped={0: 2, 1: 4}, target={0: 9, 1: 4})
    # strictly before 30: partition 0's record at 30 may share its millisecond with unread ones
    assert keep.to_pylist() == [True, False, True, True, False, False]


def test_kept_records_stay_a_contiguous_prefix_per_partition() -> None:
    # a producer-set timestamp that goes back in time does not punch a hole in the offsets
    batch = _batch([(0, 0, 10), (0, 1, 40), (0, 2, 20), (1, 0, 5), (1, 1, 30)])
    keep = time_step_mask(batch, {0: 0, 1: 0}, capped={0: 3, 1: 2}, target={0: 3, 1: 9})
    assert keep.to_pylist() == [True, False, False, True, False]


def test_all_records_at_the_cut_millisecond_still_make_progress() -> None:
    batch = _batch([(0, 0, 7), (0, 1, 7), (1, 0, 7)])
    keep = time_step_mask(batch, {0: 0, 1: 0}, capped={0: 2, 1: 1}, target={0: 5, 1: 5})
    assert keep.to_pylist() == [True, True, True]


def test_uncapped_batch_is_kept_whole() -> None:
    batch = _batch([(0, 0, 10), (1, 0, 99)])
    keep = time_step_mask(batch, {0: 0, 1: 0}, capped={0: 1, 1: 1}, target={0: 1, 1: 1})
    assert keep.to_pylist() == [True, True]
