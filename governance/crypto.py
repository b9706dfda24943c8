"""Raw PII encryption: direct identifiers masked in raw payloads and sealed beside them.

At ingestion, each direct identifier of a valid payload (the top-level `x-pii: direct` fields,
`governance.pii.sealed_fields`) is sealed with AES-GCM under the data key of its subject
(`governance.keystore`; the key id, a keyed hash of subject and value, is the associated
data). The payload keeps the field with its string text overwritten by `*`, one per byte:
same length, so the JSON is not re-encoded. The sealed value goes to the raw column
`pii_<field>` (`lake.tables.PII_TOKEN_TYPE`: key id, nonce | ciphertext | tag, byte offset of
the masked text), binary, so a subject's token — the same in every row, as the key store
keeps it — is dictionary-encoded by Parquet. Raw stays replayable: silver writes the plaintext
back at the recorded offset before its transform. Once a subject's key is destroyed
(`lakehouse privacy forget`), its tokens no longer open and the rows naming it are left out
of silver on any replay. Rows written before these columns hold the token inside the payload
(`pii1.<key id>.<base64(nonce | ciphertext | tag)>`); they are still read.

Identifiers repeat heavily within a batch (a customer orders many times), so each distinct
value is sealed (and opened) once per batch and mapped back to the rows columnwise
(`pc.index_in` + `take`). The field's text is found by byte search over the Arrow buffers —
its key spelled once in the payload, no `\\u` escape that could spell it otherwise; a field
every contract version requires needs no JSON parse, an optional one is checked against
DuckDB's — and masked by writing into a copy of the data buffer. A payload spelled
differently (the key also nested, escapes in the value) has its identifiers moved to the
front of the object (DuckDB's `json_merge_patch` removes them from the rest), which places
them at known offsets.
"""

from __future__ import annotations

import json
import os
import re
from binascii import b2a_base64
from collections.abc import Callable
from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from governance import pii
from governance.keystore import NONCE_BYTES, KeyStore, open_key_store
from lake.tables import PII_TOKEN_TYPE, pii_column
from lakehouse.config import Settings

TOKEN_PREFIX = "pii1."  # the key store's form of a token, and raw's before the pii columns
KEY_ID_CHARS = 32  # 128 bits of the keyed hash: collision-free at any subject count
_MASK = ord("*")
_QUOTE = ord('"')

Token = tuple[bytes, bytes]  # (key id, 16 bytes; nonce | ciphertext | tag)


def key_id(subject: str, value: str, pii_key: str) -> str:
    """The key-store id of one subject's data key (a keyed hash: the store names nobody)."""
    return str(pii.pseudonym(f"{subject}:{value}", pii_key))[:KEY_ID_CHARS]


def _key_ids(subject: str, values: pa.Array, pii_key: str) -> list[str]:
    con = duckdb.connect()
    try:
        con.register("v", pa.table({"v": values}))
        expr = pii.hmac_sql(f"'{subject}:' || v", pii_key)
        out = con.sql(f"SELECT left({expr}, {KEY_ID_CHARS}) AS k FROM v").to_arrow_table()
        return [str(k) for k in out["k"].to_pylist()]
    finally:
        con.close()


def _direct_fields(topic: str) -> list[pii.FieldClass]:
    return pii.sealed_fields(topic)


def _extract(values: pa.Array, paths: list[str]) -> dict[str, pa.Array]:
    con = duckdb.connect()
    try:
        con.register("t", pa.table({"value": values}))
        select = ", ".join(
            f"json_extract_string(value::VARCHAR, '$.{p}') AS c{i}" for i, p in enumerate(paths)
        )
        table = con.sql(f"SELECT {select} FROM t").to_arrow_table()
        return {p: table[f"c{i}"].combine_chunks() for i, p in enumerate(paths)}
    finally:
        con.close()


_ESCAPED = re.compile(r'[\x00-\x1f"\\]')  # what a JSON string cannot hold as itself


def _json_text(value: str) -> str:
    """`value` as the text between the quotes of a JSON string (the spelling silver gets back)."""
    return json.dumps(value, ensure_ascii=False)[1:-1] if _ESCAPED.search(value) else value


