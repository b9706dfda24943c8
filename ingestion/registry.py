"""Schema compatibility, Confluent Schema Registry semantics, for the topics' JSON Schemas.

`reader_violations(reader, writer)` lists why some event valid under `writer` would be rejected
by `reader`. A mode names who must read whom: BACKWARD — consumers on the new version read
events written with the previous one (new = reader); FORWARD — consumers still on the previous
version read the new version's events (previous = reader); FULL — both; *_TRANSITIVE — against
every earlier version, not only the last; NONE — no check. The contracts are closed content
models (`additionalProperties: false`), so adding an optional field is BACKWARD-compatible but
not FORWARD, and removing one is FORWARD-compatible but not BACKWARD, as in Confluent's JSON
Schema rules. `lakehouse contracts check` (in `make test`) runs `check_contracts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ingestion.contracts import COMPATIBILITY_MODES, CONTRACTS, TopicContract
from lakehouse.errors import ConfigError

# the reader types that accept a writer's type: an integer is also a JSON Schema number
_ACCEPTED_BY = {"integer": {"integer", "number"}}
_UPPER = ("maxLength", "maximum", "maxItems")
_LOWER = ("minLength", "minimum", "minItems")


def _types(sub: Mapping[str, Any]) -> set[str]:
    declared = sub.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def reader_violations(
    reader: Mapping[str, Any], writer: Mapping[str, Any], r: str = "reader", w: str = "writer"
) -> list[str]:
    """One line per way an event valid under `writer` can be invalid under `reader`
    (`r`, `w`: how the lines name the two versions)."""
    return _object(reader, writer, "", r, w)


def _object(
    reader: Mapping[str, Any], writer: Mapping[str, Any], at: str, r: str, w: str
) -> list[str]:
    out: list[str] = []
    r_props: Mapping[str, Any] = reader.get("properties", {})
    w_props: Mapping[str, Any] = writer.get("properties", {})
    closed = reader.get("additionalProperties") is False
    for name in w_props:
        if name not in r_props and closed:
            out.append(
                f"field {at}{name} of {w} is not accepted by {r} (removed from a closed schema)"
            )
    if writer.get("additionalProperties") is not False and closed:
        out.append(f"{at or 'the event'}: {w} accepts any extra field, {r} accepts none")
    w_required = set(writer.get("required", []))
    for name in reader.get("required", []):
        if name not in w_required:
            state = "optional" if name in w_props else "absent"
            out.append(f"field {at}{name} is required by {r} but {state} in {w}")
    for name, r_sub in r_props.items():
        if name in w_props:
            out.extend(_field(r_sub, w_props[name], f"{at}{name}", r, w))
    return out


def _field(
    r_sub: Mapping[str, Any], w_sub: Mapping[str, Any], at: str, r: str, w: str
) -> list[str]:
    out: list[str] = []
    r_types, w_types = _types(r_sub), _types(w_sub)
    if r_types:
        lost = {t for t in (w_types or {"any"}) if not _ACCEPTED_BY.get(t, {t}) & r_types}
        if lost:
            out.append(
                f"field {at} type changed: {w} {'|'.join(sorted(w_types)) or 'any'} -> "
                f"{r} {'|'.join(sorted(r_types))}"
            )
    if "enum" in r_sub:
        if "enum" not in w_sub:
            out.append(f"field {at}: {r} restricts it to an enum {w} does not have")
        else:
            dropped = [v for v in w_sub["enum"] if v not in r_sub["enum"]]
            if dropped:
                out.append(
                    f"field {at}: {r} drops enum value(s) {', '.join(map(str, dropped))} of {w}"
                )
    for keyword in _UPPER:
        if keyword in r_sub and (keyword not in w_sub or w_sub[keyword] > r_sub[keyword]):
            out.append(
                f"field {at}: {r} narrows {keyword} ({w_sub.get(keyword, 'none')} -> {r_sub[keyword]})"
            )
    for keyword in _LOWER:
        if keyword in r_sub and (keyword not in w_sub or w_sub[keyword] < r_sub[keyword]):
            out.append(
                f"field {at}: {r} narrows {keyword} ({w_sub.get(keyword, 'none')} -> {r_sub[keyword]})"
            )
    if "format" in r_sub and r_sub.get("format") != w_sub.get("format"):
        out.append(f"field {at}: {r} requires format {r_sub['format']}, {w} does not")
    if "object" in r_types and r_sub.get("properties"):
        out.extend(_object(r_sub, w_sub, f"{at}.", r, w))
    r_items, w_items = r_sub.get("items"), w_sub.get("items")
    if isinstance(r_items, Mapping):
        out.extend(
            _field(r_items, w_items if isinstance(w_items, Mapping) else {}, f"{at}[]", r, w)
        )
    return out


def mode_violations(
    topic: str,
    mode: str,
    new: tuple[int, Mapping[str, Any]],
    earlier: Iterable[tuple[int, Mapping[str, Any]]],
) -> list[str]:
    """Why version `new` breaks `mode` against the `earlier` versions (newest last): one line
    each, naming the topic, versions and mode."""
    if mode not in COMPATIBILITY_MODES:
        raise ConfigError(
            f"{topic}: unknown compatibility mode {mode!r}: use one of {', '.join(COMPATIBILITY_MODES)}"
        )
    if mode == "NONE":
        return []
    previous = list(earlier)
    against = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    base = mode.removesuffix("_TRANSITIVE")
    new_version, new_schema = new
    out: list[str] = []
    for old_version, old_schema in against:
        pairs = []
        if base in ("BACKWARD", "FULL"):  # the new version reads the old one's events
            pairs.append((new_schema, old_schema, f"v{new_version}", f"v{old_version}"))
        if base in ("FORWARD", "FULL"):  # the old version reads the new one's events
            pairs.append((old_schema, new_schema, f"v{old_version}", f"v{new_version}"))
        for reader, writer, r, w in pairs:
            out.extend(
                f"{topic} v{new_version} breaks {mode} against v{old_version}: {line}"
                for line in reader_violations(reader, writer, r, w)
            )
    return out


def contract_violations(contract: TopicContract) -> list[str]:
    versions = [(v, contract.schema_for(v)) for v in contract.versions]
    out: list[str] = []
    for i in range(1, len(versions)):
        out.extend(
            mode_violations(contract.topic, contract.compatibility, versions[i], versions[:i])
        )
    return out


def check_contracts(contracts: Iterable[TopicContract] | None = None) -> list[str]:
    """Every compatibility violation of the registered versions (empty: all keep their mode)."""
    return [line for c in (contracts or CONTRACTS.values()) for line in contract_violations(c)]
