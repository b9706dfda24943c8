"""Send a JSON-lines file to a topic unchanged (replay captured traffic, inject bad records).

Every non-blank line becomes one Kafka message, byte for byte; lines that are not valid events
are sent too, so they land in the dead-letter table downstream instead of vanishing here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ingestion.contracts import TopicContract, contract
from lakehouse.errors import ConfigError


def read_jsonl_messages(topic: str, path: Path | str) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per non-blank line of `path`: value = the line without its line ending;
    key = the contract's key fields joined with "|" when the line is a JSON object that has
    them (non-null scalars), else None. The file is opened now, so a missing or unreadable
    file raises ConfigError before anything is sent."""
    c = contract(topic)
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {file} ({exc.strerror or type(exc).__name__}): "
            "pass an existing, readable JSON-lines file (one event per line)"
        ) from None
    return _lines(c, file, handle)


def _lines(c: TopicContract, file: Path, handle: BinaryIO) -> Iterator[tuple[bytes | None, bytes]]:
    with handle:
        try:
            for raw in handle:
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                yield _key(c, line), line
        except OSError as exc:
            raise ConfigError(
                f"reading {file} failed ({exc.strerror or type(exc).__name__}): "
                "check the file and the disk, then send it again"
            ) from None


def _key(c: TopicContract, line: bytes) -> bytes | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    values = [event.get(name) for name in c.key_fields]
    if any(v is None or isinstance(v, (dict, list, bool)) for v in values):
        return None
    try:
        return c.key_of(event).encode()
    except UnicodeEncodeError:  # a lone surrogate (json decodes bytes with surrogatepass)
        return None