# ---- byte buffers of string arrays -----------------------------------------------------------


def _large(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_string())
    return pa.concat_arrays([values]) if values.offset else values  # offset 0: plain buffers


def _buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (len + 1) and data bytes (up to the last row's end: a slice's buffer may hold
    more) of a large string/binary array with offset 0."""
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[: len(values) + 1]
    if buffers[2] is None:
        return offsets, np.zeros(0, np.uint8)
    return offsets, np.frombuffer(buffers[2], np.uint8)[: offsets[-1]]


def _with_data(values: pa.Array, data: np.ndarray) -> pa.Array:
    """`values` (large_string, offset 0) with its data buffer replaced (same lengths)."""
    buffers = values.buffers()
    return pa.Array.from_buffers(
        pa.large_string(),
        len(values),
        [buffers[0], buffers[1], pa.py_buffer(data)],
        values.null_count,
    )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices start, start+1, ... start+length-1 of every span, concatenated."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def _gather(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    """data[at], with positions past the end read as 0 (no JSON byte)."""
    inside = at < len(data)
    out = np.zeros(len(at), np.uint8)
    out[inside] = data[at[inside]]
    return out


# ---- ingestion ----------------------------------------------------------------------------


# Bytes searched for an identifier's closing quote, then for the identifiers longer than
# that; a longer one still is parsed.
_WINDOW, _LONG_WINDOW = 32, 320


def _closing(data: np.ndarray, starts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Length of the JSON string text starting at each of `starts` and whether it holds no
    escape (ends at a quote before any backslash or control byte) within `width` bytes;
    length -1 where none of these bytes comes within `width`."""
    # windows of the buffer; the last `width` bytes are copied with zeros after them, so a
    # window reaching past the end reads zeros
    base = max(len(data) - width, 0)
    tail = np.concatenate([data[base:], np.zeros(width, np.uint8)])
    inner = starts < base
    window = np.empty((len(starts), width), np.uint8)
    if inner.any():
        window[inner] = np.lib.stride_tricks.sliding_window_view(data, width)[starts[inner]]
    window[~inner] = np.lib.stride_tricks.sliding_window_view(tail, width)[starts[~inner] - base]
    stop = (window == _QUOTE) | (window == ord("\\")) | (window < 0x20)
    first = stop.argmax(axis=1)
    found = stop[np.arange(len(starts)), first]
    ok = found & (window[np.arange(len(starts)), first] == _QUOTE)
    return np.where(found, first, -1), ok


@cache
def _always_present(topic: str, path: str) -> bool:
    """Whether every contract version of `topic` requires top-level field `path` (so a valid
    payload holding its key once holds it at the top level)."""
    from ingestion.contracts import contract

    topic_contract = contract(topic)
    return all(
        path in topic_contract.schema_for(v).get("required", ()) for v in topic_contract.versions
    )


def _rows_holding(offsets: np.ndarray, data: np.ndarray, pattern: bytes) -> np.ndarray:
    """Which rows hold the two-byte `pattern`."""
    hits = np.flatnonzero((data[:-1] == pattern[0]) & (data[1:] == pattern[1]))
    hits = hits[hits >= offsets[0]]
    rows = np.zeros(len(offsets) - 1, bool)
    rows[np.searchsorted(offsets, hits, side="right") - 1] = True
    return rows


