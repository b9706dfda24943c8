"""lake.silver.fresh_rows: the anti-join that deduplicates a silver batch against the table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lake.silver import fresh_rows

SCHEMA = pa.schema([("order_id", pa.string()), ("line", pa.int32()), ("day", pa.date32())])


def _rows(*rows: tuple[str, int, date | None]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"order_id": o, "line": n, "day": d} for o, n, d in rows], schema=SCHEMA
    )


def test_only_keys_the_table_does_not_hold_are_fresh_in_every_partition(tmp_path: Path) -> None:
    uri = str(tmp_path / "silver")
    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    write_deltalake(
        uri, _rows(("a", 1, d1), ("a", 2, d1), ("b", 1, d2)), mode="append", partition_by=["day"]
    )
    write_deltalake(uri, _rows(("c", 1, d2)), mode="append", partition_by=["day"])
    batch = _rows(
        ("a", 1, d1),  # held
        ("a", 3, d1),  # a new line of a held order
        ("b", 1, d2),  # held, in a later partition
        ("c", 1, d2),  # held, written by the second commit
        ("d", 1, d3),  # a partition the table does not have yet
        ("b", 1, d3),  # a held key in another partition: another row
        ("e", 1, None),  # no partition value: never matches, kept
    )
    fresh = fresh_rows(DeltaTable(uri), batch, ("order_id", "line"), "day")
    assert fresh.schema == SCHEMA
    assert sorted(fresh.to_pylist(), key=str) == sorted(
        _rows(("a", 3, d1), ("d", 1, d3), ("b", 1, d3), ("e", 1, None)).to_pylist(), key=str
    )


def test_a_batch_the_table_already_holds_leaves_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "silver")
    held = _rows(("a", 1, date(2026, 1, 1)), ("b", 1, date(2026, 1, 2)))
    write_deltalake(uri, held, mode="append", partition_by=["day"])
    fresh = fresh_rows(DeltaTable(uri), held, ("order_id", "line"), "day")
    assert fresh.num_rows == 0 and fresh.schema == SCHEMA


def test_keys_at_the_edges_of_the_batch_range_and_quoted_keys_are_matched(tmp_path: Path) -> None:
    uri = str(tmp_path / "silver")
    d1 = date(2026, 1, 1)
    write_deltalake(uri, _rows(("m", 1, d1), ("o'k", 1, d1)), mode="append", partition_by=["day"])
    DeltaTable(uri).delete("order_id = 'none'")  # no-op delete: the table stays as it is
    write_deltalake(uri, _rows(("z", 2, d1)), mode="append", partition_by=["day"])
    # "m" and "z" are the batch's smallest and largest keys, line 1 and 2 its line bounds
    batch = _rows(("m", 1, d1), ("o'k", 1, d1), ("q", 1, d1), ("z", 2, d1))
    fresh = fresh_rows(DeltaTable(uri), batch, ("order_id", "line"), "day")
    assert fresh.to_pylist() == _rows(("q", 1, d1)).to_pylist()


def test_a_rewritten_file_and_a_plain_append_are_read_together(tmp_path: Path) -> None:
    """DELETE rewrites files with string_view columns, appends write plain strings."""
    uri = str(tmp_path / "silver")
    d1 = date(2026, 1, 1)
    write_deltalake(uri, _rows(("a", 1, d1), ("b", 1, d1)), mode="append", partition_by=["day"])
    DeltaTable(uri).delete("order_id = 'a'")
    write_deltalake(uri, _rows(("c", 1, d1)), mode="append", partition_by=["day"])
    batch = _rows(("a", 1, d1), ("b", 1, d1), ("c", 1, d1))
    fresh = fresh_rows(DeltaTable(uri), batch, ("order_id", "line"), "day")
    assert fresh.to_pylist() == _rows(("a", 1, d1)).to_pylist()


def test_files_outside_the_batch_key_range_are_not_read(tmp_path: Path) -> None:
    uri = str(tmp_path / "silver")
    d1 = date(2026, 1, 1)
    write_deltalake(uri, _rows(("a", 1, d1), ("b", 1, d1)), mode="append", partition_by=["day"])
    write_deltalake(uri, _rows(("x", 1, d1), ("y", 1, d1)), mode="append", partition_by=["day"])
    table = DeltaTable(uri)
    later = [f for f in table.file_uris() if f not in set(DeltaTable(uri, version=0).file_uris())]
    assert len(later) == 1
    Path(later[0]).unlink()  # the keys x..y are gone: reading that file would fail
    batch = _rows(("a", 1, d1), ("c", 1, d1))
    fresh = fresh_rows(table, batch, ("order_id", "line"), "day")
    assert fresh.to_pylist() == _rows(("c", 1, d1)).to_pylist()
