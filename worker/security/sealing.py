"""Sealed values: encrypted and authenticated with Fernet, so Redis never holds them plain.

`seal`/`open` carry any JSON value (the dead letters' hidden fields); `seal_text`/`open_text`
carry one string as its UTF-8 bytes, the format producers use for secret fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import InvalidToken

from client.sealing import multi_fernet


class SealError(Exception):
    """A sealed value that no configured key opens (or that was altered)."""


class Sealer:
    """Seals with the first key; opens with any, so keys can be rotated."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = multi_fernet(keys)  # a ValueError unless each is a Fernet key

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str) -> Any:
        try:
            return json.loads(self._decrypt(token))
        except ValueError:
            raise SealError("the sealed value is not JSON") from None

    def seal_text(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open_text(self, token: str) -> str:
        try:
            return self._decrypt(token).decode()
        except UnicodeDecodeError:
            raise SealError("the sealed value is not UTF-8 text") from None

    def _decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except (InvalidToken, ValueError):
            raise SealError("the sealed value does not open with the configured keys") from None
