"""The dashboard's hashes, so the worker reads and writes the same values it does.

The dashboard hashes with `dashboardEncryptionKey`, which the application embedding it sets.
A stock dashboard sets none, and JavaScript then hashes lookups with the text `undefined`
(`text + ':' + undefined`) and passwords with nothing (`key || ''`). An empty `key` here means
exactly that dashboard.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import bcrypt

# What `text + ':' + key` gives in JavaScript when the key is unset.
UNSET_KEY_IN_JAVASCRIPT = "undefined"


@dataclass(frozen=True, slots=True, repr=False)
class Hasher:
    key: str  # the dashboard's dashboardEncryptionKey; "" for a stock dashboard with none
    bcrypt_rounds: int

    def lookup_hash(self, text: str) -> str:
        """Deterministic hash used to find a row by username or reset code."""
        return hashlib.sha512(f"{text}:{self.key or UNSET_KEY_IN_JAVASCRIPT}".encode()).hexdigest()

    def password_hash(self, password: str) -> str:
        """bcrypt over a SHA-256 digest, so bcrypt's 72-byte limit never truncates a password."""
        return bcrypt.hashpw(self._prehash(password), bcrypt.gensalt(self.bcrypt_rounds)).decode()

    def password_matches(self, password: str, stored_hash: str) -> bool:
        return bcrypt.checkpw(self._prehash(password), stored_hash.encode())

    def _prehash(self, password: str) -> bytes:
        return hashlib.sha256(f"{password}{self.key}".encode()).hexdigest().encode()

    def __repr__(self) -> str:
        return f"Hasher(key=<redacted>, bcrypt_rounds={self.bcrypt_rounds})"