def _find(
    values: pa.Array, offsets: np.ndarray, data: np.ndarray, whole: bytes, path: str
) -> tuple[np.ndarray, np.ndarray]:
    """Byte offset in each payload of the text of string field `path` and its length, found
    by byte search (offset -1: not found so, left to the parser).

    Where a payload has no `\\u` escape, a key of letters and `_` can only be spelled as
    itself: held once, it is the only field of that name. Its value must follow as `:"` or
    `: "` and end within `_WINDOW` bytes, with no escape (the text is then the value)."""
    key = f'"{path}"'
    found = pc.fill_null(pc.find_substring(values, key), -1).to_numpy()
    hit = found >= 0
    if whole.count(key.encode()) != hit.sum():  # some payload holds the key more than once
        hit &= pc.fill_null(pc.equal(pc.count_substring(values, key), 1), False).to_numpy(
            zero_copy_only=False
        )
    if b"\\u" in whole:
        hit &= ~_rows_holding(offsets, data, b"\\u")
    after = offsets[:-1] + np.maximum(found, 0) + len(key.encode())
    c0, c1, c2 = (_gather(data, after + i) for i in range(3))
    hit &= (c0 == ord(":")) & ((c1 == _QUOTE) | ((c1 == ord(" ")) & (c2 == _QUOTE)))
    start = np.where(c1 == _QUOTE, after + 2, after + 3)
    rows = np.flatnonzero(hit)
    length, ok = _closing(data, start[rows], _WINDOW)
    longer = np.flatnonzero(~ok & (length < 0))
    if len(longer):  # no quote in the first bytes: a longer identifier
        length[longer], ok[longer] = _closing(data, start[rows[longer]], _LONG_WINDOW)
    ok &= start[rows] + length < offsets[rows + 1]
    at = np.full(len(values), -1, np.int64)
    lengths = np.zeros(len(values), np.int64)
    at[rows[ok]] = (start - offsets[:-1])[rows[ok]]
    lengths[rows[ok]] = length[ok]
    return at, lengths


