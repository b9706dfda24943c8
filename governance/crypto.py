"""Raw PII encryption: direct identifiers in raw payloads stored as AES-GCM tokens.

At ingestion, each direct identifier (`x-pii: direct`, governance.pii) of a valid payload is
replaced by `pii1.<key id>.<base64(nonce | ciphertext | tag)>`, encrypted under the data key
of its subject (`governance.keystore`; the key id is a keyed hash of subject and value). Raw
stays replayable: silver decrypts the tokens before its transform. Once a subject's key is
destroyed (`lakehouse privacy forget`), its tokens no longer decrypt and the rows naming it
are left out of silver on any replay.

Identifiers repeat heavily within a batch (a customer orders many times), so each distinct
value is encrypted once per batch and mapped back to the rows columnwise (`pc.index_in` +
`take`); the payload is rewritten by DuckDB's `json_merge_patch`, not by a Python loop per
row.
"""

from __future__ import annotations

import base64
import os
from binascii import b2a_base64
from collections.abc import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from governance import pii
from governance.keystore import NONCE_BYTES, KeyStore, open_key_store
from lakehouse.config import Settings

TOKEN_PREFIX = "pii1."
KEY_ID_CHARS = 32  # 128 bits of the keyed hash: collision-free at any subject count


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
    return [f for f in pii.personal_fields(topic, "direct") if "." not in f.path]


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


def _patch(values: pa.Array, replacements: dict[str, tuple[pa.Array, pa.Array]]) -> pa.Array:
    """Payloads with top-level field `p`'s value `old` replaced by `new`, for
    `replacements[p] = (old, new)`, where `new` is not null.

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
            # the text replaced where it occurs once and the result reads the new value at the
            # top level; anything else (other spellings, the pair also nested) parsed and patched
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


# Tokens already made in this process, per key store and subject kind: a subject seen in an
# earlier batch costs a dict lookup instead of a key-store read, an unwrap and an encryption.
# A token names its key by id (the keyed hash that already shows two rows share a subject),
# so reusing one reveals nothing more. Dropped as soon as the store's generation moves (a key
# was destroyed: an erased subject must get a new key, never its old token) and when full.
_TOKEN_CACHE_LIMIT = 1_000_000
_token_caches: dict[tuple[str, int], tuple[str, dict[str, dict[str, str]]]] = {}


def _token_cache(settings: Settings, store: KeyStore) -> dict[str, dict[str, str]]:
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
    id is the associated data, so a token cannot be moved to another key)."""

    def seal(ids: list[str], keys: list[bytes]) -> list[str]:
        nonces = os.urandom(len(ids) * NONCE_BYTES)  # one read for the batch's nonces
        made = []
        for j, (kid, key) in enumerate(zip(ids, keys, strict=True)):
            nonce = nonces[j * NONCE_BYTES : (j + 1) * NONCE_BYTES]
            sealed = AESGCM(key).encrypt(nonce, subject_values[kid].encode(), kid.encode())
            made.append(f"{TOKEN_PREFIX}{kid}.{b2a_base64(nonce + sealed, newline=False).decode()}")
        return made

    return seal


def encrypt_values(
    settings: Settings, topic: str, values: pa.Array, store: KeyStore | None = None
) -> pa.Array:
    """Valid raw payloads of `topic` with their direct identifiers encrypted (large_string)."""
    fields = _direct_fields(topic)
    if not fields or not settings.raw_encryption or len(values) == 0:
        return pc.cast(values, pa.large_string())
    columns = _extract(values, [f.path for f in fields])
    owned = store is None
    store = store or open_key_store(settings)
    try:
        cache = _token_cache(settings, store)
        replacements: dict[str, tuple[pa.Array, pa.Array]] = {}
        for f in fields:
            column = columns[f.path]
            distinct = pc.unique(column.drop_null())
            known = cache.setdefault(str(f.subject), {})
            plain = distinct.to_pylist()
            tokens = [known.get(value) for value in plain]
            new = [value for value, token in zip(plain, tokens, strict=True) if token is None]
            if new:
                ids = _key_ids(str(f.subject), pa.array(new, pa.string()), settings.pii_hash_key)
                made = store.tokens(ids, _sealer(dict(zip(ids, new, strict=True))))
                known.update((value, made[kid]) for value, kid in zip(new, ids, strict=True))
                tokens = [known[value] for value in plain]
            replacements[f.path] = (
                column,
                pc.take(pa.array(tokens, pa.string()), pc.index_in(column, value_set=distinct)),
            )
    finally:
        if owned:
            store.close()  # type: ignore[attr-defined]
    return _patch(values, replacements)


def decrypt_raw_values(
    settings: Settings, topic: str, raw: pa.Table, store: KeyStore | None = None
) -> pa.Table:
    """Raw rows with their tokens decrypted; rows naming a subject whose key was destroyed
    are left out (erased). Plaintext payloads (written with encryption off) pass as they are."""
    fields = _direct_fields(topic)
    if not fields or raw.num_rows == 0:
        return raw
    values = raw["value"].combine_chunks()
    columns = _extract(values, [f.path for f in fields])
    keep = pa.array([True] * raw.num_rows)
    replacements: dict[str, tuple[pa.Array, pa.Array]] = {}
    owned = store is None
    try:
        for f in fields:
            column = columns[f.path]
            is_token = pc.fill_null(pc.starts_with(column, TOKEN_PREFIX), False)
            if not pc.any(is_token).as_py():
                continue
            if store is None:
                store = open_key_store(settings)
            distinct = pc.unique(pc.filter(column, is_token))
            texts = [str(t) for t in distinct.to_pylist()]
            ids = [t[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + KEY_ID_CHARS] for t in texts]
            keys = store.get(ids)
            plain: list[str | None] = []
            for token, kid in zip(texts, ids, strict=True):
                key = keys.get(kid)
                if key is None:
                    plain.append(None)  # shredded: the subject was erased
                    continue
                blob = base64.b64decode(token[len(TOKEN_PREFIX) + KEY_ID_CHARS + 1 :])
                try:
                    opened = AESGCM(key).decrypt(
                        blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode()
                    )
                except InvalidTag:
                    plain.append(None)
                    continue
                plain.append(opened.decode())
            mapped = pc.take(pa.array(plain, pa.string()), pc.index_in(column, value_set=distinct))
            keep = pc.and_(keep, pc.invert(pc.and_(is_token, pc.is_null(mapped))))
            replacements[f.path] = (column, mapped)
    finally:
        if owned and store is not None:
            store.close()  # type: ignore[attr-defined]
    if not replacements:
        return raw
    patched = _patch(values, replacements)
    out = raw.set_column(raw.column_names.index("value"), "value", patched.cast(raw["value"].type))
    return out.filter(keep)
