"""Privacy scan: does any silver or gold table hold a personal value that raw received?

Collects, from every raw table, the values of the fields the contracts classify as personal
(`governance.pii`: ids, device ids, IPs, coordinates at full precision) and looks for them,
as whole cells, in every Delta table under the lake's `silver/` and `gold/` zones and every
table of the published gold DuckDB file; free-text columns are also searched for e-mail
addresses and phone numbers. All columnar (DuckDB), no loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from governance import pii
from lake.tables import open_table, pii_column, raw_uri
from lakehouse.config import Settings


@dataclass
class ScanResult:
    values_checked: dict[str, int] = field(default_factory=dict)  # topic.field -> distinct values
    tables_scanned: list[str] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)  # "<table>.<column>: <n> cells (<why>)"

    def summary(self) -> str:
        checked = sum(self.values_checked.values())
        return (
            f"privacy scan: {checked:,} raw personal values over {len(self.tables_scanned)} "
            f"tables: {len(self.hits)} hits"
        )


def raw_personal_values(settings: Settings, topic: str, raw: pa.Table | None = None) -> dict:
    """{field: distinct values} of the flat personal fields of `topic` as raw received them
    (decrypted: `governance.crypto`'s sealed identifiers, in the raw `pii_<field>` columns
    or, in older rows, in the payload, are read back through the key store)."""
    fields = [f for f in pii.personal_fields(topic) if "." not in f.path]
    if not fields:
        return {}
    if raw is None:
        table = open_table(raw_uri(settings, topic), settings)
        if table is None:
            return {}
        sealed = [pii_column(f.path) for f in pii.sealed_fields(topic)]
        present = {f.name for f in table.schema().fields}  # an older table may lack them
        raw = table.to_pyarrow_table(columns=["value", *(c for c in sealed if c in present)])
    raw = _plain_values(settings, topic, raw)
    con = duckdb.connect()
    try:
        con.register("raw", raw.select(["value"]))
        out: dict[str, pa.Array] = {}
        for f in fields:
            values = con.sql(
                f"SELECT DISTINCT json_extract_string(value, '$.{f.path}') AS v FROM raw "
                "WHERE v IS NOT NULL"
            ).to_arrow_table()["v"]
            out[f.path] = values.combine_chunks()
        return out
    finally:
        con.close()


def _plain_values(settings: Settings, topic: str, raw: pa.Table) -> pa.Table:
    try:
        from governance.crypto import decrypt_raw_values
    except ImportError:  # encryption not installed: raw holds plaintext
        return raw
    return decrypt_raw_values(settings, topic, raw)


def _delta_tables(settings: Settings) -> list[Path]:
    root = Path(settings.lake_root)
    found = []
    for zone in ("silver", "gold"):
        base = root / zone
        if base.exists():
            found.extend(sorted(p.parent for p in base.rglob("_delta_log")))
    return found


def _tables(settings: Settings) -> list[tuple[str, pa.Table]]:
    out: list[tuple[str, pa.Table]] = []
    root = Path(settings.lake_root)
    for path in _delta_tables(settings):
        table = open_table(str(path), settings)
        if table is not None:
            out.append((str(path.relative_to(root)), table.to_pyarrow_table()))
    gold = settings.gold_db_path
    if gold.exists():
        with duckdb.connect(str(gold), read_only=True) as con:
            names = con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
            for schema, name in names:
                out.append(
                    (
                        f"gold.duckdb:{schema}.{name}",
                        con.sql(f'FROM "{schema}"."{name}"').to_arrow_table(),
                    )
                )
    return out


def scan(settings: Settings, topics: list[str] | None = None) -> ScanResult:
    """Look for every raw personal value of `topics` (default: all) in silver and gold."""
    from ingestion.contracts import CONTRACTS

    result = ScanResult()
    strings: set[str] = set()
    pairs: list[pa.Table] = []
    for topic in topics or sorted(CONTRACTS):
        grid_fields = []
        for name, values in raw_personal_values(settings, topic).items():
            cls = pii.fields_of(topic)[name]
            result.values_checked[f"{topic}.{name}"] = len(values)
            if cls.treatment == "grid":
                grid_fields.append(name)
            elif cls.treatment != "redact_contacts":
                strings.update(str(v) for v in values.to_pylist())
        if len(grid_fields) == 2:
            pairs.append(_coordinate_pairs(settings, topic, grid_fields))
    needles_str = pa.array(sorted(strings), pa.string())
    coordinates = pa.concat_tables(pairs) if pairs else None
    for name, table in _tables(settings):
        result.tables_scanned.append(name)
        floats: list[str] = []
        for column_name in table.column_names:
            column = table[column_name]
            kind = column.type
            if pa.types.is_dictionary(kind):
                column = column.cast(kind.value_type)
                kind = kind.value_type
            if (
                pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind)
            ):
                column = column.cast(pa.string())
                n = pc.sum(pc.is_in(column, value_set=needles_str)).as_py() or 0
                if n:
                    result.hits.append(
                        f"{name}.{column_name}: {n} cells equal a raw personal value"
                    )
                contacts = _contact_cells(column)
                if contacts:
                    result.hits.append(
                        f"{name}.{column_name}: {contacts} cells hold an e-mail or phone number"
                    )
            elif pa.types.is_floating(kind):
                floats.append(column_name)
        if coordinates is not None and len(floats) >= 2:
            result.hits.extend(_coordinate_hits(name, table, floats, coordinates))
    return result


def _coordinate_pairs(settings: Settings, topic: str, fields: list[str]) -> pa.Table:
    """(a, b) full-precision coordinate pairs raw received (off the silver grid)."""
    table = open_table(raw_uri(settings, topic), settings)
    if table is None:
        return pa.table({"a": pa.array([], pa.float64()), "b": pa.array([], pa.float64())})
    a, b = fields
    con = duckdb.connect()
    try:
        con.register("raw", table.to_pyarrow_table(columns=["value"]))
        return con.sql(
            f"""SELECT DISTINCT json_extract(value, '$.{a}')::DOUBLE AS a,
                       json_extract(value, '$.{b}')::DOUBLE AS b FROM raw
                WHERE a IS NOT NULL AND b IS NOT NULL
                  AND (a <> {pii.grid_sql("a")} OR b <> {pii.grid_sql("b")})"""
        ).to_arrow_table()
    finally:
        con.close()


def _coordinate_hits(name: str, table: pa.Table, floats: list[str], coords: pa.Table) -> list[str]:
    """Rows of `table` where two float columns hold a full-precision (lat, lon) raw received:
    a single number may equal an amount or a temperature by chance, a pair is a location."""
    candidates = [
        c
        for c in floats
        if pc.any(pc.is_in(table[c].cast(pa.float64()), value_set=coords["a"])).as_py()
        or pc.any(pc.is_in(table[c].cast(pa.float64()), value_set=coords["b"])).as_py()
    ]
    hits: list[str] = []
    if len(candidates) < 2:
        return hits
    con = duckdb.connect()
    try:
        con.register("coords", coords)
        con.register("t", table.select(candidates))
        for first in candidates:
            for second in candidates:
                if first == second:
                    continue
                n = con.execute(
                    f'SELECT count(*) FROM t JOIN coords ON t."{first}" = coords.a '
                    f'AND t."{second}" = coords.b'
                ).fetchall()[0][0]
                if n:
                    hits.append(f"{name}.{first},{second}: {n} full-precision coordinates")
    finally:
        con.close()
    return hits


def _contact_cells(column: pa.ChunkedArray) -> int:
    """Cells holding an e-mail address or a phone number (regex pre-filter, exact check)."""
    candidates = pc.filter(
        column,
        pc.fill_null(
            pc.or_(
                pc.match_substring_regex(column, pii.EMAIL_RE),
                pc.match_substring_regex(column, pii.PHONE_RE),
            ),
            False,
        ),
    )
    return sum(1 for text in candidates.to_pylist() if pii.contact_values(str(text)))