def _texts(offsets: np.ndarray, data: np.ndarray, at: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """The text at `at` (offset in row; -1: null) of `lengths` bytes of each payload."""
    present = at >= 0
    starts = (offsets[:-1] + at)[present]
    sizes = lengths[present]
    text_offsets = np.zeros(len(at) + 1, np.int64)
    np.cumsum(np.where(present, lengths, 0), out=text_offsets[1:])
    validity = pa.array(present).buffers()[1]
    return pa.Array.from_buffers(
        pa.large_string(),
        len(at),
        [validity, pa.py_buffer(text_offsets), pa.py_buffer(data[_ranges(starts, sizes)])],
        int((~present).sum()),
    )


def _to_front(
    values: pa.Array, plains: dict[str, pa.Array]
) -> tuple[pa.Array, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Payloads rewritten as `{"<field>":"<text>",...,<the rest>}` for the identifiers of
    `plains` (their top-level values; null: absent), with each one's byte offset (-1: absent)
    and length; a payload holding none is kept as it is."""
    paths = list(plains)
    con = duckdb.connect()
    try:
        con.register("t", pa.table({"value": values}))
        removed = "{" + ",".join(f'"{p}":null' for p in paths) + "}"
        rest = (
            con.sql(f"SELECT json_merge_patch(value::VARCHAR, '{removed}')::VARCHAR AS r FROM t")
            .to_arrow_table()["r"]
            .to_pylist()
        )
    finally:
        con.close()
    texts = [plains[p].to_pylist() for p in paths]
    originals = values.to_pylist()
    out: list[str] = []
    placed = {
        p: (np.full(len(values), -1, np.int64), np.zeros(len(values), np.int64)) for p in paths
    }
    for i, remainder in enumerate(rest):  # the payloads the byte search could not place: few
        head = "{"
        for p, column in zip(paths, texts, strict=True):
            if column[i] is None:
                continue
            head += ("," if len(head) > 1 else "") + f'"{p}":"'
            text = _json_text(column[i])
            placed[p][0][i] = len(head.encode())
            placed[p][1][i] = len(text.encode())
            head += text + '"'
        if len(head) == 1:
            out.append(originals[i])
        elif remainder is None or remainder == "{}":
            out.append(head + "}")
        else:
            out.append(head + "," + remainder[1:])
    return pa.array(out, pa.large_string()), placed


# Tokens already made in this process, per key store and subject kind: a subject seen in an
# earlier batch costs a dict lookup instead of a key-store read, an unwrap and an encryption.
# A token names its key by id (the keyed hash that already shows two rows share a subject),
# so reusing one reveals nothing more. Dropped as soon as the store's generation moves (a key
# was destroyed: an erased subject must get a new key, never its old token) and when full.
_TOKEN_CACHE_LIMIT = 1_000_000
_token_caches: dict[tuple[str, int], tuple[str, dict[str, dict[str, Token]]]] = {}


def _token_cache(settings: Settings, store: KeyStore) -> dict[str, dict[str, Token]]:
    where = (str(settings.key_store_path), hash(settings.pii_hash_key))  # the key ids' key
    generation = store.generation()
    held = _token_caches.get(where)
    if (
        held is None
        or held[0] != generation
        or sum(map(len, held[1].values())) > _TOKEN_CACHE_LIMIT
    ):
        held = (generation, {})
        _token_caches[where] = held
    return held[1]


def _sealer(subject_values: dict[str, str]) -> Callable[[list[str], list[bytes]], list[str]]:
    """Tokens of key ids from their data keys: each id's value sealed under its key (the key
    id is the associated data, so a token cannot be moved to another key). The key store
    keeps them as text, `pii1.<key id>.<base64(nonce | ciphertext | tag)>`."""

    def seal(ids: list[str], keys: list[bytes]) -> list[str]:
        nonces = os.urandom(len(ids) * NONCE_BYTES)  # one read for the batch's nonces
        made = []
        for j, (kid, key) in enumerate(zip(ids, keys, strict=True)):
            nonce = nonces[j * NONCE_BYTES : (j + 1) * NONCE_BYTES]
            sealed = AESGCM(key).encrypt(nonce, subject_values[kid].encode(), kid.encode())
            made.append(f"{TOKEN_PREFIX}{kid}.{b2a_base64(nonce + sealed, newline=False).decode()}")
        return made

    return seal


def _token_parts(tokens: list[str]) -> list[Token]:
    """(key id, sealed) bytes of key-store tokens, decoded column-wise (unhex, from_base64)."""
    con = duckdb.connect()
    try:
        con.register("t", pa.table({"t": pa.array(tokens, pa.string())}))
        kid, sealed = len(TOKEN_PREFIX) + 1, len(TOKEN_PREFIX) + KEY_ID_CHARS + 2  # 1-based
        parts = con.sql(
            f"SELECT unhex(substr(t, {kid}, {KEY_ID_CHARS})) AS k, from_base64(substr(t, {sealed}))"
            " AS s FROM t"
        ).to_arrow_table()
    finally:
        con.close()
    return list(zip(parts["k"].to_pylist(), parts["s"].to_pylist(), strict=True))


def _tokens(settings: Settings, store: KeyStore, subject: str, distinct: list[str]) -> list[Token]:
    known = _token_cache(settings, store).setdefault(subject, {})
    new = [value for value in distinct if value not in known]
    if new:
        ids = _key_ids(subject, pa.array(new, pa.string()), settings.pii_hash_key)
        made = store.tokens(ids, _sealer(dict(zip(ids, new, strict=True))))
        known.update(zip(new, _token_parts([made[kid] for kid in ids]), strict=True))
    return [known[value] for value in distinct]


def _token_column(tokens: list[Token], index: pa.Array, at: np.ndarray) -> pa.StructArray:
    """The `pii_<field>` column: each row's token (`index` into `tokens`, null: none), at."""
    key_ids = pa.array([t[0] for t in tokens], pa.binary()).take(index)
    sealed = pa.array([t[1] for t in tokens], pa.binary()).take(index)
    missing = index.is_null()
    return pa.StructArray.from_arrays(
        [key_ids, sealed, pa.array(np.maximum(at, 0).astype(np.int32))],
        fields=list(PII_TOKEN_TYPE),
        mask=missing,
    )


def encrypt_raw_values(
    settings: Settings, topic: str, values: pa.Array, store: KeyStore | None = None
) -> pa.Table:
    """Valid raw payloads of `topic` as raw stores them: `value` (large_string) with each
    direct identifier's text masked, and its sealed form in column `pii_<field>` (null where
    there is none, and in every row with encryption off: the payloads are kept as received)."""
    fields = _direct_fields(topic)
    values = _large(values)
    columns: dict[str, pa.Array] = {"value": values}
    columns |= {pii_column(f.path): pa.nulls(len(values), PII_TOKEN_TYPE) for f in fields}
    if not fields or not settings.raw_encryption or len(values) == 0:
        return pa.table(columns)
    offsets, data = _buffers(values)
    whole = data.tobytes()
    placed = {f.path: _find(values, offsets, data, whole, f.path) for f in fields}
    plains = {p: _texts(offsets, data, at, n) for p, (at, n) in placed.items()}
    unplaced = np.zeros(len(values), bool)
    for f in fields:
        at, _ = placed[f.path]
        if _always_present(topic, f.path):
            unplaced |= at < 0
            continue
        # an optional field: the byte search must agree with the parser (held at the top level)
        parsed = _extract(values, [f.path])[f.path].cast(pa.large_string())
        agree = pc.fill_null(pc.equal(plains[f.path], parsed), False).to_numpy(zero_copy_only=False)
        unplaced |= ~agree & parsed.is_valid().to_numpy(zero_copy_only=False)
        at[~agree] = -1
    if unplaced.any():
        rows = pa.array(np.flatnonzero(unplaced))
        parsed = {
            p: c.cast(pa.large_string())
            for p, c in _extract(values.take(rows), list(placed)).items()
        }
        fronted, fronted_at = _to_front(values.take(rows), parsed)
        values = _large(pc.replace_with_mask(values, pa.array(unplaced), fronted))
        for p, (at, n) in fronted_at.items():
            placed[p][0][unplaced], placed[p][1][unplaced] = at, n
            plains[p] = pc.replace_with_mask(plains[p], pa.array(unplaced), parsed[p])
    offsets, data = _buffers(values)
    spans: list[tuple[np.ndarray, np.ndarray]] = []
    owned = store is None
    store = store or open_key_store(settings)
    try:
        for f in fields:
            at, lengths = placed[f.path]
            plain = pc.if_else(
                pa.array(at >= 0), plains[f.path], pa.scalar(None, pa.large_string())
            )
            distinct = pc.unique(plain.drop_null())
            listed = [str(v) for v in distinct.to_pylist()]
            index = pc.index_in(plain, value_set=distinct)
            rows = np.flatnonzero(at >= 0)
            spans.append((offsets[rows] + at[rows], lengths[rows]))
            tokens = _tokens(settings, store, str(f.subject), listed)
            columns[pii_column(f.path)] = _token_column(tokens, index, at)
    finally:
        if owned:
            store.close()  # type: ignore[attr-defined]
    masked = data.copy()
    masked[
        _ranges(np.concatenate([s for s, _ in spans]), np.concatenate([n for _, n in spans]))
    ] = _MASK
    columns["value"] = _with_data(values, masked)
    return pa.table(columns)


def encrypt_raw(settings: Settings, topic: str, raw: pa.Table) -> pa.Table:
    """Raw rows with `value` and the `pii_<field>` columns (added where missing, as in
    `lake.tables.raw_schema`) set by `encrypt_raw_values`."""
    sealed = encrypt_raw_values(settings, topic, raw["value"])
    for name in sealed.column_names:
        if name not in raw.column_names:
            raw = raw.append_column(sealed.schema.field(name), sealed[name])
            continue
        field = raw.schema.field(name)
        raw = raw.set_column(raw.column_names.index(name), field, sealed[name].cast(field.type))
    return raw


# ---- silver: decryption -------------------------------------------------------------------


class _Opener:
    """Opens tokens against the key store (opened on first use)."""

    def __init__(self, settings: Settings, store: KeyStore | None) -> None:
        self.settings = settings
        self.store = store
        self.owned = store is None

    def open(self, key_ids: list[str], blobs: list[bytes]) -> list[str | None]:
        """Each sealed value in plaintext; None where its key was destroyed (erased)."""
        if self.store is None:
            self.store = open_key_store(self.settings)
        keys = self.store.get(key_ids)
        plain: list[str | None] = []
        for kid, blob in zip(key_ids, blobs, strict=True):
            key = keys.get(kid)
            if key is None:
                plain.append(None)  # shredded: the subject was erased
                continue
            try:
                opened = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode())
            except InvalidTag:
                plain.append(None)
                continue
            plain.append(opened.decode())
        return plain

    def close(self) -> None:
        if self.owned and self.store is not None:
            self.store.close()  # type: ignore[attr-defined]


