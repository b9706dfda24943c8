"""PII classification, read from the topic contracts: the one list of personal data.

Every field of every JSON Schema in `ingestion/schemas/` carries `x-pii`:

- `direct`: identifies a person on its own (`x-subject` names whom: `customer_id`,
  `account_id`, `card`). Encrypted in raw under the subject's key, keyed-hashed in silver.
- `quasi`: identifies a person combined with other data. Silver generalises it the way
  `x-generalise` says: `hash` (keyed hash, equality kept), `grid` (coordinates floored to a
  `GRID_DEGREES` cell), `redact_contacts` (e-mail addresses and phone numbers in free text
  replaced by placeholders).
- `none`: not personal data.

`x-silver` names the silver column when it differs from the field. Silver SQL
(`lake/silver.py`), the fraud service's online path, training extracts, lineage facets, the
access policy and `lakehouse privacy classification` all read this module; no other list
exists.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import ConfigError

LEVELS = ("direct", "quasi", "none")
GENERALISATIONS = ("hash", "grid", "redact_contacts")
GRID_DEGREES = 0.01  # ≈ 1.1 km: a neighbourhood, not an address; fraud's distances keep their sense
_GRID_SCALE = round(1 / GRID_DEGREES)
# subject aliases a user may type (`--subject card=...`)
SUBJECT_ALIASES = {"card_hash": "card", "customer": "customer_id", "account": "account_id"}

EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_PHONE_MIN_DIGITS = 9
EMAIL_PLACEHOLDER = "[email]"
PHONE_PLACEHOLDER = "[phone]"


@dataclass(frozen=True)
class FieldClass:
    topic: str
    path: str  # dotted, `items[].sku` inside arrays of objects
    level: str
    subject: str | None
    generalise: str | None
    silver_name: str

    @property
    def treatment(self) -> str:
        """What silver does with the field: keep, hash, grid or redact_contacts."""
        if self.level == "direct":
            return "hash"
        if self.level == "quasi":
            return self.generalise or "hash"
        return "keep"

    def describe(self) -> str:
        if self.level == "none":
            return "none"
        who = f", subject {self.subject}" if self.subject else ""
        return f"{self.level} PII ({self.treatment} in silver{who})"


def _schema_files() -> list[str]:
    folder = resources.files("ingestion").joinpath("schemas")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))


def _walk(topic: str, schema: Mapping[str, Any], prefix: str) -> Iterator[FieldClass]:
    for name, sub in schema.get("properties", {}).items():
        path = prefix + name
        level = sub.get("x-pii")
        if level not in LEVELS:
            raise ConfigError(
                f"field {topic}.{path} has x-pii={level!r}: classify it as one of "
                f"{', '.join(LEVELS)} in ingestion/schemas/{topic}.v*.json"
            )
        subject = sub.get("x-subject")
        if level == "direct" and not subject:
            raise ConfigError(f"direct identifier {topic}.{path} needs x-subject (whom it names)")
        generalise = sub.get("x-generalise")
        if generalise is not None and generalise not in GENERALISATIONS:
            raise ConfigError(
                f"field {topic}.{path}: x-generalise={generalise!r} is not one of "
                f"{', '.join(GENERALISATIONS)}"
            )
        yield FieldClass(topic, path, level, subject, generalise, sub.get("x-silver", name))
        if sub.get("properties"):
            yield from _walk(topic, sub, path + ".")
        items = sub.get("items")
        if isinstance(items, dict) and items.get("properties"):
            yield from _walk(topic, items, path + "[].")


@cache
def classification() -> tuple[FieldClass, ...]:
    """Every field of every contract, classified (raises ConfigError on a missing x-pii)."""
    from ingestion.contracts import load_schema

    fields: list[FieldClass] = []
    for file_name in _schema_files():
        topic = file_name.split(".v")[0]
        fields.extend(_walk(topic, load_schema(file_name), ""))
    return tuple(fields)


def fields_of(topic: str) -> dict[str, FieldClass]:
    return {f.path: f for f in classification() if f.topic == topic}


def personal_fields(topic: str | None = None, level: str | None = None) -> list[FieldClass]:
    return [
        f
        for f in classification()
        if f.level != "none" and (topic is None or f.topic == topic) and (level in (None, f.level))
    ]


def sealed_fields(topic: str) -> list[FieldClass]:
    """The direct identifiers raw ingestion seals (governance.crypto): the top-level fields of
    `x-pii: direct`, once each whatever the number of contract versions naming them."""
    seen: dict[str, FieldClass] = {}
    for f in personal_fields(topic, "direct"):
        if "." not in f.path:
            seen.setdefault(f.path, f)
    return list(seen.values())


def subjects() -> dict[str, list[FieldClass]]:
    """Subject name → the direct-identifier fields that name it, over all topics."""
    out: dict[str, list[FieldClass]] = {}
    for f in personal_fields(level="direct"):
        out.setdefault(str(f.subject), []).append(f)
    return out


def subject_name(text: str) -> str:
    """A user-typed subject (`customer_id`, `card`, `card_hash`...) → its canonical name."""
    name = SUBJECT_ALIASES.get(text, text)
    if name not in subjects():
        known = ", ".join(sorted(subjects()))
        raise ConfigError(f"unknown subject {text!r}: use one of {known} (e.g. customer_id=c_77)")
    return name


# ---- silver treatments: SQL (DuckDB) and Python, equal by construction -----------------------


def hmac_sql(column: str, key: str) -> str:
    """HMAC-SHA256(key, column) as hex, in DuckDB SQL (identical to Python's `hmac`)."""
    raw_key = key.encode()
    if len(raw_key) > 64:
        raw_key = hashlib.sha256(raw_key).digest()
    padded = raw_key.ljust(64, b"\0")

    def blob(data: bytes) -> str:
        return "'" + "".join(f"\\x{b:02x}" for b in data) + "'::BLOB"

    inner = f"unhex(sha256({blob(bytes(b ^ 0x36 for b in padded))} || encode({column})))"
    return f"sha256({blob(bytes(b ^ 0x5C for b in padded))} || {inner})"


def pseudonym(value: object, key: str) -> str | None:
    """HMAC-SHA256 hex of `value` under the PII key (same as `hmac_sql`)."""
    if value is None:
        return None
    return hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()


def grid_sql(column: str) -> str:
    return f"floor({column} * {_GRID_SCALE}.0) / {_GRID_SCALE}.0"


def grid(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return math.floor(number * float(_GRID_SCALE)) / float(_GRID_SCALE)


def silver_sql(topic: str, path: str, column: str, key: str) -> str:
    """The silver expression of field `path` of `topic`, over the SQL expression `column`."""
    treatment = fields_of(topic)[path].treatment
    if treatment == "hash":
        return hmac_sql(column, key)
    if treatment == "grid":
        return grid_sql(column)
    if treatment == "redact_contacts":
        raise ConfigError(f"{topic}.{path} is free text: redact it with redact_contacts()")
    return column


def silver_value(topic: str, path: str, value: object, key: str) -> object:
    """The silver value of one field (the fraud service's online path), equal to silver_sql."""
    treatment = fields_of(topic)[path].treatment
    if treatment == "hash":
        return pseudonym(value, key)
    if treatment == "grid":
        return grid(value)
    return value


def silver_row(topic: str, event: Mapping[str, object], key: str) -> dict[str, object]:
    """A flat event → its silver column names and values (personal fields treated)."""
    classes = fields_of(topic)
    row: dict[str, object] = {}
    for name, value in event.items():
        cls = classes.get(name)
        if cls is None:
            row[name] = value
            continue
        row[cls.silver_name] = silver_value(topic, name, value, key)
    for cls in classes.values():  # an absent optional personal field reads as null
        if cls.level != "none" and "." not in cls.path and cls.path not in event:
            row[cls.silver_name] = None
    return row


def redact_contacts(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """E-mail addresses and phone numbers in free text replaced by placeholders (vectorised)."""
    out = pc.replace_substring_regex(texts, EMAIL_RE, EMAIL_PLACEHOLDER)
    return pc.replace_substring_regex(out, PHONE_RE, PHONE_PLACEHOLDER)


# phone numbers: international (+33 6 12 34 56 78, +1 555 123 4567) or national with a trunk
# 0 (06.12.34.56.78, 020 7946 0958); dates (2025-08-16 12:00), prices and counts do not match
PHONE_RE = r"(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?|\b0\d{1,4})(?:[ .-]?\d{2,4}){2,5}\b"


def contact_values(text: str) -> list[str]:
    """E-mail addresses and phone numbers in `text` (the privacy scan's detector)."""
    found = re.findall(EMAIL_RE, text)
    for match in re.findall(PHONE_RE, text):
        if sum(c.isdigit() for c in match) >= _PHONE_MIN_DIGITS:
            found.append(match)
    return found


def field_note(topic: str, silver_column: str) -> str | None:
    """`describe()` of the field that feeds `silver_column` of `topic` (lineage, Dagster UI)."""
    for f in fields_of(topic).values():
        if f.silver_name == silver_column and f.level != "none":
            return f.describe()
    return None


def classification_markdown() -> str:
    """The personal fields of every contract as a Markdown table (README, docs)."""
    lines = [
        "| topic | field | class | subject | silver |",
        "|---|---|---|---|---|",
    ]
    seen: set[tuple[str, str]] = set()
    for f in personal_fields():
        if (f.topic, f.path) in seen:  # the same field in a later version of the contract
            continue
        seen.add((f.topic, f.path))
        silver = f"`{f.silver_name}` ({f.treatment})"
        lines.append(f"| {f.topic} | `{f.path}` | {f.level} | {f.subject or '—'} | {silver} |")
    return "\n".join(lines)
