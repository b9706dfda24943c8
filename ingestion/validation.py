"""Vectorised contract validation: a topic's JSON Schema compiled into one DuckDB expression.

The expression returns NULL for a valid payload and a one-line reason otherwise, so a whole
micro-batch is validated in one columnar pass instead of a Python loop per event. It covers
the JSON Schema subset the contracts use (type, required, properties, additionalProperties,
enum, min/maxLength, minimum/maximum, min/maxItems, items, format date-time); a test checks it
against the `jsonschema` reference validator on valid, malformed and random events.

Beyond JSON Schema, it refuses what the lake cannot store faithfully: duplicate field names,
NaN/±Infinity and overflowing numbers, integers beyond 64 bits, date-times outside
1900-2999, Kafka keys that are not UTF-8 (tests/integration/test_fuzz_ingestion.py throws
10,000 generated payloads per topic at it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

MAX_PAYLOAD_BYTES = 256 * 1024
EARLIEST_EVENT_TIME = "1900-01-01T00:00:00Z"
LATEST_EVENT_TIME = "2999-12-31T23:59:59Z"

_JSON_TYPES = {
    "string": ("VARCHAR",),
    "integer": ("BIGINT", "UBIGINT"),
    "number": ("BIGINT", "UBIGINT", "DOUBLE"),
    "boolean": ("BOOLEAN",),
    "null": ("NULL",),
    "array": ("ARRAY",),
    "object": ("OBJECT",),
}
# RFC 3339 date-time (what the JSON Schema `date-time` format means); the cast rejects 2025-13-40.
_DATE_TIME_RE = r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _types(sub: dict[str, Any]) -> list[str]:
    declared = sub.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def _frame(schema: dict[str, Any], expr: str, depth: int) -> str:
    """One parse of the JSON object `expr`: the types and texts of all its declared fields,
    its keys, and the frames of nested objects / arrays of objects."""
    props: dict[str, Any] = schema.get("properties", {})
    paths = "[" + ", ".join(_lit(f"$.{name}") for name in props) + "]"
    parts = [f"t := json_type({expr}, {paths})", f"s := json_extract_string({expr}, {paths})"]
    parts.append(f"k := json_keys({expr})")
    for i, (name, sub) in enumerate(props.items()):
        if _is_object_array(sub):
            var = f"x{depth}"
            inner = _frame(sub["items"], var, depth + 1)
            parts.append(
                f"c{i} := list_transform(json_extract({expr}, {_lit(f'$.{name}[*]')}), "
                f"lambda {var}: {inner})"
            )
        elif _is_object(sub):
            nested = "json_extract(" + expr + ", " + _lit(f"$.{name}") + ")"
            parts.append(f"c{i} := {_frame(sub, nested, depth + 1)}")
    return "struct_pack(" + ", ".join(parts) + ")"


def _is_object_array(sub: dict[str, Any]) -> bool:
    items = sub.get("items")
    return isinstance(items, dict) and _types(items) == ["object"]


def _is_object(sub: dict[str, Any]) -> bool:
    return "object" in _types(sub) and bool(sub.get("properties"))


def _object_reason(schema: dict[str, Any], ref: str, where: str, depth: int) -> str:
    """First violation of `schema` by the frame `ref` (see `_frame`), else NULL."""
    props: dict[str, Any] = schema.get("properties", {})
    index = {name: i for i, name in enumerate(props)}
    reasons: list[str] = []
    for name in schema.get("required", []):
        if name in index:
            cond = f"{ref}.t[{index[name] + 1}] IS NULL"
        else:
            cond = f"NOT list_contains({ref}.k, {_lit(name)})"
        reasons.append(f"CASE WHEN {cond} THEN {_lit(f'missing required field {where}{name}')} END")
    # RFC 8259 leaves duplicate names undefined: readers disagree on which one counts, so a
    # payload that says two things about one field is refused rather than guessed at
    duplicated = f"list_filter(list_distinct({ref}.k), lambda d: len(list_filter({ref}.k, lambda x: x = d)) > 1)"
    reasons.append(
        f"CASE WHEN len({ref}.k) <> len(list_distinct({ref}.k)) THEN 'duplicate field(s) {where}' "
        f"|| array_to_string(list_sort({duplicated}), ', ') END"
    )
    if schema.get("additionalProperties") is False:
        allowed = ", ".join(_lit(p) for p in props) or "''"
        extra = f"list_filter({ref}.k, lambda k: k NOT IN ({allowed}))"
        reasons.append(
            f"CASE WHEN len({extra}) > 0 THEN 'unknown field(s) {where}' "
            f"|| array_to_string({extra}, ', ') END"
        )
    for i, (name, sub) in enumerate(props.items()):
        reasons.extend(
            _field_reasons(
                sub,
                f"{ref}.t[{i + 1}]",
                f"{ref}.s[{i + 1}]",
                f"{ref}.c{i}",
                f"{where}{name}",
                depth,
            )
        )
    return "coalesce(" + ", ".join(reasons) + ")" if reasons else "NULL"


def _field_reasons(
    sub: dict[str, Any], jtype: str, text: str, child: str, label: str, depth: int
) -> list[str]:
    checks: list[tuple[str, str]] = []
    types = _types(sub)
    number = f"TRY_CAST({text} AS DOUBLE)"
    if types:
        allowed = [t for ty in types for t in _JSON_TYPES[ty]]
        ok = f"{jtype} IN ({', '.join(map(_lit, allowed))})"
        if "integer" in types:  # JSON Schema: 2.0 is an integer, 2.5 is not
            ok += f" OR ({jtype} = 'DOUBLE' AND {number} = floor({number}))"
        checks.append(
            (
                f"{jtype} IS NOT NULL AND NOT ({ok})",
                f"'field {label}: expected {'|'.join(types)}, got ' || lower({jtype})",
            )
        )
    if "number" in types or "integer" in types:
        # NaN and ±Infinity are not JSON numbers (DuckDB's parser accepts them), 1e400
        # overflows a double, and an integer column is 64-bit: refused, never stored
        checks.append(
            (
                f"{jtype} = 'DOUBLE' AND (isnan({number}) OR isinf({number}))",
                f"'field {label}: ' || {text} || ' is not a finite number'",
            )
        )
        if "integer" in types:
            checks.append(
                (
                    f"({jtype} = 'UBIGINT' AND TRY_CAST({text} AS BIGINT) IS NULL) OR "
                    f"({jtype} = 'DOUBLE' AND NOT (abs({number}) < 9.2e18))",
                    f"'field {label}: ' || {text} || ' is beyond a 64-bit integer'",
                )
            )
    is_str = f"{jtype} = 'VARCHAR'"
    if "enum" in sub:
        values = ", ".join(_lit(v) for v in sub["enum"] if isinstance(v, str))
        checks.append(
            (
                f"{is_str} AND {text} NOT IN ({values})",
                f"'field {label}: ' || {text} || ' is not one of {','.join(str(v) for v in sub['enum'] if v is not None)}'",
            )
        )
    if sub.get("format") == "date-time":
        checks.append(
            (
                f"{is_str} AND NOT coalesce(regexp_full_match({text}, {_lit(_DATE_TIME_RE)}) AND "
                f"TRY_CAST({text} AS TIMESTAMPTZ) IS NOT NULL, false)",
                f"'field {label}: ' || {text} || ' is not an RFC 3339 date-time'",
            )
        )
        # event times the lake's date arithmetic can carry (windows, late-event watermarks):
        # year 1 or 9999 is valid RFC 3339 but overflows a datetime a few hours away
        checks.append(
            (
                f"{is_str} AND NOT coalesce(TRY_CAST({text} AS TIMESTAMPTZ) "
                f"BETWEEN {_lit(EARLIEST_EVENT_TIME)} AND {_lit(LATEST_EVENT_TIME)}, true)",
                f"'field {label}: ' || {text} || ' is outside {EARLIEST_EVENT_TIME[:4]}-"
                f"{LATEST_EVENT_TIME[:4]}'",
            )
        )
    is_num = f"{jtype} IN ('BIGINT', 'UBIGINT', 'DOUBLE')"
    is_arr = f"{jtype} = 'ARRAY'"
    length = f"len({child})" if _is_object_array(sub) else f"json_array_length({text})"
    bounds = [  # keyword, applies when, measured value, violation, message
        ("minLength", is_str, f"length({text})", "<", "shorter than {}"),
        ("maxLength", is_str, f"length({text})", ">", "longer than {}"),
        ("minimum", is_num, number, "<", "below minimum {}"),
        ("maximum", is_num, number, ">", "above maximum {}"),
        ("minItems", is_arr, length, "<", "fewer than {} items"),
        ("maxItems", is_arr, length, ">", "more than {} items"),
    ]
    for keyword, guard, value, op, message in bounds:
        if keyword in sub:
            limit = sub[keyword]
            checks.append(
                (
                    f"{guard} AND {value} {op} {limit}",
                    _lit(f"field {label}: " + message.format(limit)),
                )
            )
    reasons = [f"CASE WHEN {c} THEN {r} END" for c, r in checks]
    var = f"y{depth}"
    if _is_object_array(sub):
        inner = _object_reason(sub["items"], var, f"{label}[].", depth + 1)
        each = f"list_transform({child}, lambda {var}: {inner})"
        reasons.append(
            f"CASE WHEN {is_arr} THEN list_filter({each}, lambda r: r IS NOT NULL)[1] END"
        )
    elif _is_object(sub):
        inner = _object_reason(sub, child, f"{label}.", depth + 1)
        reasons.append(f"CASE WHEN {jtype} = 'OBJECT' THEN {inner} END")
    return reasons


def reason_sql(schema: dict[str, Any], max_bytes: int = MAX_PAYLOAD_BYTES) -> str:
    """DuckDB expression over columns `key` (BLOB) and `value` (BLOB) of a batch: NULL when the
    record is valid, else the reason it goes to the dead-letter table."""
    text = "try(decode(value))"
    doc = f"(CASE WHEN json_valid({text}) THEN {text}::JSON END)"
    return f"""CASE
        WHEN value IS NULL THEN 'empty value (null payload)'
        WHEN octet_length(value) = 0 THEN 'empty value (zero bytes)'
        WHEN octet_length(value) > {max_bytes}
            THEN 'payload too large: ' || octet_length(value) || ' bytes > {max_bytes}'
        WHEN {text} IS NULL THEN 'payload is not valid UTF-8'
        WHEN NOT json_valid({text}) THEN 'invalid JSON'
        WHEN json_type({doc}) <> 'OBJECT' THEN 'payload is not a JSON object'
        WHEN key IS NULL OR octet_length(key) = 0 THEN 'missing Kafka key'
        WHEN try(decode(key)) IS NULL THEN 'Kafka key is not valid UTF-8'
        ELSE {_object_reason(schema, "frame", "", 0)}
    END"""


def frame_sql(schema: dict[str, Any]) -> str:
    text = "try(decode(value))"
    return _frame(schema, f"(CASE WHEN json_valid({text}) THEN {text}::JSON END)", 0)


def validate(batch: pa.Table, schema: dict[str, Any]) -> pa.Array:
    """Reasons (NULL = valid) for a table with binary columns `key` and `value`."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("batch", batch.select(["key", "value"]))
        query = (
            f"SELECT {reason_sql(schema)} AS reason "
            f"FROM (SELECT key, value, {frame_sql(schema)} AS frame FROM batch)"
        )
        result = con.sql(query).to_arrow_table()
        return result.column("reason").combine_chunks()
    finally:
        con.close()