def _patch(values: pa.Array, replacements: dict[str, tuple[pa.Array, pa.Array]]) -> pa.Array:
    """Payloads with top-level field `p`'s value `old` replaced by `new`, for
    `replacements[p] = (old, new)`, where `new` is not null (rows written with `pii1.` tokens
    in the payload).

    A payload holding `"p":<old as JSON>` exactly once has that text replaced (a string
    operation, half the cost of parsing), kept when its top-level `p` then reads `new`; any
    other payload (other spellings, the pair also nested) is rewritten by `json_merge_patch`."""
    con = duckdb.connect()
    try:
        columns: dict[str, pa.Array] = {"value": values}
        for i, (old, new) in enumerate(replacements.values()):
            columns |= {f"o{i}": old, f"r{i}": new}
        con.register("t", pa.table(columns))
        query = "SELECT * REPLACE (value::VARCHAR AS value) FROM t"
        for i, path in enumerate(replacements):  # one field per level: `value` read once each
            key = f"'\"{path}\":'"
            needle = f"({key} || to_json(o{i})::VARCHAR)"
            replaced = (
                f"CASE WHEN r{i} IS NOT NULL AND strpos(value, {needle}) > 0 "
                f"AND strpos(substr(value, strpos(value, {needle}) + 1), {needle}) = 0 "
                f"THEN replace(value, {needle}, {key} || to_json(r{i})::VARCHAR) END"
            )
            step = (
                f"CASE WHEN r{i} IS NULL THEN value "
                f"WHEN json_extract_string(replaced, '$.{path}') = r{i} THEN replaced "
                f"ELSE json_merge_patch(value, json_object('{path}', r{i}))::VARCHAR END"
            )
            query = (
                f"SELECT * EXCLUDE (replaced) REPLACE ({step} AS value) "
                f"FROM (SELECT *, {replaced} AS replaced FROM ({query}))"
            )
        out = con.sql(f"SELECT value FROM ({query})").to_arrow_table()
        return out["value"].combine_chunks().cast(pa.large_string())
    finally:
        con.close()


