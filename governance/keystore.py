"""Per-subject data keys behind a small KMS-like interface.

Each data subject (a customer, an account, a card) has its own random 256-bit data key. The
key store keeps it wrapped (AES-GCM) under the master key, addressed by a key id that is a
keyed hash of the subject, so the store itself names nobody. Destroying a subject's key makes
every raw value encrypted under it unreadable (crypto-shredding).

A key id names one value of one subject, so each data key seals exactly one value: its token
(the sealed value raw stores, kept here as `pii1.<key id>.<base64>`) is kept beside it. A process meeting a known subject then reads the token
instead of unwrapping the key and sealing again — which is what every Dagster run, a fresh
process, would otherwise pay per distinct subject of its batch. The token adds nothing to what
the row holds (it opens only with the row's key) and goes with it when the key is destroyed.

`FileKeyStore` is a SQLite file under LAKEHOUSE_HOME (mode 0600, folder 0700, `secure_delete`
on, so a destroyed key's bytes are overwritten, not left in a free page). The master key
comes from LAKEHOUSE_MASTER_KEY; unset, one is generated once into `<key store>.master`
(0600) so a fresh clone runs — production sets the variable (or a KMS implements `KeyStore`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lakehouse.config import Settings, create_secret_file
from lakehouse.errors import ConfigError

KEY_BYTES = 32
NONCE_BYTES = 12


# Makes the tokens of key ids from their data keys (the values sealed are the caller's).
Sealer = Callable[[list[str], list[bytes]], list[str]]


class KeyStore(Protocol):
    def tokens(self, key_ids: Sequence[str], seal: Sealer) -> dict[str, str]:
        """The token of each key id (ingestion): the one kept with its data key, else made by
        `seal` — with a new data key for an id that has none — and kept with it."""
        ...

    def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """Data keys of `key_ids` that exist (destroyed ones are absent)."""
        ...

    def destroy(self, key_ids: Iterable[str]) -> int:
        """Destroy these keys; returns how many existed."""
        ...

    def generation(self) -> str:
        """A value that changes whenever keys are destroyed or the store is replaced (callers
        caching what they derived from keys drop it when it moves)."""
        ...


def master_key_bytes(settings: Settings) -> bytes:
    """The 256-bit master key: LAKEHOUSE_MASTER_KEY (any secret string, stretched with
    SHA-256; 64 hex or 44 base64 characters of 32 random bytes are used as they are), else the
    generated file beside the key store."""
    text = settings.master_key
    if text is None:
        path = settings.key_store_path.with_suffix(".master")
        create_secret_file(path, lambda: base64.b64encode(os.urandom(KEY_BYTES)).decode())
        _check_private(path)
        text = path.read_text().strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text, validate=True)
        if len(raw) == KEY_BYTES:
            return raw
    except ValueError:
        pass
    return hashlib.sha256(text.encode()).digest()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by others (mode {mode:o}): run chmod 600 {path} "
            "(it holds key material)"
        )


class FileKeyStore:
    def __init__(self, settings: Settings) -> None:
        self.path = settings.key_store_path
        self._wrap = AESGCM(master_key_bytes(settings))
        _private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        _check_private(self.path)
        self._con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._con.execute("PRAGMA secure_delete = ON")
        self._con.execute("PRAGMA journal_mode = DELETE")  # no WAL file keeping old pages
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS subject_keys (key_id TEXT PRIMARY KEY, wrapped BLOB NOT "
            "NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, token TEXT) WITHOUT ROWID"
        )
        if "token" not in {row[1] for row in self._con.execute("PRAGMA table_info(subject_keys)")}:
            self._con.execute("ALTER TABLE subject_keys ADD COLUMN token TEXT")  # older stores
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS store_generation (one INTEGER PRIMARY KEY CHECK (one = 1), "
            "store_id TEXT NOT NULL, generation INTEGER NOT NULL)"
        )
        self._con.execute(
            "INSERT OR IGNORE INTO store_generation VALUES (1, ?, 0)", (os.urandom(16).hex(),)
        )

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> FileKeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, key_ids: Sequence[str]) -> list[tuple[str, bytes, str | None]]:
        rows: list[tuple[str, bytes, str | None]] = []
        for start in range(0, len(key_ids), 900):  # SQLite's bound-parameter limit
            chunk = key_ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows += self._con.execute(
                f"SELECT key_id, wrapped, token FROM subject_keys WHERE key_id IN ({marks})", chunk
            ).fetchall()
        return rows

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return self._wrap.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())

    def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        return {k: self._unwrap(k, w) for k, w, _ in self._rows(sorted(set(key_ids)))}

    def _kept_tokens(self, key_ids: Sequence[str], seal: Sealer) -> dict[str, str]:
        """Tokens of the ids that have a key, made (and kept) for keys stored without one."""
        found: dict[str, str] = {}
        untokened: list[tuple[str, bytes]] = []
        for key_id, wrapped, token in self._rows(key_ids):
            if token is None:
                untokened.append((key_id, self._unwrap(key_id, wrapped)))
            else:
                found[key_id] = token
        if untokened:
            ids = [k for k, _ in untokened]
            made = seal(ids, [key for _, key in untokened])
            self._con.execute("BEGIN IMMEDIATE")
            self._con.executemany(
                "UPDATE subject_keys SET token = ? WHERE key_id = ? AND token IS NULL",
                list(zip(made, ids, strict=True)),
            )
            self._con.execute("COMMIT")
            found.update(zip(ids, made, strict=True))
        return found

    def tokens(self, key_ids: Sequence[str], seal: Sealer) -> dict[str, str]:
        wanted = sorted(set(key_ids))
        found = self._kept_tokens(wanted, seal)
        missing = [k for k in wanted if k not in found]
        if missing:
            # one read of the random source for every new key and its wrapping nonce
            step = KEY_BYTES + NONCE_BYTES
            material = os.urandom(len(missing) * step)
            keys = [material[i * step : i * step + KEY_BYTES] for i in range(len(missing))]
            made = seal(missing, keys)
            rows = []
            for i, (key_id, key) in enumerate(zip(missing, keys, strict=True)):
                nonce = material[i * step + KEY_BYTES : (i + 1) * step]
                wrapped = nonce + self._wrap.encrypt(nonce, key, key_id.encode())
                rows.append((key_id, wrapped, made[i]))
            # two writers may create the same subject at once: the first key (and token) wins
            self._con.execute("BEGIN IMMEDIATE")
            before = self._con.total_changes
            self._con.executemany(
                "INSERT OR IGNORE INTO subject_keys (key_id, wrapped, token) VALUES (?, ?, ?)",
                rows,
            )
            inserted = self._con.total_changes - before
            self._con.execute("COMMIT")
            if inserted == len(rows):
                found.update(zip(missing, made, strict=True))
            else:  # read back only when another writer got there first for some of them
                found.update(self._kept_tokens(missing, seal))
        return found

    def destroy(self, key_ids: Iterable[str]) -> int:
        ids = sorted(set(key_ids))
        self._con.execute("BEGIN IMMEDIATE")
        before = self._con.total_changes
        self._con.executemany("DELETE FROM subject_keys WHERE key_id = ?", [(k,) for k in ids])
        destroyed = self._con.total_changes - before
        self._con.execute("UPDATE store_generation SET generation = generation + 1")
        self._con.execute("COMMIT")
        self._con.execute("VACUUM")  # rewrite the file: no page keeps the destroyed key
        return destroyed

    def generation(self) -> str:
        row = self._con.execute("SELECT store_id, generation FROM store_generation").fetchone()
        return f"{row[0]}:{row[1]}"


def open_key_store(settings: Settings) -> FileKeyStore:
    return FileKeyStore(settings)
