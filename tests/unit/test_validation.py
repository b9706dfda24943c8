"""The vectorised validator must agree with the reference `jsonschema` validator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import SEED_EVENTS, SEED_ORDER

from ingestion.contracts import CONTRACTS, contract
from ingestion.validation import MAX_PAYLOAD_BYTES, validate

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def reasons(topic: str, values: list[bytes | None], keys: list[bytes | None] | None = None) -> list:
    keys = keys if keys is not None else [b"k"] * len(values)
    batch = pa.table(
        {"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.large_binary())}
    )
    return validate(batch, contract(topic).schema).to_pylist()


def reference_ok(topic: str, event: Any) -> bool:
    return jsonschema.Draft202012Validator(contract(topic).schema, format_checker=FORMATS).is_valid(
        event
    )


@pytest.mark.parametrize("topic", sorted(CONTRACTS))
def test_seed_examples_are_valid(topic: str) -> None:
    event = SEED_EVENTS[topic]
    assert reference_ok(topic, event)
    assert reasons(topic, [json.dumps(event).encode()]) == [None]


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (b"not json", b"k", "invalid JSON"),
        (b"\xff\xfe{}", b"k", "payload is not valid UTF-8"),
        (b"", b"k", "empty value (zero bytes)"),
        (None, b"k", "empty value (null payload)"),
        (b"[1, 2]", b"k", "payload is not a JSON object"),
        (json.dumps(SEED_ORDER).encode(), None, "missing Kafka key"),
        (json.dumps({**SEED_ORDER, "extra": 1}).encode(), b"k", "unknown field(s) extra"),
        (
            json.dumps({**SEED_ORDER, "items": [{"sku": "A", "qty": "2", "price": 1}]}).encode(),
            b"k",
            "field items[].qty: expected integer, got varchar",
        ),
        (
            json.dumps({k: v for k, v in SEED_ORDER.items() if k != "city"}).encode(),
            b"k",
            "missing required field city",
        ),
        (
            json.dumps({**SEED_ORDER, "ts": "2025-13-40T00:00:00Z"}).encode(),
            b"k",
            "field ts: 2025-13-40T00:00:00Z is not an RFC 3339 date-time",
        ),
        (
            json.dumps({**SEED_ORDER, "channel": "fax"}).encode(),
            b"k",
            "field channel: fax is not one of web,app,store",
        ),
        (
            b'{"x": "' + b"a" * 1_000_000 + b'"}',
            b"k",
            f"payload too large: 1000009 bytes > {MAX_PAYLOAD_BYTES}",
        ),
    ],
)
def test_malformed_orders_get_a_reason(
    value: bytes | None, key: bytes | None, expected: str
) -> None:
    assert reasons("orders", [value], [key]) == [expected]


def test_nested_object_fields_are_checked() -> None:
    post = {**SEED_EVENTS["social_raw"], "engagement": {"likes": 2, "replies": -1}}
    assert reasons("social_raw", [json.dumps(post).encode()]) == [
        "field engagement.replies: below minimum 0"
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 20_000)
    | st.floats(-1e3, 1e5, allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A seed event with one field removed, replaced by a random JSON value, or added."""
    topic = draw(st.sampled_from(sorted(SEED_EVENTS)))
    event = json.loads(json.dumps(SEED_EVENTS[topic]))
    field = draw(st.sampled_from(sorted(event)))
    action = draw(st.sampled_from(["drop", "replace", "add", "keep", "nested"]))
    if action == "drop":
        del event[field]
    elif action == "replace":
        event[field] = draw(json_values)
    elif action == "add":
        event[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    elif action == "nested" and topic == "orders":
        item = event["items"][0]
        item[draw(st.sampled_from(["sku", "qty", "price", "zz"]))] = draw(json_values)
    return topic, event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_verdict_agrees_with_jsonschema(case: tuple[str, dict[str, Any]]) -> None:
    topic, event = case
    got = reasons(topic, [json.dumps(event).encode()])[0]
    assert (got is None) == reference_ok(topic, event), got