def _open_payload_tokens(
    opener: _Opener, fields: list[pii.FieldClass], values: pa.Array
) -> tuple[pa.Array, np.ndarray]:
    """Payloads holding `pii1.` tokens (the layout before the pii columns) decrypted, and
    which rows to keep (False: a token whose key was destroyed)."""
    columns = _extract(values, [f.path for f in fields])
    keep = np.ones(len(values), bool)
    replacements: dict[str, tuple[pa.Array, pa.Array]] = {}
    for f in fields:
        column = columns[f.path]
        is_token = pc.fill_null(pc.starts_with(column, TOKEN_PREFIX), False)
        if not pc.any(is_token).as_py():
            continue
        distinct = pc.unique(pc.filter(column, is_token))
        parts = _token_parts([str(t) for t in distinct.to_pylist()])
        plain = opener.open([kid.hex() for kid, _ in parts], [blob for _, blob in parts])
        mapped = pc.take(pa.array(plain, pa.string()), pc.index_in(column, value_set=distinct))
        erased = pc.and_(is_token, pc.is_null(mapped)).to_numpy(zero_copy_only=False)
        keep &= ~erased
        replacements[f.path] = (column, mapped)
    if not replacements:
        return values, keep
    return _patch(values, replacements), keep


def decrypt_raw_values(
    settings: Settings, topic: str, raw: pa.Table, store: KeyStore | None = None
) -> pa.Table:
    """Raw rows with their direct identifiers in plaintext again and without the `pii_<field>`
    columns; rows naming a subject whose key was destroyed are left out (erased). Rows
    holding `pii1.` tokens in the payload (written before the columns) are decrypted too;
    plaintext payloads (written with encryption off) pass as they are."""
    fields = _direct_fields(topic)
    present = [c for c in (pii_column(f.path) for f in fields) if c in raw.column_names]
    if not fields or raw.num_rows == 0:
        return raw.drop_columns(present)
    values = _large(raw["value"])
    n = len(values)
    keep = np.ones(n, bool)
    sealed_rows = np.zeros(n, bool)
    opener = _Opener(settings, store)
    try:
        writes: list[tuple[np.ndarray, np.ndarray, pa.Array]] = []  # rows, offsets, texts
        for name in present:
            column = raw[name].combine_chunks()
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            if not valid.any():
                continue
            sealed_rows |= valid
            rows = np.flatnonzero(valid)
            taken = column.take(pa.array(rows))
            blobs = taken.field("sealed")
            distinct = pc.unique(blobs)
            index = pc.index_in(blobs, value_set=distinct).to_numpy()
            first = np.unique(index, return_index=True)[1]
            key_ids = [k.hex() for k in taken.field("key_id").take(pa.array(first)).to_pylist()]
            plain = opener.open(key_ids, distinct.to_pylist())
            opened = np.array([p is not None for p in plain])[index]
            keep[rows[~opened]] = False
            texts = pa.array(
                [b"" if p is None else _json_text(p).encode() for p in plain], pa.binary()
            )
            at = taken.field("pos").to_numpy(zero_copy_only=False).astype(np.int64)
            writes.append((rows[opened], at[opened], texts.take(pa.array(index[opened]))))
        old = ~sealed_rows & pc.fill_null(
            pc.match_substring(values, f'"{TOKEN_PREFIX}'), False
        ).to_numpy(zero_copy_only=False)
        if old.any():
            picked = pa.array(np.flatnonzero(old))
            opened_values, kept = _open_payload_tokens(opener, fields, values.take(picked))
            values = _large(pc.replace_with_mask(values, pa.array(old), opened_values))
            keep[np.flatnonzero(old)[~kept]] = False
    finally:
        opener.close()
    if writes:
        values = _restore(values, writes)
    out = raw.drop_columns(present)
    index = out.column_names.index("value")
    out = out.set_column(index, out.schema.field(index), values.cast(out.schema.field(index).type))
    return out if keep.all() else out.filter(pa.array(keep))


