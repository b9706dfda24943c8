"""Per-subject data keys behind a small KMS-like interface.

Each data subject (a customer, an account, a card) has its own random 256-bit data key. The
key store keeps it wrapped (AES-GCM) under the master key, addressed by a key id that is a
keyed hash of the subject, so the store itself names nobody. Destroying a subject's key makes
every raw value encrypted under it unreadable (crypto-shredding).

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
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lakehouse.config import Settings, create_secret_file
from lakehouse.errors import ConfigError

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyStore(Protocol):
    def get_or_create(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """Data keys of `key_ids`, creating the missing ones (ingestion)."""
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
            "NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP) WITHOUT ROWID"
        )
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

    def _lookup(self, key_ids: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(key_ids), 900):  # SQLite's bound-parameter limit
            chunk = key_ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for key_id, wrapped in self._con.execute(
                f"SELECT key_id, wrapped FROM subject_keys WHERE key_id IN ({marks})", chunk
            ):
                found[key_id] = self._wrap.decrypt(
                    wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode()
                )
        return found

    def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        return self._lookup(sorted(set(key_ids)))

    def get_or_create(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(key_ids))
        found = self._lookup(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            # one read of the random source for every new key and nonce of the batch
            step = KEY_BYTES + NONCE_BYTES
            material = os.urandom(len(missing) * step)
            rows, created = [], {}
            for i, key_id in enumerate(missing):
                key = material[i * step : i * step + KEY_BYTES]
                nonce = material[i * step + KEY_BYTES : (i + 1) * step]
                rows.append((key_id, nonce + self._wrap.encrypt(nonce, key, key_id.encode())))
                created[key_id] = key
            # two writers may create the same subject at once: the first key wins
            self._con.execute("BEGIN IMMEDIATE")
            before = self._con.total_changes
            self._con.executemany(
                "INSERT OR IGNORE INTO subject_keys (key_id, wrapped) VALUES (?, ?)", rows
            )
            inserted = self._con.total_changes - before
            self._con.execute("COMMIT")
            # read back only when another writer got there first for some of them
            found.update(created if inserted == len(rows) else self._lookup(missing))
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