def validate_versions(
    batch: pa.Table, schemas: Sequence[tuple[int, dict[str, Any]]]
) -> tuple[pa.Array, pa.Array]:
    """Reasons (NULL = valid) and the schema version each valid record matched, trying the
    versions newest first (`schemas`: (version, schema), oldest first). Only the records a
    version rejects are tried against the next one. A record no version accepts gets one
    reason when every version gives the same (invalid JSON, a missing key, ...), else the
    versions tried with their reasons."""
    ordered = sorted(schemas, key=lambda s: s[0], reverse=True)
    n = batch.num_rows
    version_of = pa.nulls(n, pa.int32())
    pending = pa.array(range(n), pa.int64())  # rows no version accepted yet
    tried: list[tuple[int, pa.Array]] = []  # (version, reasons of the pending rows)
    for number, schema in ordered:
        if not len(pending):
            break
        subset = batch.take(pending) if len(pending) != n else batch
        reasons = validate(subset, schema)
        ok = pc.is_null(reasons)
        accepted = pending.filter(ok)
        if len(accepted):
            version_of = pc.replace_with_mask(
                version_of,
                pc.is_in(pa.array(range(n), pa.int64()), accepted),
                pa.array([number] * len(accepted), pa.int32()),
            )
        keep = pc.invert(ok)
        pending = pending.filter(keep)
        tried = [(v, r.filter(keep)) for v, r in tried] + [(number, reasons.filter(keep))]
    reason_of = pa.nulls(n, pa.string())
    if len(pending):
        first = tried[0][1]
        final = first
        if len(tried) > 1:
            alike = functools.reduce(pc.and_, [pc.equal(first, r) for _, r in tried[1:]])
            listed = pc.binary_join_element_wise(
                *[pc.binary_join_element_wise(f"v{v}: ", r, "") for v, r in tried], "; "
            )
            named = pc.binary_join_element_wise("matches no registered version (", listed, ")", "")
            final = pc.if_else(alike, first, named)
        mask = pc.is_in(pa.array(range(n), pa.int64()), pending)
        reason_of = pc.replace_with_mask(reason_of, mask, final.cast(pa.string()))
    return reason_of, version_of