def _restore(values: pa.Array, writes: list[tuple[np.ndarray, np.ndarray, pa.Array]]) -> pa.Array:
    """Payloads with each masked span (a run of `*` closed by a quote, at the recorded offset)
    overwritten by its plaintext text. A text of another length than its span (only a payload
    changed since it was written) is spliced in by a pass over those rows alone."""
    offsets, data = _buffers(values)
    restored = data.copy()
    uneven: list[tuple[int, int, bytes]] = []
    for rows, at, texts in writes:
        toffsets, tdata = _buffers(texts.cast(pa.large_binary()))
        lengths = np.diff(toffsets)
        start = offsets[rows] + at
        span = _ranges(start, lengths)
        row_of = np.repeat(np.arange(len(rows)), lengths)
        fits = (_gather(data, start + lengths) == _QUOTE) & (start + lengths < offsets[rows + 1])
        fits[np.unique(row_of[_gather(data, span) != _MASK])] = False
        inside = fits[row_of]
        restored[span[inside]] = tdata[_ranges(toffsets[:-1], lengths)][inside]
        for i in np.flatnonzero(~fits):
            uneven.append((int(rows[i]), int(at[i]), texts[int(i)].as_py()))
    out = _with_data(values, restored)
    if not uneven:
        return out
    rows = sorted({row for row, _, _ in uneven})
    taken = out.take(pa.array(rows)).to_pylist()
    payloads = {row: v.encode() for row, v in zip(rows, taken, strict=True)}
    for row, at, text in sorted(uneven, key=lambda u: (u[0], -u[1])):  # later spans first
        end = payloads[row].index(b'"', at)
        payloads[row] = payloads[row][:at] + text + payloads[row][end:]
    mask = np.zeros(len(out), bool)
    mask[rows] = True
    fixed = pa.array([payloads[row].decode() for row in rows], pa.large_string())
    return _large(pc.replace_with_mask(out, pa.array(mask), fixed))
