"""Secret fields a producer sealed, opened before the payload is validated.

A producer that holds `ACCOUNT_RESET_PAYLOAD_KEY` sends a secret as `{"sealed": TOKEN}`, where
TOKEN is a Fernet token of the secret's UTF-8 bytes, so the broker, its append-only file and
its replicas never hold the secret in plaintext. The README's Security section gives the
format for producers in any language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import ExceptionCode
from schemas.codes import CommandRejected
from worker.sealing import Sealer, SealError

SEALED = "sealed"
# The fields that must be sealed when sealing is required (both spellings of each).
REQUIRED_FIELDS = frozenset({"new-password", "new_password", "secret-code", "secret_code"})
# Fields a producer may seal; the username too, though it is not required.
SEALABLE_FIELDS = REQUIRED_FIELDS | {"username"}
# A token for a field at the length cap is about 1.4 times as long, plus 73 bytes.
TOKEN_LENGTH_FACTOR = 2


@dataclass(frozen=True)
class SealedFields:
    sealer: Sealer | None
    required: bool
    max_field_length: int

    def open(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with each sealed field opened; refuses what cannot be opened.

        Raises `CommandRejected(invalid-payload)` for a sealed value that does not open (wrong
        key, altered, no key configured), and for a plaintext secret when sealing is required.
        """
        opened = dict(payload)
        for field in SEALABLE_FIELDS & payload.keys():
            value = payload[field]
            if _is_sealed(value):
                opened[field] = self._open_one(value[SEALED])
            elif self.required and field in REQUIRED_FIELDS and isinstance(value, str):
                raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        return opened

    def _open_one(self, token: Any) -> str:
        too_long = len(token) > TOKEN_LENGTH_FACTOR * self.max_field_length + 100
        if self.sealer is None or too_long:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        try:
            return self.sealer.open_text(token)
        except SealError:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD) from None


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {SEALED} and isinstance(value[SEALED], str)
