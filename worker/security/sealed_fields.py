"""Secret fields a producer sealed, opened before the payload is validated.

A producer sends a secret as `{"sealed": TOKEN}`, TOKEN a compact JWE (ECDH-ES, A256GCM) to the
worker's public key, so the broker, its append-only file and its replicas never hold the secret
in plaintext, and no producer can open another's. The token's protected header binds it to one
field of one command (`cmd`, `fld`, `cid`) and stamps it (`iat`): it opens nowhere else, and not
after SEALED_MAX_AGE_S, so a value cut from one message and pasted into another is refused. The
docs/security.md, "The sealed format", gives it for producers in any language.

Legacy (goes in 0.3.0): a Fernet token under the shared PAYLOAD_KEY, opened only with
LEGACY_FERNET_SEALED=true; it binds nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from client.sealing import (
    COMMAND_HEADER,
    COMMAND_ID_HEADER,
    FIELD_HEADER,
    ISSUED_AT_HEADER,
    Binding,
    seal,
)
from schemas import ExceptionCode, fields
from schemas.codes import CommandRejected
from schemas.fields import SECRET_FIELDS, spellings
from worker.security.sealing import Sealer, SealError
from worker.security.sealing_keys import SealingKeys

SEALED = "sealed"
# The fields that must be sealed when sealing is required (both spellings of each).
REQUIRED_FIELDS = spellings(*SECRET_FIELDS)
# Fields a producer may seal; the username too, though it is not required.
SEALABLE_FIELDS = spellings(*fields.SEALABLE_FIELDS)
# A token for a field at the length cap is about 1.4 times as long, plus its header (at most
# 1 KiB of JSON, joserfc's own cap, so about 1.4 KiB as base64).
TOKEN_LENGTH_FACTOR = 2
TOKEN_HEADER_ALLOWANCE = 1500
DEFAULT_MAX_AGE_S = 3600
# A producer's clock may run ahead of the worker's by this much; a token from further in the
# future would outlive SEALED_MAX_AGE_S.
MAX_CLOCK_AHEAD_S = 60
# When fields are refused for different reasons, the command gets the first of these: a field
# sealed for somewhere else means the message was tampered with, whatever else is wrong.
PRECEDENCE = (ExceptionCode.INVALID_PAYLOAD, ExceptionCode.SEALED_VALUE_EXPIRED)


@dataclass(frozen=True)
class SealedFields:
    keys: SealingKeys | None
    required: bool
    max_field_length: int
    max_age_s: int = DEFAULT_MAX_AGE_S
    # The shared Fernet key, set only with LEGACY_FERNET_SEALED=true.
    legacy: Sealer | None = None

    def open(self, payload: dict[str, Any], *, command: str, command_id: str) -> dict[str, Any]:
        """The payload with each sealed field opened; refuses what cannot be opened here.

        `command_id` is the one the outcome is recorded under; a JWE field opens only in a
        message that carries it. Raises `CommandRejected`: `sealed-value-expired` for a token
        older than the maximum age; `invalid-payload` for one that does not open (wrong key,
        altered, no key configured), was sealed for another command, field or command_id, or
        is stamped ahead of the clock, and for a plaintext secret when sealing is required.
        """
        carried = payload.get(fields.COMMAND_ID) == command_id
        opened = dict(payload)
        refused: set[ExceptionCode] = set()
        for field in sorted(SEALABLE_FIELDS & payload.keys()):
            value = payload[field]
            if _is_sealed(value):
                binding = Binding.of(command=command, field=field, command_id=command_id)
                try:
                    opened[field] = self._open_one(value[SEALED], binding, carried=carried)
                except CommandRejected as rejected:
                    refused.add(rejected.code)
            elif self.required and field in REQUIRED_FIELDS and isinstance(value, str):
                refused.add(ExceptionCode.INVALID_PAYLOAD)
        if refused:
            raise CommandRejected(next(code for code in PRECEDENCE if code in refused))
        return opened

    def _open_one(self, token: str, binding: Binding, *, carried: bool) -> str:
        too_long = len(token) > TOKEN_LENGTH_FACTOR * self.max_field_length + TOKEN_HEADER_ALLOWANCE
        if too_long:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        if not _is_jwe(token):
            return self._open_legacy(token)
        if self.keys is None or not carried:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        try:
            text, issued_at = open_bound(token, binding, keys=self.keys)
        except SealError:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD) from None
        now = time.time()
        if issued_at > now + MAX_CLOCK_AHEAD_S:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        if now - issued_at > self.max_age_s:
            raise CommandRejected(ExceptionCode.SEALED_VALUE_EXPIRED)
        return text

    def _open_legacy(self, token: str) -> str:
        if self.legacy is None:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
        try:
            return self.legacy.open_text(token)
        except SealError:
            raise CommandRejected(ExceptionCode.INVALID_PAYLOAD) from None


def open_bound(token: str, binding: Binding, *, keys: SealingKeys) -> tuple[str, int]:
    """The text of a JWE field and when it was sealed; SealError unless one of the keys opens it
    and its header binds it to exactly `binding` (its age is the caller's to judge)."""
    opened = keys.open(token)
    header = opened.header
    bound_to = (header[COMMAND_HEADER], header[FIELD_HEADER], header[COMMAND_ID_HEADER])
    if bound_to != (binding.command, binding.field, binding.command_id):
        raise SealError("a sealed value was sealed for another command, field or command_id")
    return opened.text, header[ISSUED_AT_HEADER]


def resealed(
    payload: dict[str, Any],
    *,
    keys: SealingKeys,
    command: str,
    command_id: str,
    issued_after: int,
) -> dict[str, Any]:
    """`payload` with each JWE field opened (binding checked) and sealed again to the newest
    key, with the same binding, stamped now: what a dead-letter retry sends, since the tokens
    it kept were stamped when the command was first sent. A token stamped before `issued_after`
    (Unix seconds: it had expired by the time its command was dead-lettered) is not made young
    again, or an old message pushed to be dead-lettered would come back fresh. SealError if one
    does not open or is that old.
    """
    public = keys.newest
    again = dict(payload)
    for field in SEALABLE_FIELDS & payload.keys():
        value = payload[field]
        if _is_sealed(value) and _is_jwe(value[SEALED]):
            binding = Binding.of(command=command, field=field, command_id=command_id)
            text, issued_at = open_bound(value[SEALED], binding, keys=keys)
            if issued_at < issued_after:
                raise SealError("a sealed field had expired before its command was dead-lettered")
            again[field] = {SEALED: seal(text, key=public, binding=binding)}
    return again


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {SEALED} and isinstance(value[SEALED], str)


def _is_jwe(token: str) -> bool:
    """A compact JWE has five parts; a Fernet token is one base64url string."""
    return token.count(".") == 4
