"""read_jsonl_messages: lines sent unchanged, keys from the contract, bad lines kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.produce_file import read_jsonl_messages
from lakehouse.errors import ConfigError

ORDER = (
    b'{"order_id":"o_1001","ts":"2025-08-16T12:10:00Z","customer_id":"c_77",'
    b'"items":[{"sku":"A123","qty":2,"price":19.9},{"sku":"B200","qty":1,"price":49}],'
    b'"channel":"web","store_id":null,"city":"Lille","country":"FR"}'
)


def test_lines_are_sent_unchanged_with_contract_keys(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_bytes(
        ORDER
        + b"\r\n"
        + b"\n   \n"
        + b"{not json\n"
        + b'{"order_id": null}\n'
        + b'{"ts": "2025-08-16T12:10:00Z"}\n'
        + b"[1, 2]\n"
        + b'{"order_id": 42, "extra": true}\n'
        + b"\xff\xfe garbage"
    )
    messages = list(read_jsonl_messages("orders", path))
    assert messages == [
        (b"o_1001", ORDER),
        (None, b"{not json"),
        (None, b'{"order_id": null}'),
        (None, b'{"ts": "2025-08-16T12:10:00Z"}'),
        (None, b"[1, 2]"),
        (b"42", b'{"order_id": 42, "extra": true}'),
        (None, b"\xff\xfe garbage"),
    ]


def test_inventory_key_joins_sku_and_store(tmp_path: Path) -> None:
    path = tmp_path / "inventory.jsonl"
    path.write_text('{"sku":"A123","store_id":"s_lille","on_hand":3}\n{"sku":"A123"}\n')
    keys = [key for key, _ in read_jsonl_messages("inventory", path)]
    assert keys == [b"A123|s_lille", None]


def test_missing_file_or_unknown_topic_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        read_jsonl_messages("orders", tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(ConfigError):
        read_jsonl_messages("orders", tmp_path)  # a directory
    with pytest.raises(ConfigError):
        read_jsonl_messages("no_such_topic", tmp_path / "x.jsonl")
